"""The order-batch model: exact mid changes, interval aggregation, and a model that beats
the naive forecasts of the next interval's flow."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import PROJECT_ROOT, data_dir

from mars_ray.data.lobster import read_message_columns, read_orderbook
from mars_ray.lmm.batch_model import (
    CATEGORIES,
    COUNT,
    MID,
    N_FEATURES,
    VOLUME,
    BatchConfig,
    IntervalData,
    aggregate_corpus,
    aggregate_orders,
    load_batch_model,
    mid_changes,
    order_categories,
    save_batch_model,
    spread_from_features,
    train_batch_model,
)
from mars_ray.lmm.corpus import Unit, corpus_table, lobster_orders
from mars_ray.lmm.tokenizer import Kind
from mars_ray.pipelines.corpus import synthetic_orders
from mars_ray.sim.config import load_config

DAY = "2012-06-21_34200000_57600000"


def lobster_pair(ticker: str) -> tuple[Path, Path]:
    levels = 10 if ticker == "GOOG" else 1
    root = data_dir() / "lobster"
    return (
        root / f"{ticker}_{DAY}_message_{levels}.csv.gz",
        root / f"{ticker}_{DAY}_orderbook_{levels}.csv.gz",
    )


def test_mid_changes_replay_the_real_mid_exactly() -> None:
    """Summed per-order mid changes equal the orderbook file's mid at every 10 s mark."""
    message, orderbook = lobster_pair("GOOG")
    unit = lobster_orders(message, orderbook)
    spread, two = spread_from_features(unit.book)
    dmid = mid_changes(unit.kind, unit.price_level, spread, two, np.array([0, len(unit.kind)]))
    rebuilt = np.concatenate([[0.0], np.cumsum(dmid)])  # mid before order i, from 0
    book, msgs = read_orderbook(orderbook), read_message_columns(message)
    real = (book[:, 0] + book[:, 2]) / 2
    marks = np.arange(34_210, 57_600, 10) * 10**9
    first_order = np.searchsorted(unit.time_ns, marks)
    first_message = np.searchsorted(msgs.time_ns, marks)
    ok = first_order < len(unit.kind)
    got = rebuilt[first_order[ok]] - rebuilt[first_order[0]]
    want = real[first_message[ok] - 1] - real[first_message[0] - 1]
    assert ok.sum() > 2000
    np.testing.assert_array_equal(got, want)
    assert abs(want).max() > 100  # the day moved: the check is not trivially all zeros


def test_categories_and_aggregation() -> None:
    kind = np.array([Kind.BUY, Kind.BUY, Kind.SELL, Kind.CANCEL_BUY, Kind.CANCEL_SELL, Kind.SELL])
    level = np.array([0, 1, 4, 2, 9, 5])
    cats = [CATEGORIES[c] for c in order_categories(kind, level)]
    assert cats == [
        "buy_mkt",
        "buy_inside",
        "sell_near",
        "buy_cxl_touch",
        "sell_cxl_far",
        "sell_far",
    ]
    # two units: orders at 1 s, 2 s, 25 s (unit 0); 100 s, 101 s, 102 s (unit 1)
    t = np.array([1, 2, 25, 100, 101, 102]) * 10**9
    starts = np.array([0, 3, 6])
    dmid = np.array([0.5, -1.0, 2.0, 0.5, 0.0, 0.0])
    size = np.array([100, 200, 300, 400, 500, 600])
    x, tod, offset = aggregate_orders(t, kind, level, size, dmid, starts, 10.0)
    assert x.shape == (4, N_FEATURES) and offset.tolist() == [0, 3, 4]
    counts = np.rint(np.expm1(x[:, COUNT])).astype(int)
    assert counts.sum(1).tolist() == [2, 0, 1, 3]  # the empty interval 10-20 s is kept
    np.testing.assert_allclose(np.expm1(x[0, VOLUME]).sum() * 100, 300, rtol=1e-5)
    np.testing.assert_allclose(x[:, MID], [-0.5, 0.0, 2.0, 0.5])
    assert tod[1] > tod[0]


def lobster_intervals(block: int = 180) -> IntervalData:
    """Both LOBSTER days cut into 30-minute units, alternately train and validation."""
    parts = []
    for ticker in ("GOOG", "AAPL"):
        unit = lobster_orders(*lobster_pair(ticker))
        spread, two = spread_from_features(unit.book)
        ends = np.array([0, len(unit.kind)])
        dmid = mid_changes(unit.kind, unit.price_level, spread, two, ends)
        parts.append(
            aggregate_orders(unit.time_ns, unit.kind, unit.price_level, unit.size, dmid, ends, 10)
        )
    x = np.concatenate([p[0] for p in parts])
    tod = np.concatenate([p[1] for p in parts])
    day = len(parts[0][0])
    cuts = np.concatenate([np.arange(0, day, block), day + np.arange(0, len(x) - day, block)])
    starts = np.append(cuts, len(x))
    split = np.array(["train" if i % 2 == 0 else "validation" for i in range(len(cuts))])
    impact = np.array([0.04, -0.04, -0.02, 0.02], dtype=np.float32)
    return IntervalData(x, tod, starts, split, impact, 10.0)


