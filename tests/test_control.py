"""Controllable generation: the controller's maths and bookkeeping, and that the LMM agent,
steered by ``params.control`` inside its own decoding loop, makes a (tiny, untrained) order
model's books in the clearing house follow a target (``mars_ray/reports/control.py``).

An untrained model is enough for the proof and keeps it fast: its kinds start near
uniform, so without control the mid wanders with no direction, and any tracking of a
+/-20 tick ramp is the controller's doing. Every behaviour is measured against the free run
of the same seed (the negative control). The order-batch model is fitted to that free run's
flow, derived from its events by the corpus's rules, the way one would adapt the ensemble to
a new order model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from agents.lmm import GeneratorBackend, LMMParams
from mars_ray.lmm.batch_model import BatchConfig, BatchModel, save_batch_model, train_batch_model
from mars_ray.lmm.checkpoint import LoadedModel
from mars_ray.lmm.control import (
    ControlConfig,
    FlowController,
    MidPath,
    Volatility,
    Volume,
    tilt,
)
from mars_ray.lmm.generate import LocalGenerator, OrderGenerator
from mars_ray.lmm.model import LMMConfig, OrderModel
from mars_ray.lmm.tokenizer import Kind, Tokenizer
from mars_ray.reports.control import (
    ControlExperiment,
    ControlRun,
    flow_intervals,
    order_rate,
    realised_volatility,
    run_control,
    tracking,
)

EXPERIMENT = ControlExperiment(books=8, seconds=300, seed=1)
START = EXPERIMENT.start
Steer = Callable[..., ControlRun]  # (control params, experiment=EXPERIMENT) -> the run


@pytest.fixture(scope="module")
def tiny() -> LoadedModel:
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    tokenizer = Tokenizer.fit(
        rng.geometric(0.3, 5000) * 100, rng.exponential(2e8, 5000).astype(np.int64)
    )
    torch.manual_seed(0)
    model = OrderModel(LMMConfig(n_layer=1, n_head=2, n_embd=16, block_size=32)).eval()
    return LoadedModel(model, tokenizer, {}, Path("tiny"))


@pytest.fixture(scope="module")
def backends(tiny: LoadedModel) -> dict[str, GeneratorBackend]:
    """The agent's ``local`` generator, on the tiny model in memory."""

    def local(params: LMMParams, rows: int) -> tuple[OrderGenerator, Tokenizer]:
        return LocalGenerator(tiny, rows, params.temperature), tiny.tokenizer

    return {"local": local}


@pytest.fixture(scope="module")
def free_run(backends: dict[str, GeneratorBackend]) -> ControlRun:
    return run_control(EXPERIMENT, None, backends)


@pytest.fixture(scope="module")
def batch_model(free_run: ControlRun) -> BatchModel:
    data = flow_intervals(free_run)
    model, _ = train_batch_model(data, BatchConfig(context=6, eval_every=50), steps=150, seed=0)
    return model


@pytest.fixture(scope="module")
def steer(
    backends: dict[str, GeneratorBackend],
    batch_model: BatchModel,
    tmp_path_factory: pytest.TempPathFactory,
) -> Steer:
    """Run a control (agent params) with the fitted batch model, on ``EXPERIMENT`` or another."""
    path = tmp_path_factory.mktemp("control") / "batch.pt"
    save_batch_model(path, batch_model)

    def run(control: dict[str, Any], experiment: ControlExperiment = EXPERIMENT) -> ControlRun:
        return run_control(experiment, {**control, "batch_model": str(path)}, backends)

    return run


def test_tilt_reaches_the_requested_shift_within_its_bound() -> None:
    p = np.array([[0.3, 0.3, 0.2, 0.2], [0.25, 0.25, 0.25, 0.25]])
    phi = np.array([0.04, -0.04, -0.02, 0.02])
    delta = np.array([0.01, -0.005])
    theta = tilt(p, phi, delta, theta_max=500.0)
    w = p * np.exp(theta[:, None] * phi)
    shift = (w * phi).sum(1) / w.sum(1) - (p * phi).sum(1)
    np.testing.assert_allclose(shift, delta, atol=1e-6)
    assert theta[0] > 0 > theta[1]
    capped = tilt(p, phi, np.array([1.0, -1.0]), theta_max=10.0)  # out of reach: the bound
    np.testing.assert_allclose(capped, [10.0, -10.0], atol=1e-5)


