"""``mars-ray simulate``: outputs, metadata, summary, and clean errors for bad configs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from click.testing import CliRunner

from mars_ray.cli import cli
from mars_ray.schema.events import CANONICAL_ORDER, EVENT_SCHEMA
from mars_ray.sim.run_files import read_events, read_manifest, read_snapshots, read_trades

SMALL = {
    "name": "cli-test",
    "seed": 5,
    "session": {"pre_open": "09:00", "open": "09:02", "closing_call": "09:08", "close": "09:10"},
    "kernel": {"step_ms": 1000, "sync_ms": 30000, "shards": 2},
    "instruments": [{"name": "AAA"}, {"name": "BBB", "reference_price": 20.0}],
    "agents": [{"kind": "noise", "count": 30}, {"kind": "market_maker", "count": 2}],
    "output": {"snapshot_levels": 3, "snapshot_every_ms": 5000},
}


def write(tmp_path: Path, raw: dict) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_simulate_writes_parquet_with_config_and_a_plot(tmp_path, ray_session):
    out = tmp_path / "run"
    result = CliRunner().invoke(
        cli, ["simulate", str(write(tmp_path, SMALL)), "--out", str(out), "--seed", "9", "--quiet"]
    )
    assert result.exit_code == 0, result.output
    assert (out / "run.png").stat().st_size > 0
    manifest = read_manifest(out)
    assert manifest["status"] == "complete" and manifest["config"]["seed"] == 9
    events = read_events(out)
    assert events.num_rows > 1000
    assert events.schema.remove_metadata().equals(EVENT_SCHEMA.remove_metadata())
    parts = sorted((out / "events").glob("part-*.parquet"))
    assert len(parts) >= 2  # one per shard (and chunk): the shards wrote them
    for part in parts:
        meta = pq.read_schema(part).metadata
        assert meta[b"mars_ray.seed"] == b"9"
        assert json.loads(meta[b"mars_ray.config"])["seed"] == 9
        assert meta[b"mars_ray.run_id"].decode() == manifest["run_id"]
    assert sum(row["events"] for row in manifest["summary"]) == events.num_rows
    trades = read_trades(out)
    assert 0 < trades.num_rows < events.num_rows
    snaps = read_snapshots(out)
    assert "bid_price_3" in snaps.column_names and "bid_price_4" not in snaps.column_names
    assert "events/s" in result.output and "AAA" in result.output and "BBB" in result.output
    assert not (out / "checkpoints").exists() or not any((out / "checkpoints").rglob("*.pkl"))


def test_same_seed_same_files(tmp_path, ray_session):
    config = write(tmp_path, SMALL)
    tables = []
    for k, shards in enumerate(("1", "2")):
        out = tmp_path / f"run{k}"
        args = [
            "simulate",
            str(config),
            "--out",
            str(out),
            "--shards",
            shards,
            "--quiet",
            "--no-plot",
        ]
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 0, result.output
        tables.append(read_events(out).replace_schema_metadata(None))
    assert tables[0].equals(tables[1])
    assert tables[0].equals(pd_events(out))


def pd_events(out: Path) -> pa.Table:
    """The run read as pandas reads a folder of Parquet files, in the canonical order."""
    frame = pd.read_parquet(out / "events")
    table = pa.Table.from_pandas(frame, schema=EVENT_SCHEMA.remove_metadata(), preserve_index=False)
    return table.sort_by(CANONICAL_ORDER)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mars_ray.cli", *args], capture_output=True, text=True, timeout=120
    )


def test_bad_config_exits_non_zero_without_traceback(tmp_path):
    bad = {**SMALL, "kernel": {"shards": 0}, "instruments": [{"name": "AAA", "tick_size": 0}]}
    proc = run_cli("simulate", str(write(tmp_path, bad)))
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert "kernel.shards: Input should be greater than or equal to 1 (got 0)" in proc.stderr
    assert "instruments.0.tick_size: Input should be greater than or equal to" in proc.stderr
    assert "0.000000001 (got 0)" in proc.stderr


def test_numbers_out_of_range_in_a_config_file_are_field_errors(tmp_path):
    """YAML as typed: 1e300 (a string to YAML, a number to the config), .nan, a huge size."""
    path = tmp_path / "config.yaml"
    path.write_text(
        "instruments:\n"
        "  - {name: AAA, reference_price: 1e300}\n"
        "  - {name: BBB, tick_size: 1e-300}\n"
        "  - {name: CCC, reference_price: .nan}\n"
        "agents: [{kind: market_maker, count: 1, params: {quote_size: 10000000000}}]\n"
    )
    proc = run_cli("simulate", str(path))
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr and "OverflowError" not in proc.stderr
    for expected in (
        "instruments.0.reference_price: Input should be less than or equal to",
        "(got '1e300')",
        "instruments.1.tick_size: Input should be greater than or equal to",
        "(got '1e-300')",
        "instruments.2.reference_price: Input should be a finite number (got nan)",
        "agents.0.params.quote_size: Input should be less than or equal to 1000000000",
    ):
        assert expected in proc.stderr, proc.stderr


def test_missing_config_file(tmp_path):
    proc = run_cli("simulate", str(tmp_path / "nope.yaml"))
    assert proc.returncode != 0
    assert "config file not found" in proc.stderr and "Traceback" not in proc.stderr


def test_run_converts_to_lobster_files_that_pass_the_check(tmp_path, ray_session):
    """Every trajectory by default (a folder each), one with --trajectory (in OUT_DIR)."""
    out = tmp_path / "run"
    runner = CliRunner()
    raw = {**SMALL, "kernel": {**SMALL["kernel"], "trajectories": 2}}
    sim = runner.invoke(
        cli, ["simulate", str(write(tmp_path, raw)), "--out", str(out), "--quiet", "--no-plot"]
    )
    assert sim.exit_code == 0, sim.output
    lob = tmp_path / "lobster"
    result = runner.invoke(cli, ["data", "to-lobster", str(out), str(lob), "--levels", "5"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in lob.iterdir()) == ["trajectory-0", "trajectory-1"]
    one = tmp_path / "one"
    result = runner.invoke(cli, ["data", "to-lobster", str(out), str(one), "--trajectory", "1"])
    assert result.exit_code == 0, result.output
    for folder, levels in ((lob / "trajectory-0", 5), (lob / "trajectory-1", 5), (one, 10)):
        for name in ("AAA", "BBB"):
            (message,) = folder.glob(f"{name}_*_message_{levels}.csv")
            (orderbook,) = folder.glob(f"{name}_*_orderbook_{levels}.csv")
            check = runner.invoke(cli, ["data", "check-lobster", str(message), str(orderbook)])
            assert check.exit_code == 0, check.output
            assert '"all_levels_match": 1.0' in check.output
            ids = [int(line.split(",")[2]) for line in message.read_text().splitlines()]
            assert max(ids) <= 2**31 - 1  # simulated ids renumbered for 32-bit readers
    # the two trajectories are different days of the same market
    (a,) = (lob / "trajectory-0").glob("AAA_*_message_5.csv")
    (b,) = (lob / "trajectory-1").glob("AAA_*_message_5.csv")
    assert a.read_text() != b.read_text()
    (c,) = one.glob("AAA_*_message_10.csv")
    assert c.read_text() == b.read_text()
    missing = runner.invoke(cli, ["data", "to-lobster", str(out), str(one), "--trajectory", "5"])
    assert missing.exit_code != 0 and "no events for trajectory 5" in missing.output


def test_to_lobster_needs_a_run_dir(tmp_path):
    result = CliRunner().invoke(cli, ["data", "to-lobster", str(tmp_path), str(tmp_path / "o")])
    assert result.exit_code != 0
    assert "not a mars-ray simulate output" in result.output


def test_ingest_lobster_writes_event_schema(tmp_path):
    from conftest import data_dir

    message = (
        data_dir() / "lobster" / "excerpt" / "AAPL_2012-06-21_34200000_57600000_message_10.csv"
    )
    out = tmp_path / "aapl.parquet"
    result = CliRunner().invoke(cli, ["data", "ingest-lobster", str(message), str(out)])
    assert result.exit_code == 0, result.output
    table = pq.read_table(out)
    assert table.num_rows == 999
    assert set(table["instrument"].to_pylist()) == {"AAPL"}
    assert table.schema.remove_metadata().equals(EVENT_SCHEMA.remove_metadata())
