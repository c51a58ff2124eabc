"""``mars-ray report realism``: distances, metrics on real data, the command end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import data_dir

from mars_ray.cli import cli
from mars_ray.data.lobster import (
    DELETE,
    SUBMIT,
    Messages,
    book_before_first,
    read_message_columns,
    read_orderbook,
)
from mars_ray.lmm.tokenizer import DEEP, MARKETABLE, N_PRICE
from mars_ray.reports.impact import CURVES
from mars_ray.reports.lob_scores import CONDITIONAL, SCORES
from mars_ray.reports.realism import (
    METRICS,
    Metric,
    RealismError,
    cancel_lifetimes,
    compare,
    distance,
    l1_histograms,
    level1_view,
    lobster_source,
    minute_returns,
    reference_pairs,
    sample_counts,
    wasserstein1,
)
from mars_ray.sim.config import parse_config

EXCERPT = "AAPL_2012-06-21_34200000_57600000_{}_10.csv"
DAY_1_LEVEL = "AAPL_2012-06-21_34200000_57600000_{}_1.csv.gz"
NAMES = [m.name for m in METRICS]
S = 1_000_000_000

# Two tiny runs of one market: 5 minutes of continuous trading, one instrument, two paths.
RUN = {
    "name": "realism-test",
    "seed": 1,
    "session": {"pre_open": "09:25", "open": "09:30", "closing_call": "09:35", "close": "09:36"},
    "kernel": {"step_ms": 1000, "sync_ms": 60000, "shards": 1, "trajectories": 2},
    "instruments": [{"name": "AAA", "reference_price": 100.0}],
    "agents": [{"kind": "noise", "count": 20}, {"kind": "market_maker", "count": 2}],
    "output": {"snapshot_levels": 1, "snapshot_every_ms": 60000},
}


def excerpt_paths() -> tuple[Path, Path]:
    folder = data_dir() / "lobster" / "excerpt"
    return folder / EXCERPT.format("message"), folder / EXCERPT.format("orderbook")


def messages(rows: list[tuple[int, int, int, int, int, int]]) -> Messages:
    """(time ns, type, id, size, price, direction) rows as Messages."""
    cols = list(zip(*rows, strict=True))
    dtypes = (np.int64, np.int8, np.int64, np.int64, np.int64, np.int8)
    t, typ, oid, size, price, d = (np.array(c, dtype=k) for c, k in zip(cols, dtypes, strict=True))
    return Messages(time_ns=t, type=typ, order_id=oid, size=size, price=price, direction=d)


# ----------------------------------------------------------------------------- distances
def test_w1_of_shifted_samples_is_the_shift():
    rng = np.random.default_rng(0)
    u = rng.normal(size=700)
    assert wasserstein1(u, u + 0.7) == pytest.approx(0.7, abs=1e-12)
    assert wasserstein1(u + 0.7, u) == pytest.approx(0.7, abs=1e-12)
    assert wasserstein1(u, rng.permutation(u)) == pytest.approx(0.0, abs=1e-12)
    # unequal sizes, by hand: quantile functions differ by 1 on p in (1/3, 1/2] and (2/3, 1]
    assert wasserstein1([0.0, 1.0], [0.0, 1.0, 2.0]) == pytest.approx(0.5)
    assert wasserstein1([0.0], [1.0, 3.0]) == pytest.approx(2.0)
    assert np.isnan(wasserstein1([], [1.0]))


def test_w1_agrees_with_scipy():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(1)
    u, v = rng.exponential(size=313), rng.normal(1.0, 2.0, size=1001)
    assert wasserstein1(u, v) == pytest.approx(stats.wasserstein_distance(u, v), rel=1e-9)


def test_l1_between_histograms():
    assert l1_histograms([1, 2, 3], [1, 2, 3]) == 0.0
    assert l1_histograms([1, 2, 3], [2, 4, 6]) == pytest.approx(0.0)  # normalised first
    assert l1_histograms([1, 0], [0, 5]) == pytest.approx(2.0)
    assert l1_histograms([1, 1], [1, 0]) == pytest.approx(1.0)
    assert np.isnan(l1_histograms([0, 0], [1, 0]))
    with pytest.raises(ValueError, match="shape"):
        l1_histograms([1, 2], [1, 2, 3])
    assert distance(Metric("x", "x", "L1", ("a", "b")), np.array([1, 1]), np.array([1, 0])) == 1


# ----------------------------------------------------------------------------- one book
def test_cancel_lifetimes_pair_each_delete_with_its_latest_submission():
    msgs = messages(
        [
            (1 * S, SUBMIT, 1, 100, 50, 1),
            (1 * S, SUBMIT, 4, 100, 51, -1),
            (2 * S, SUBMIT, 2, 100, 49, 1),  # never cancelled
            (2 * S, DELETE, 4, 100, 51, -1),  # 1 s
            (3 * S, DELETE, 1, 100, 50, 1),  # 2 s
            (4 * S, DELETE, 3, 100, 48, 1),  # submission unseen: no lifetime
            (4 * S, SUBMIT, 4, 50, 52, -1),  # the same id again (a simulated modify)
            (7 * S, DELETE, 4, 50, 52, -1),  # 3 s from the resubmission
        ]
    )
    assert sorted(cancel_lifetimes(msgs).tolist()) == [1 * S, 2 * S, 3 * S]
    assert sorted(cancel_lifetimes(msgs, (2 * S, 4 * S)).tolist()) == [1 * S, 2 * S]


def test_minute_returns_are_standardised_and_stop_at_the_data():
    minute = 60 * S
    times = np.array([0, minute, 2 * minute, 3 * minute + 5], dtype=np.int64)
    # mids 100, 110, 99, 99 (ticks): ask/bid rows
    rows = np.array([[101, 1, 99, 1], [111, 1, 109, 1], [100, 1, 98, 1], [100, 1, 98, 1]])
    r = minute_returns(times, rows, (0, 100 * minute))
    raw = np.diff(np.log([100.0, 110.0, 99.0, 99.0]))
    assert len(r) == 3  # marks at 0..3 minutes: nothing after the last message
    assert np.allclose(r, raw / raw.std())
    assert np.std(r) == pytest.approx(1.0)
    flat = minute_returns(times, np.tile([[101, 1, 99, 1]], (4, 1)), (0, 100 * minute))
    assert np.array_equal(flat, np.zeros(3))


def test_level1_view_of_the_10_level_excerpt_is_the_1_level_file():
    """LOBSTER's rule, as implemented: the 10-level excerpt cut to level 1 holds exactly the
    messages of the 1-level file of the same day over the same span."""
    message, orderbook = excerpt_paths()
    msgs, book = read_message_columns(message), read_orderbook(orderbook)
    view, rows, first = level1_view(msgs, book, book_before_first(book, msgs))
    assert 0 < len(view) < len(msgs) and rows.shape == (len(view), 4)
    assert np.array_equal(first, book_before_first(book, msgs).reshape(-1)[:4])
    folder = data_dir() / "lobster"
    day = read_message_columns(folder / DAY_1_LEVEL.format("message"))
    day_book = read_orderbook(folder / DAY_1_LEVEL.format("orderbook"))
    span = day.time_ns <= msgs.time_ns[-1]
    for name in ("time_ns", "type", "order_id", "size", "price", "direction"):
        assert np.array_equal(getattr(view, name), getattr(day, name)[span]), name
    assert np.array_equal(rows, day_book[span])


def test_metrics_of_the_excerpt_are_sane(tmp_path):
    folder = tmp_path / "lobster"
    folder.mkdir()
    for path in excerpt_paths():
        (folder / path.name).symlink_to(path)
    src = lobster_source(reference_pairs(folder))
    s, n = src.samples, src.info["orders"]
    assert 300 < n < 998  # the level-1 view of 998 messages
    counts = sample_counts(s)
    assert counts["spread"] == counts["imbalance"] == counts["order_size"] == n
    assert counts["inter_arrival"] == n - 1 and counts["type_mix"] == n
    assert np.all(s["spread"] >= 1) and np.all(s["spread"] == np.rint(s["spread"]))
    assert 5 < np.median(s["spread"]) < 60  # AAPL at $585 in 2012: wide in ticks at the open
    assert np.all(np.abs(s["imbalance"]) <= 1)
    assert np.all(s["order_size"] >= 0) and 1 < np.median(s["order_size"]) < 3
    assert np.all(s["inter_arrival"] >= -6) and np.median(s["inter_arrival"]) < 0
    assert 0 < counts["time_to_cancel"] < n and np.all(s["time_to_cancel"] >= -6)
    mix = s["type_mix"] / n
    assert all(0.02 < share < 0.6 for share in mix)  # every kind occurs, none dominates
    levels = s["volume_per_level"]
    assert levels.shape == (N_PRICE,) and levels[MARKETABLE] > 0
    assert levels[DEEP] == 0  # at level 1 an order is at or inside its best quote
    assert counts["returns_1min"] == 0  # 49 s of data: no whole minute
    metrics = compare(s, s, None)
    for name in NAMES:
        assert metrics[name]["baseline"] is None
        if name == "returns_1min":
            assert metrics[name]["lmm"] is None
        else:
            assert metrics[name]["lmm"] == pytest.approx(0.0, abs=1e-12)


def test_reference_pairs_choose_one_ticker_and_the_shallowest_copy():
    root = data_dir() / "lobster"
    pairs = reference_pairs(root, "AAPL")
    assert [p[0].name for p in pairs] == [DAY_1_LEVEL.format("message")]  # not the excerpt
    with pytest.raises(RealismError, match=r"several tickers \['AAPL', 'GOOG'\]"):
        reference_pairs(root)
    with pytest.raises(RealismError, match="'MSFT'"):
        reference_pairs(root, "MSFT")


# ----------------------------------------------------------------------------- the command
@pytest.fixture(scope="module")
def dirs(tmp_path_factory) -> dict[str, Path]:
    """Two tiny runs (the baseline with another seed and fewer agents) and a reference folder
    linking to the excerpt."""
    from mars_ray.sim.kernel import run_simulation

    root = tmp_path_factory.mktemp("realism")
    out = {"reference": root / "lobster", "empty": root / "empty"}
    out["reference"].mkdir()
    out["empty"].mkdir()
    for path in excerpt_paths():
        (out["reference"] / path.name).symlink_to(path)
    base_agents = [{"kind": "noise", "count": 12}, {"kind": "market_maker", "count": 1}]
    for label, raw in (
        ("lmm", RUN),
        (
            "baseline",
            {
                **RUN,
                "seed": 2,
                "name": "baseline",
                "agents": base_agents,
                "kernel": {**RUN["kernel"], "trajectories": 1},
            },
        ),
    ):
        run_simulation(parse_config(raw), local=True, out=root / label)
        out[label] = root / label
    return out


def invoke(*args: str | Path):
    return CliRunner().invoke(cli, ["report", "realism", *map(str, args)])


def test_report_end_to_end(dirs, tmp_path):
    json_out, png = tmp_path / "out" / "realism.json", tmp_path / "out" / "realism.png"
    result = invoke(
        dirs["lmm"],
        "--reference",
        dirs["reference"],
        "--baseline",
        dirs["baseline"],
        "--json",
        json_out,
        "--plot",
        png,
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    header = next(k for k, line in enumerate(lines) if line.startswith("metric"))
    assert lines[header].split() == ["metric", "distance", "LMM", "baseline", "closer"]
    table = [line.split() for line in lines[header + 2 : header + 2 + len(METRICS)]]
    assert [row[0] for row in table] == NAMES
    assert all(row[-1] in ("lmm", "baseline", "tie", "-") for row in table)

    report = json.loads(json_out.read_text())
    assert set(report) == {"metrics", "lob_bench", "sources", "notes"}
    lob = report["lob_bench"]
    assert lob["levels"] == 10  # the excerpt's depth, not level 1
    assert set(lob["scores"]) == set(SCORES) | set(CONDITIONAL)
    assert set(lob["scores"]["spread"]) == {"lmm", "baseline", "floor"}
    assert lob["scores"]["spread"]["lmm"]["w1"] >= 0
    assert set(lob["one_sided_rows"]) == {"real", "lmm", "baseline"}
    assert lob["messages_per_s"]["real"] > 0
    assert len(lob["stylized_facts"]) == 11
    assert set(lob["impact"]["deviation"]) == {"lmm", "baseline", "floor"}
    assert set(lob["impact"]["curves"]["real"]) == set(CURVES)
    assert set(lob["stylized_facts"]["heavy_tails"]) == {"real", "lmm", "baseline", "statistic"}
    assert list(report["metrics"]) == NAMES
    for name, d in report["metrics"].items():
        assert set(d) == {"lmm", "baseline"}
        if name == "returns_1min":  # the excerpt is shorter than a minute
            assert d == {"lmm": None, "baseline": None}
        else:
            assert all(isinstance(v, float) and v >= 0 for v in d.values()), (name, d)
    for name in ("type_mix", "volume_per_level"):
        assert all(v <= 2 for v in report["metrics"][name].values())
    assert report["sources"]["lmm"]["instrument"] == "AAA"
    assert report["sources"]["lmm"]["trajectories"] == 2  # pooled
    assert report["sources"]["baseline"]["trajectories"] == 1
    assert report["sources"]["lmm"]["orders"] > 100
    assert report["sources"]["baseline"]["orders"] > 50
    assert report["sources"]["reference"]["files"][0].endswith(EXCERPT.format("message"))
    assert any("level" in note for note in report["notes"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for page in ("scores", "impact", "facts"):  # one page per LOB-Bench family
        assert (png.parent / f"realism_{page}.png").read_bytes()[:4] == b"\x89PNG"


def test_report_without_baseline_and_against_itself(dirs, tmp_path):
    json_out = tmp_path / "r.json"
    result = invoke(dirs["lmm"], "--reference", dirs["reference"], "--json", json_out)
    assert result.exit_code == 0, result.output
    metrics = json.loads(json_out.read_text())["metrics"]
    assert all(d["baseline"] is None for d in metrics.values())

    same = invoke(dirs["lmm"], "--reference", dirs["reference"], "--baseline", dirs["lmm"])
    assert same.exit_code == 0, same.output
    rows = [line.split() for line in same.output.splitlines() if line.split()[:1] == ["spread"]]
    assert rows and rows[0][-1] == "tie"


@pytest.mark.parametrize(
    "case, expected",
    [
        ("missing_run", "run folder not found"),
        ("not_a_run", "no run.json"),
        ("missing_baseline", "run folder not found"),
        ("no_pairs", "no LOBSTER message/orderbook pairs"),
        ("missing_reference", "reference folder not found"),
        ("unknown_instrument", "instrument 'ZZZ' not in run"),
        ("unknown_ticker", "ticker 'MSFT'"),
    ],
)
def test_report_errors_name_the_bad_value(dirs, tmp_path, case, expected):
    ref = dirs["reference"]
    args = {
        "missing_run": [tmp_path / "nope", "--reference", ref],
        "not_a_run": [dirs["empty"], "--reference", ref],
        "missing_baseline": [dirs["lmm"], "--reference", ref, "--baseline", tmp_path / "nope"],
        "no_pairs": [dirs["lmm"], "--reference", dirs["empty"]],
        "missing_reference": [dirs["lmm"], "--reference", tmp_path / "nope"],
        "unknown_instrument": [dirs["lmm"], "--reference", ref, "--instrument", "ZZZ"],
        "unknown_ticker": [dirs["lmm"], "--reference", ref, "--ticker", "MSFT"],
    }[case]
    result = invoke(*args)
    assert result.exit_code == 1, result.output
    assert "Error:" in result.output and expected in result.output
    assert "Traceback" not in result.output
    bad = {
        "missing_run": "nope",
        "missing_baseline": "nope",
        "missing_reference": "nope",
        "not_a_run": "empty",
        "no_pairs": "empty",
        "unknown_instrument": "ZZZ",
        "unknown_ticker": "MSFT",
    }[case]
    assert bad in result.output


def test_report_needs_a_reference(dirs):
    result = invoke(dirs["lmm"])
    assert result.exit_code == 2 and "--reference" in result.output