def test_mid_path_targets() -> None:
    path = MidPath((0, 10), (100.0, 120.0))
    np.testing.assert_allclose(path.at(np.array([-5, 0, 5, 10, 50])), [100, 100, 110, 120, 120])
    up = MidPath.ramp(1_000, 2.0, 20.0)
    assert up.relative and up.at(np.array([1_000 + 10**9]))[0] == pytest.approx(10.0)
    with pytest.raises(ValueError, match="increasing"):
        MidPath((5, 5), (0.0, 1.0))
    with pytest.raises(ValueError, match="as many"):
        MidPath((5,), (0.0, 1.0))


def test_kind_bias_rows_and_bookkeeping(tiny: LoadedModel, batch_model: BatchModel) -> None:
    targets = [MidPath.ramp(START, 60, 20.0), None, MidPath.ramp(START, 60, -20.0)]
    ctl = FlowController(batch_model, tiny.tokenizer, targets, books=3)
    depth = np.tile(np.array([[10_001, 500, 10_000, 500]]), (3, 1, 1))  # one level a side
    token = np.array([[int(Kind.BUY), 4, 3, 2]] * 3)
    times = np.full(3, START)
    bias, gap = ctl.biases(times, depth, token, np.array([True, True, False]))
    assert gap is None  # no volume target: the gaps are left alone
    assert bias.shape == (3, 4) and bias.dtype == np.float32
    assert (bias[1] == 0).all() and (bias[2] == 0).all()  # no target / inactive
    assert bias[0, Kind.BUY] > 0 > bias[0, Kind.SELL]  # a rising target favours buys
    assert ctl.counts.sum() == 0  # the opening token is not flow
    for i in range(1, 30):  # one order per second: three intervals close
        ctl.biases(times + i * 10**9, depth, token, np.ones(3, dtype=bool))
    assert ctl.hist_len.tolist() == [2, 2, 2]
    assert ctl.counts.sum() == 3 * 10  # orders at 20..29 s, in the third interval, per book
    assert np.abs(ctl.pred_mean - batch_model.mean.numpy()).max() > 0  # predictions made


@pytest.mark.slow
@pytest.mark.parametrize("ticks", [20.0, -20.0])
def test_control_makes_the_mid_follow_the_target(
    free_run: ControlRun, steer: Steer, ticks: float
) -> None:
    steered = steer(EXPERIMENT.mid_path(ticks))
    target = EXPERIMENT.ramp(ticks)
    on, off = tracking(steered.moves, target), tracking(free_run.moves, target)
    assert on["final_abs_error"] < 0.5 * off["final_abs_error"], (on, off)
    assert on["rms_error"] < 0.5 * off["rms_error"], (on, off)
    assert on["correlation"] > 0.7 > off["correlation"], (on, off)
    moved = steered.moves[:, -1] * np.sign(ticks)
    assert (moved > abs(ticks) / 2).sum() >= 6, moved  # nearly every book, not on average
    assert (free_run.kind_bias == 0).all() and (steered.kind_bias > 0).all()


@pytest.mark.slow
def test_volatility_target_moves_the_realised_volatility(
    free_run: ControlRun, steer: Steer, backends: dict[str, GeneratorBackend]
) -> None:
    """The controller alone, with the decoder's keep_both_sides rule off; with the rule on
    (the default) a high target still raises the volatility, less: on these thin books the
    side sweeps it would ask for are what the rule stops (agents/lmm.py)."""
    unguarded = dataclasses.replace(EXPERIMENT, lmm={"keep_both_sides": False})
    natural = realised_volatility(run_control(unguarded, None, backends))
    got = {
        f: realised_volatility(steer({"volatility": {"sigma": f * natural}}, unguarded))
        for f in (0.3, 3)
    }
    assert got[0.3] < 0.8 * natural and got[3] > 1.4 * natural, (natural, got)
    guarded = realised_volatility(free_run)
    high = realised_volatility(steer({"volatility": {"sigma": 3 * guarded}}))
    assert high > 1.15 * guarded, (guarded, high)


