"""Golden tests on the real LOBSTER sample files in ../shared/data/lobster.

The data is never copied into the project: it is read from ``../shared/data``
beside the project root, or from $MARS_RAY_DATA. Without it these tests FAIL
(they never skip): CI must have the folder.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from mars_ray.cli import cli
from mars_ray.data.lobster import (
    book_before_first,
    find_pairs,
    read_message_columns,
    read_messages,
    read_orderbook,
)
from mars_ray.data.lobster_check import CheckResult, check, check_files
from mars_ray.data.lobster_write import write_lobster, write_orderbook_file
from mars_ray.schema.events import EventType

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("MARS_RAY_DATA") or PROJECT_ROOT.parent / "shared" / "data")
LOBSTER = DATA / "lobster"

GOOG = "GOOG_2012-06-21_34200000_57600000_message_10.csv.gz"
AAPL_1 = "AAPL_2012-06-21_34200000_57600000_message_1.csv.gz"
EXCERPT = "excerpt/AAPL_2012-06-21_34200000_57600000_message_10.csv"

# file -> (messages, levels, level1 floor, all-levels floor, queue-priority floor).
# Measured: GOOG 1.0 / 1.0 / 0.987, AAPL-1 0.99998 / - / 0.886, excerpt 1.0 / 1.0 / 1.0;
# the floors leave a little room for the replay's tie rules, no more.
EXPECTED = {
    GOOG: (147_916, 10, 0.999, 0.97, 0.95),
    AAPL_1: (118_497, 1, 0.999, 0.999, 0.80),
    EXCERPT: (999, 10, 0.999, 0.97, 0.95),
}


def require_data() -> Path:
    if not LOBSTER.is_dir():
        pytest.fail(
            f"LOBSTER data not found at {LOBSTER}: put ../shared/data beside the project "
            "or set MARS_RAY_DATA (these tests must not be skipped)",
            pytrace=False,
        )
    return LOBSTER


def message_path(name: str) -> Path:
    path = require_data() / name
    if not path.is_file():
        pytest.fail(f"expected data file {path} is missing", pytrace=False)
    return path


def orderbook_path(name: str) -> Path:
    return message_path(name.replace("_message_", "_orderbook_"))


_cache: dict[str, CheckResult] = {}


def checked(name: str) -> CheckResult:
    """The check of one real file pair, computed once per session."""
    if name not in _cache:
        _cache[name] = check_files(message_path(name), orderbook_path(name))
    return _cache[name]


def test_every_expected_file_pair_is_there() -> None:
    root = require_data()
    found = {str(m.relative_to(root)) for m, _ in find_pairs(root)}
    assert found >= set(EXPECTED), f"missing pairs: {set(EXPECTED) - found}"


def test_no_file_pair_goes_unchecked() -> None:
    """A new pair in the data folder must get expectations here, not be ignored."""
    root = require_data()
    found = {str(m.relative_to(root)) for m, _ in find_pairs(root)}
    assert found <= set(EXPECTED), f"pairs without expectations: {found - set(EXPECTED)}"


@pytest.mark.parametrize("name", list(EXPECTED))
def test_check_passes_on_real_file(name: str) -> None:
    n, levels, l1_floor, all_floor, qpa_floor = EXPECTED[name]
    result = checked(name)
    assert (result.messages, result.rows, result.levels) == (n, n, levels)
    assert result.compared == n - 1
    assert result.level1_match >= l1_floor
    assert result.all_levels_match >= all_floor
    assert result.queue_priority_agreement is not None
    assert qpa_floor <= result.queue_priority_agreement <= 1.0
    assert result.failures() == []
    assert result.thresholds_apply == (levels >= 5)


# Every count of the check on each real file, exactly: the rebuilt book, the resync rules
# and the queue-priority diagnostic all show in them, so a change to any is seen here.
CHECK_COUNTS = {
    AAPL_1: dict(
        level1_matches=118494,
        all_matches=118494,
        levels_from_file=14477,
        resyncs=2,
        executions=23658,
        head_agreements=20972,
        unknown_id_messages=15568,
    ),
    GOOG: dict(
        level1_matches=147915,
        all_matches=147915,
        levels_from_file=4984,
        resyncs=0,
        executions=7764,
        head_agreements=7663,
        unknown_id_messages=3446,
    ),
    EXCERPT: dict(
        level1_matches=998,
        all_matches=998,
        levels_from_file=12,
        resyncs=0,
        executions=98,
        head_agreements=98,
        unknown_id_messages=10,
    ),
}


@pytest.mark.parametrize("name", list(EXPECTED))
def test_check_counts_on_real_file(name: str) -> None:
    result = checked(name)
    assert {field: getattr(result, field) for field in CHECK_COUNTS[name]} == CHECK_COUNTS[name]


def test_goog_day_numbers() -> None:
    result = checked(GOOG)
    assert result.level1_match >= 0.999 and result.all_levels_match >= 0.97
    # Pre-open orders: thousands of cancels/executions of ids never submitted in the file,
    # and deeper levels that come into view as the top clears.
    assert result.unknown_id_messages > 1000 and result.levels_from_file > 1000
    assert result.executions == 7765 - 1  # type 4 messages after message 0


def test_goog_reads_exactly() -> None:
    path = message_path(GOOG)
    table = read_messages(path)
    assert table.num_rows == 147_916
    counts = dict(
        zip(*np.unique(table.column("event_type").to_numpy(), return_counts=True), strict=True)
    )
    E = EventType
    assert counts == {
        E.SUBMIT: 71_258,
        E.CANCEL: 19 + 64_961,
        E.TRADE: 7_765,
        E.HIDDEN_TRADE: 3_913,
    }
    reasons = table.column("reason").to_pylist()
    assert reasons.count("delete") == 64_961
    assert sum(1 for r in reasons if r == "subtick:50") == 50  # midpoint hidden executions
    first = table.slice(0, 1).to_pylist()[0]  # 34200.015105074,4,15818974,4,5794000,1
    assert (
        first["time_ns"],
        first["event_type"],
        first["order_id"],
        first["size"],
        first["price"],
        first["side"],
    ) == (34_200_015_105_074, E.TRADE, 15818974, 4, 57940, 1)
    book = read_orderbook(orderbook_path(GOOG))
    assert book.shape == (147_916, 40)
    assert book[0, :4].tolist() == [58023, 100, 57940, 496]


@pytest.mark.slow
def test_goog_round_trip(tmp_path: Path) -> None:
    """read -> write -> read: the same events, the message file byte for byte, and an
    orderbook file that is the replay of the written messages."""
    src = message_path(GOOG)
    table = read_messages(src)
    msgs = read_message_columns(src)
    real_book = read_orderbook(orderbook_path(GOOG))
    initial = book_before_first(real_book, msgs)
    msg, ob = tmp_path / "GOOG_message_10.csv.gz", tmp_path / "GOOG_orderbook_10.csv.gz"
    _, written, stats = write_lobster(table, msg, ob, levels=10, initial=initial)
    assert stats.skipped == {}
    with gzip.open(src, "rb") as a, gzip.open(msg, "rb") as b:
        assert a.read() == b.read()
    again = read_messages(msg, instrument="GOOG")
    assert again.equals(table)
    reread = read_orderbook(ob)
    assert np.array_equal(reread, written)
    assert np.array_equal(written[0], real_book[0])
    # The written pair is consistent by construction, to the last row.
    result = check(read_message_columns(msg), reread)
    assert (result.level1_match, result.all_levels_match) == (1.0, 1.0)
    # Writing what was read back gives the same files again.
    msg2, ob2 = tmp_path / "again_message_10.csv", tmp_path / "again_orderbook_10.csv"
    write_lobster(again, msg2, ob2, levels=10, initial=initial)
    with gzip.open(msg, "rt") as f:
        assert f.read() == msg2.read_text()
    assert np.array_equal(read_orderbook(ob2), written)


def test_cli_on_goog_matches_the_api(tmp_path: Path) -> None:
    out = tmp_path / "goog.json"
    args = [
        "data",
        "check-lobster",
        str(message_path(GOOG)),
        str(orderbook_path(GOOG)),
        "--json",
        str(out),
    ]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    payload = json.loads(out.read_text())
    assert list(payload) == [
        "messages",
        "rows",
        "level1_match",
        "all_levels_match",
        "queue_priority_agreement",
        "long_decimal_times",
        "skipped_rows",
        "skipped",
    ]
    assert payload == checked(GOOG).as_json()
    assert json.dumps(payload, indent=2) in res.output


def test_cli_fails_corrupted_goog_orderbook(tmp_path: Path) -> None:
    book = read_orderbook(orderbook_path(GOOG))
    rng = np.random.default_rng(7)
    rows = rng.choice(np.arange(1, len(book)), size=1000, replace=False)
    book[rows, 3] += 1  # best bid size off by one on 1000 rows
    bad = tmp_path / "GOOG_2012-06-21_34200000_57600000_orderbook_10.csv.gz"
    write_orderbook_file(book, bad)
    out = tmp_path / "bad.json"
    res = CliRunner().invoke(
        cli, ["data", "check-lobster", str(message_path(GOOG)), str(bad), "--json", str(out)]
    )
    assert res.exit_code == 1
    assert "check failed" in res.output and "Traceback" not in res.output
    payload = json.loads(out.read_text())
    assert payload["level1_match"] < 0.999 and payload["all_levels_match"] < 0.99
    # Each altered row is a mismatch, and so is the row after it (the book resynced to
    # the altered row): an error is counted where it shows, not for the rest of the day.
    mismatches = round((1 - payload["level1_match"]) * (len(book) - 1))
    assert 1000 <= mismatches <= 2000


def test_cli_reports_a_malformed_real_file_line(tmp_path: Path) -> None:
    with gzip.open(message_path(GOOG), "rt") as f:
        lines = f.read().splitlines()
    lines[41] = lines[41].replace(",", ";", 1)
    bad = tmp_path / "GOOG_2012-06-21_34200000_57600000_message_10.csv"
    bad.write_text("\n".join(lines) + "\n")
    res = CliRunner().invoke(cli, ["data", "check-lobster", str(bad), str(orderbook_path(GOOG))])
    assert res.exit_code == 1
    assert f"{bad}, line 42" in res.output and "Traceback" not in res.output


def test_matching_benchmark_runs(tmp_path: Path) -> None:
    """The benchmark as a user runs it: a script, whose JSON carries its provenance."""
    out = tmp_path / "bench.json"
    args = ["--messages", str(message_path(EXCERPT)), "--json", str(out), "--repeat", "2"]
    script = PROJECT_ROOT / "benchmarks" / "matching.py"
    done = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert result["messages"] == 999 and result["events_recorded"] is True
    assert set(result["modes"]) == {"match", "no-match"}
    for row in result["modes"].values():
        assert row["seconds"] > 0 and len(row["repeats_s"]) == 2
        assert row["msgs_per_s"] == pytest.approx(999 / row["seconds"])
        assert row["events"] >= 999 - 10  # an event per message but unknown ids with no level
    assert set(result["machine"]) >= {"cpu", "cpus", "platform", "python"}
    assert result["command"] == "python benchmarks/matching.py " + " ".join(args)
    assert result["commit"] != "unknown"
