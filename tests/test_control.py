"""Controllable generation: the controller's maths, its bookkeeping, and that steering the
kind mix really makes a (tiny, untrained) order model's mid follow a target path.

An untrained model is enough for the proof and keeps it fast: its kinds start near
uniform, so without control the mid wanders with no direction, and any tracking of a
+/-20 tick ramp is the controller's doing. The order-batch model is fitted to the
uncontrolled flow of the same order model, the way one would adapt the ensemble to a
new order model.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mars_ray.lmm.batch_model import BatchConfig, BatchModel, train_batch_model
from mars_ray.lmm.control import (
    ControlConfig,
    FlowController,
    MidPath,
    SimResult,
    Volatility,
    Volume,
    ladder,
    simulate,
    tilt,
    tracking,
)
from mars_ray.lmm.model import LMMConfig, OrderModel
from mars_ray.lmm.tokenizer import OPEN_NS, Kind, Tokenizer

SECONDS = 300
BOOKS = 4
START = OPEN_NS + 30 * 60 * 10**9


@pytest.fixture(scope="module")
def tiny() -> tuple[OrderModel, Tokenizer]:
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    tokenizer = Tokenizer.fit(
        rng.geometric(0.3, 5000) * 100, rng.exponential(2e8, 5000).astype(np.int64)
    )
    torch.manual_seed(0)
    model = OrderModel(LMMConfig(n_layer=1, n_head=2, n_embd=16, block_size=32)).eval()
    return model, tokenizer


@pytest.fixture(scope="module")
def free_run(tiny: tuple[OrderModel, Tokenizer]) -> SimResult:
    model, tokenizer = tiny
    return simulate(model, tokenizer, SECONDS, books=BOOKS, seed=1, start_ns=START)


@pytest.fixture(scope="module")
def batch_model(free_run: SimResult) -> BatchModel:
    data = free_run.intervals(10.0)
    data.split[-1] = "validation"
    model, _ = train_batch_model(data, BatchConfig(context=6, eval_every=50), steps=150, seed=0)
    return model


def ramp(result: SimResult, ticks: float) -> np.ndarray:
    start = result.grid_ns[0]
    return result.mids[0, 0] + np.interp(result.grid_ns, [start, start + SECONDS * 1e9], [0, ticks])


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


def test_kind_bias_rows_and_bookkeeping(
    tiny: tuple[OrderModel, Tokenizer], batch_model: BatchModel
) -> None:
    _, tokenizer = tiny
    targets = [MidPath.ramp(START, 60, 20.0), None, MidPath.ramp(START, 60, -20.0)]
    ctl = FlowController(batch_model, tokenizer, targets, books=3)
    depth = np.stack([ladder()] * 3)
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


@pytest.mark.parametrize("ticks", [20.0, -20.0])
def test_control_makes_the_mid_follow_the_target(
    tiny: tuple[OrderModel, Tokenizer], free_run: SimResult, batch_model: BatchModel, ticks: float
) -> None:
    model, tokenizer = tiny
    ctl = FlowController(batch_model, tokenizer, MidPath.ramp(START, SECONDS, ticks), BOOKS)
    steered = simulate(model, tokenizer, SECONDS, books=BOOKS, seed=1, controller=ctl)
    target = ramp(steered, ticks)
    on = tracking(steered.grid_ns, steered.mids, target)
    off = tracking(free_run.grid_ns, free_run.mids, target)
    assert on["final_abs_error"] < 0.5 * off["final_abs_error"], (on, off)
    assert on["rms_error"] < 0.5 * off["rms_error"], (on, off)
    assert on["correlation"] > 0.7 > off["correlation"], (on, off)
    moved = (steered.mids[:, -1] - steered.mids[:, 0]) * np.sign(ticks)
    assert (moved > abs(ticks) / 2).sum() >= 3, moved  # nearly every book, not on average


def realised_vol(result: SimResult, skip_s: int = 60) -> float:
    """Std of 10 s mid changes after a settling period (the mids are sampled every 1 s)."""
    mids = result.mids[:, skip_s::10]
    return float(np.diff(mids, axis=1).std())


def test_volatility_target_moves_the_realised_volatility(
    tiny: tuple[OrderModel, Tokenizer], free_run: SimResult, batch_model: BatchModel
) -> None:
    model, tokenizer = tiny
    natural = realised_vol(free_run)
    got = {}
    for factor in (0.3, 3.0):
        ctl = FlowController(batch_model, tokenizer, Volatility(factor * natural), BOOKS)
        result = simulate(model, tokenizer, SECONDS, books=BOOKS, seed=1, controller=ctl)
        got[factor] = realised_vol(result)
    assert got[0.3] < 0.6 * natural and got[3.0] > 1.5 * natural, (natural, got)


def order_rate(result: SimResult, skip_s: int = 60) -> float:
    """Orders per second per book after a settling period."""
    times = result.orders["time_ns"]
    late = times >= result.grid_ns[0] + skip_s * 10**9
    return float(late.sum()) / (SECONDS - skip_s) / BOOKS


def test_volume_target_moves_the_order_rate(
    tiny: tuple[OrderModel, Tokenizer], free_run: SimResult, batch_model: BatchModel
) -> None:
    """Only the gap logits move: the rate follows a target at half and at twice its own."""
    model, tokenizer = tiny
    natural = order_rate(free_run)
    got = {}
    for factor in (0.5, 2.0):
        ctl = FlowController(batch_model, tokenizer, Volume(factor * natural), BOOKS)
        result = simulate(model, tokenizer, SECONDS, books=BOOKS, seed=1, controller=ctl)
        got[factor] = order_rate(result)
        assert np.allclose(ctl.last_bias, 0.0)  # the kinds are left alone
    assert 0.35 * natural < got[0.5] < 0.7 * natural, (natural, got)
    assert 1.5 * natural < got[2.0] < 2.6 * natural, (natural, got)


def test_config_and_target_validation(
    tiny: tuple[OrderModel, Tokenizer], batch_model: BatchModel
) -> None:
    _, tokenizer = tiny
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