@pytest.mark.slow
def test_volume_target_moves_the_order_rate(free_run: ControlRun, steer: Steer) -> None:
    """Only the gap logits move: the rate follows a target at half and at twice its own (over
    a shorter window: the rate settles within a minute)."""
    natural = order_rate(free_run)
    shorter = dataclasses.replace(EXPERIMENT, seconds=150)
    got = {}
    for factor in (0.5, 2.0):
        steered = steer({"volume": {"orders_per_s": factor * natural}}, shorter)
        got[factor] = order_rate(steered)
        assert (steered.kind_bias == 0).all()  # the kinds are left alone
    assert 0.35 * natural < got[0.5] < 0.7 * natural, (natural, got)
    assert 1.5 * natural < got[2.0] < 2.6 * natural, (natural, got)


def test_config_and_target_validation(tiny: LoadedModel, batch_model: BatchModel) -> None:
    tokenizer = tiny.tokenizer
    with pytest.raises(ValueError, match="targets for"):
        FlowController(batch_model, tokenizer, [None, None], books=3)
    with pytest.raises(ValueError, match="impact"):
        FlowController(batch_model, tokenizer, None, books=1, impact=np.zeros(4))
    with pytest.raises(ValueError):
        ControlConfig(horizon_s=0)
    with pytest.raises(ValueError):
        Volatility(0.0)
    with pytest.raises(ValueError):
        Volume(0.0)


def test_a_bursty_flow_is_paced_to_its_mean_rate(tiny: LoadedModel) -> None:
    """A flow whose counts per interval scatter widely (gamma-Poisson, CV about 0.8, as real
    gaps make it) settles with its mean count, not its mean log count, on the target: the
    controller's own gap bias sets the plant's rate."""
    target = 6.0  # orders per second
    impact = np.array([0.1, -0.1, -0.1, 0.1])
    ctl = FlowController(
        BatchModel(BatchConfig()), tiny.tokenizer, [Volume(target)], books=1, impact=impact
    )
    interval = ctl.interval_ns
    rng = np.random.default_rng(11)
    depth = np.array([[[10_001, 500, 10_000, 500]]])
    token = np.array([[0, 2, 0, 0]])
    counts = []
    for k in range(600):
        mean = 3 * target * interval / 1e9 * np.exp(ctl.zv[0])  # free rate: 3x target
        count = int(rng.poisson(rng.gamma(2.0, mean / 2)))
        counts.append(count)
        offsets = np.sort(rng.integers(0, interval, max(count, 1)))[:count]
        for t in START + k * interval + offsets:
            ctl.biases(np.array([t]), depth, token, np.array([True]))
    settled = np.array(counts[300:], dtype=float) / (interval / 1e9)
    assert 0.85 * target < settled.mean() < 1.15 * target, settled.mean()
    # steering the mean log count instead settles about e^(mean burst) too fast
    assert ctl.log_count_mean[0] < np.log(ctl.count_mean[0] + 1) - 0.2


def test_a_volume_only_controller_paces_as_the_full_round_does(tiny: LoadedModel) -> None:
    """Volume targets skip the mids and the order-batch model (``paces_only``): the gap
    biases over a stream with gaps, idle rows and a book without a target are the full
    round's."""
    batch_model = BatchModel(BatchConfig())
    targets = [Volume(2.0), None, Volume(30.0)]
    impact = np.array([0.1, -0.1, -0.1, 0.1])
    fast = FlowController(batch_model, tiny.tokenizer, targets, books=3, impact=impact)
    full = FlowController(batch_model, tiny.tokenizer, targets, books=3, impact=impact)
    assert fast.paces_only
    full.paces_only = False
    rng = np.random.default_rng(5)
    depth = np.tile(np.array([[10_001, 500, 10_000, 500]]), (3, 1, 1))
    times = np.full(3, START)
    for _ in range(400):
        times = times + rng.integers(0, 3 * 10**9, 3)
        tokens = np.stack([rng.integers(0, n, 3) for n in (4, 24, 16, 16)], axis=1)
        active = rng.random(3) < 0.8
        got = fast.biases(times, depth, tokens, active)
        want = full.biases(times, depth, tokens, active)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
    assert np.abs(fast.zv).max() > 0  # the rate was steered
    np.testing.assert_array_equal(fast.counts, full.counts)