def assert_beats_baselines(history: list[dict[str, float]]) -> None:
    last = history[-1]
    model = last["validation_nll"]
    for name in ("mean", "last", "moving"):
        baseline = last[f"validation_{name}_baseline_nll"]
        assert model < baseline - 3.0, (name, model, baseline)  # nats per interval


@pytest.mark.slow
def test_batch_model_beats_naive_forecasts_on_the_lobster_days() -> None:
    torch.set_num_threads(1)
    _, history = train_batch_model(lobster_intervals(), BatchConfig(), steps=200, seed=0)
    assert_beats_baselines(history)
    assert history[-1]["validation_nll"] < history[0]["validation_nll"] + 1.0


@pytest.mark.slow
def test_batch_model_beats_naive_forecasts_on_real_and_simulated_days() -> None:
    """The GOOG day and two simulated hours of one instrument to train, a third simulated
    hour to validate on: a corpus slice built here, as ``build-corpus`` builds one."""
    torch.set_num_threads(1)
    hour = {"pre_open": "09:29", "open": "09:30", "closing_call": "10:30", "close": "10:31"}
    overrides = {f"session.{k}": v for k, v in hour.items()} | {"kernel.shards": 1}
    sim = load_config(PROJECT_ROOT / "configs" / "bench.yaml", overrides)
    parts = [
        (Unit("lobster", "GOOG", "2012-06-21", "train"), lobster_orders(*lobster_pair("GOOG")))
    ]
    for seed, split in ((1, "train"), (2, "train"), (3, "validation")):
        orders = dict(synthetic_orders(sim, seed))["ALPHA"]
        parts.append((Unit("synthetic", "ALPHA", f"seed-{seed}", split), orders))
    data = aggregate_corpus(corpus_table(parts, {}))
    assert sorted(set(data.split.tolist())) == ["train", "validation"]
    assert data.impact[Kind.BUY] > 0 > data.impact[Kind.SELL]  # buys lift the mid
    _, history = train_batch_model(data, BatchConfig(), steps=200, seed=0)
    assert_beats_baselines(history)


def test_rollout_and_save_load(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 400
    x = np.abs(rng.normal(2.0, 0.5, (n, N_FEATURES))).astype(np.float32)
    x[:, MID] = rng.normal(0, 1, n)
    data = IntervalData(
        x,
        np.linspace(0, 1, n, dtype=np.float32),
        np.array([0, 300, n]),
        np.array(["train", "validation"]),
        np.array([0.1, -0.1, -0.05, 0.05], dtype=np.float32),
        10.0,
    )
    cfg = BatchConfig(context=8, hidden=16, eval_every=10)
    model, history = train_batch_model(data, cfg, steps=20, seed=1)
    assert [h["step"] for h in history] == [10, 20]
    paths = model.rollout(x[None, :8], data.tod[None, 1:9], steps=12, rng=rng)
    assert paths.shape == (1, 12, N_FEATURES)
    assert (paths[..., : 2 * len(CATEGORIES)] >= 0).all()
    save_batch_model(tmp_path / "b.pt", model, history)
    loaded, stored = load_batch_model(tmp_path / "b.pt")
    assert stored == history and loaded.config == cfg
    a = model.predict(x[None, :8], data.tod[None, 1:9])
    b = loaded.predict(x[None, :8], data.tod[None, 1:9])
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_train_batch_command_names_a_missing_corpus(tmp_path) -> None:
    from click.testing import CliRunner

    from mars_ray.cli import cli

    missing = tmp_path / "none.parquet"
    result = CliRunner().invoke(cli, ["train-batch", "--corpus", str(missing)])
    assert result.exit_code != 0
    assert f"corpus not found: {missing}" in result.output


def test_the_shipped_batch_model_loads() -> None:
    from mars_ray.lmm.batch_model import SHIPPED_BATCH, load_batch_model

    model, history = load_batch_model()
    assert not model.training
    assert SHIPPED_BATCH.stat().st_size < 1 << 20
    assert history[-1]["validation_nll"] < history[-1]["validation_moving_baseline_nll"]
    with pytest.raises(FileNotFoundError, match="order-batch model not found"):
        load_batch_model(tmp := SHIPPED_BATCH.with_name("absent.pt"))
    assert not tmp.exists()
