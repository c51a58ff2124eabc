"""Conditional generation: runs started from a real LOBSTER state, and LOB-Bench's protocol.

On the 10-level AAPL excerpt (09:30:00-09:30:49): the real book at the start time must be
the first snapshot of a run started there, the LMM must read the real orders before it,
bad starts must name their field, and `mars-ray report lob-bench` must write the issue's
JSON shape.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pytest
from click.testing import CliRunner

from mars_ray.cli import cli
from mars_ray.data.lobster import read_pair
from mars_ray.schema.clock import parse_clock
from mars_ray.schema.validation import ConfigError
from mars_ray.sim.config import parse_config
from mars_ray.sim.kernel import Simulation
from tests.conftest import PROJECT_ROOT, data_dir

EXCERPT = "AAPL_2012-06-21_34200000_57600000_{}_10.csv"
AT = "09:30:20"


def excerpt() -> tuple[Path, Path]:
    folder = data_dir() / "lobster" / "excerpt"
    return folder / EXCERPT.format("message"), folder / EXCERPT.format("orderbook")


def start_config(agents: list[dict], at: str = AT, **changes: object) -> dict:
    message, orderbook = excerpt()
    open_s = parse_clock(at) / 1e9
    raw = {
        "name": "real-start",
        "seed": 1,
        "session": {
            "pre_open": open_s - 1,
            "open": open_s,
            "closing_call": open_s + 3,
            "close": open_s + 4,
        },
        "kernel": {"trajectories": 2, "step_ms": 1000, "sync_ms": 1000},
        "instruments": [{"name": "AAPL", "tick_size": 0.01, "reference_price": 585.0}],
        "start": {"lobster": {"message": str(message), "orderbook": str(orderbook), "at": at}},
        "agents": agents,
        "output": {"snapshot_levels": 10, "snapshot_every_ms": 1000, "plot": False},
    }
    raw.update(changes)
    return raw


LMM = [{"kind": "lmm", "count": 1, "params": {"start": AT, "end": "09:30:23"}}]
NOISE = [{"kind": "noise", "count": 20, "params": {"rate": 0.5}}]


def real_row_before(at: str) -> np.ndarray:
    msgs, rows = read_pair(*excerpt())
    index = int(np.searchsorted(msgs.time_ns, parse_clock(at), side="left"))
    return rows[index - 1]


@pytest.mark.parametrize("agents", [LMM, NOISE], ids=["lmm-owns-it", "start-agent-owns-it"])
def test_a_real_start_shows_the_real_book_at_the_first_snapshot(agents):
    config = parse_config(start_config(agents))
    sim = Simulation(config, local=True)
    try:
        sim.run()
        _, snapshots = sim.collect()
    finally:
        sim.close()
    first = snapshots.filter(pc.equal(snapshots["time_ns"], config.session.open))
    assert first.num_rows == 2  # one per trajectory
    columns = [c for c in first.column_names if c.startswith(("ask_", "bid_"))]
    want = real_row_before(AT)
    for traj in range(2):
        got = np.array([first[c][traj].as_py() for c in columns], dtype=np.int64)
        fields = ("ask_price", "ask_size", "bid_price", "bid_size")  # LOBSTER's column order
        order = [columns.index(f"{f}_{lvl}") for lvl in range(1, 11) for f in fields]
        np.testing.assert_array_equal(got[order], want)


def lmm_events(with_context: bool) -> list:
    sim = Simulation(parse_config(start_config(LMM)), local=True)
    try:
        agent = sim.shards[0].spanning[0]
        assert all(c is not None and len(c[0]) > 100 for c in agent.context)
        if not with_context:
            agent.context = [None] * len(agent.context)
        sim.run()
        events, _ = sim.collect()
    finally:
        sim.close()
    return events.select(["time_ns", "event_type", "side", "price", "size"]).to_pylist()


def test_the_lmm_continues_from_the_real_orders_before_the_start():
    """Same seed, same book: only the context differs, so the flow must too."""
    assert lmm_events(True) != lmm_events(False)


@pytest.mark.parametrize(
    ("change", "field", "value"),
    [
        (
            {"start": {"lobster": {"message": "nope.csv", "orderbook": "x.csv", "at": AT}}},
            "start.lobster.message",
            "nope.csv",
        ),
        ({"session": {"pre_open": "09:00", "open": "09:30"}}, "start.lobster.at", "09:30:20"),
        (
            {"instruments": [{"name": "AAPL", "tick_size": 0.05, "reference_price": 585.0}]},
            "instruments[0].tick_size",
            "0.05",
        ),
    ],
)
def test_a_bad_start_names_its_field_and_value(change, field, value):
    with pytest.raises(ConfigError) as err:
        parse_config(start_config(LMM, **change))
    assert field in str(err.value) and value in str(err.value)


def test_a_start_outside_the_files_messages_names_the_time():
    raw = start_config([], at="10:30")
    with pytest.raises(ConfigError, match=r"start\.lobster\.at: 10:30:00"):
        Simulation(parse_config(raw), local=True)


def test_lob_bench_writes_the_issues_json_shape(tmp_path):
    out = tmp_path / "lb.json"
    args = ["report", "lob-bench", "--reference", str(excerpt()[0].parent), "--windows", "2"]
    args += ["--horizon-s", "3", "--json", str(out), "--plot", str(tmp_path / "png"), "--quiet"]
    args += ["--lmm-config", str(PROJECT_ROOT / "configs" / "lmm_realism.yaml")]
    args += ["--baseline-config", str(PROJECT_ROOT / "configs" / "agents_realism.yaml")]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    got = json.loads(out.read_text())
    sources = {"lmm", "baseline", "floor"}
    assert set(got["scores"]) >= {"spread", "log_inter_arrival", "ofi", "spread_given_time"}
    for row in got["scores"].values():
        assert set(row) == sources
        assert all(set(d) == {"l1", "w1", "l1_ci95"} for d in row.values())
    assert got["scores"]["spread"]["lmm"]["l1"] is not None
    assert set(got["impact"]) == sources
    assert all(set(r) == {"real", "lmm", "baseline"} for r in got["stylized_facts"].values())
    assert len(got["stylized_facts"]) == 11
    for key in ("one_sided_rows", "messages_per_s"):
        assert set(got[key]) == {"real", "lmm", "baseline"}
    memory = got["market_sign_autocorrelation"]
    assert set(memory) == {"lags", "real", "lmm", "baseline"}
    assert all(len(memory[k]) == len(memory["lags"]) for k in ("real", "lmm", "baseline"))
    assert memory["real"][0] is not None and -1 <= memory["real"][0] <= 1
    assert got["protocol"]["windows"] == ["09:30:12.000", "09:30:34.000"]
    assert sorted(p.name for p in (tmp_path / "png").iterdir()) == [
        "lob_bench_facts.png",
        "lob_bench_impact.png",
        "lob_bench_scores.png",
    ]
