"""The LOBSTER reader on files as they come: float artefacts in times, malformed rows.

Every artefact is a synthetic file written in tmp_path (plain and gzipped); one test
rewrites a time of a real file (a copy in tmp_path) the way public sample days carry them.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from conftest import data_dir, write_lines

from mars_ray.cli import cli
from mars_ray.data.lobster import (
    EMPTY_BID,
    LobsterFormatError,
    read_message_columns,
    read_pair,
)
from mars_ray.data.lobster_csv import REPORTED_ROWS
from mars_ray.lmm.corpus import CorpusError
from mars_ray.pipelines.corpus import build_corpus, parse_corpus_config
from mars_ray.reports.realism import lobster_source

NAME = "TEST_2012-06-21_34200000_57600000_{kind}_1.csv"
EXCERPT = "lobster/excerpt/AAPL_2012-06-21_34200000_57600000_{kind}_10.csv"

# A consistent 1-level day: each message and the book right after it. Line 3 is a halt,
# which leaves the book as it was, so the pair stays consistent when it is skipped.
DAY = [
    ("34200.1,1,1,10,1000100,-1", f"1000100,10,{EMPTY_BID},0"),
    ("34200.2,1,2,20,999900,1", "1000100,10,999900,20"),
    ("34200.3,7,0,0,-1,-1", "1000100,10,999900,20"),
    ("34200.4,1,3,5,1000100,-1", "1000100,15,999900,20"),
    ("34200.5,3,2,20,999900,1", f"1000100,15,{EMPTY_BID},0"),
]
DAY_NS = [34200_100_000_000, 34200_200_000_000, 34200_300_000_000]
DAY_NS += [34200_400_000_000, 34200_500_000_000]
DAY_BOOK = [[10001, 10, 0, 0], [10001, 10, 9999, 20], [10001, 10, 9999, 20]]
DAY_BOOK += [[10001, 15, 9999, 20], [10001, 15, 0, 0]]  # in ticks, empty levels 0


def day_files(
    tmp_path: Path,
    suffix: str = "",
    message: dict[int, str] | None = None,
    book: dict | None = None,
) -> tuple[Path, Path]:
    """DAY as a file pair, with lines replaced by line number (1-based)."""
    msgs = [m for m, _ in DAY]
    rows = [r for _, r in DAY]
    for line, text in (message or {}).items():
        msgs[line - 1] = text
    for line, text in (book or {}).items():
        rows[line - 1] = text
    msg = write_lines(tmp_path / (NAME.format(kind="message") + suffix), msgs)
    ob = write_lines(tmp_path / (NAME.format(kind="orderbook") + suffix), rows)
    return msg, ob


# ---------------------------------------------------------------------- long decimals
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_long_decimal_times_round_to_the_nearest_ns_exactly(tmp_path: Path, suffix: str) -> None:
    times = {
        "43002.632812672004": 43002_632_812_672,  # a real artefact: 12 decimals
        "34200.9999999995": 34201_000_000_000,  # half up, across the second
        "34200.99999999949999": 34200_999_999_999,  # just under half: down
        "34200.1234567895": 34200_123_456_790,
        "34200.0000000004": 34200_000_000_000,
        "34200.123456789": 34200_123_456_789,  # nine decimals: exact, not counted
        "00034200.5": 34200_500_000_000,  # leading zeros are still seconds
    }
    lines = [f"{t},1,{i + 1},1,1000000,1" for i, t in enumerate(times)]
    path = write_lines(tmp_path / ("m.csv" + suffix), lines)
    msgs = read_message_columns(path)
    assert msgs.time_ns.tolist() == list(times.values())
    assert msgs.time_ns.dtype == np.int64
    assert msgs.report.long_decimal_times == 5
    assert msgs.report.skipped_rows == 0


def test_careful_path_reads_exactly_what_the_fast_path_reads(tmp_path: Path) -> None:
    """A bad row sends the whole file down the careful path; the good rows read the same."""
    real = data_dir() / EXCERPT.format(kind="message")
    lines = real.read_text().splitlines()
    lines[10] = lines[10].split(",", 1)[0] + "0004," + lines[10].split(",", 1)[1]
    clean = write_lines(tmp_path / "clean.csv", lines)
    bad = write_lines(tmp_path / "bad.csv", [*lines[:500], "34300.1,1,x,1,1000000,1", *lines[500:]])
    want = read_message_columns(clean)
    got = read_message_columns(bad, skip_bad_rows=True)
    for column in ("time_ns", "type", "order_id", "size", "price", "direction", "subtick"):
        assert np.array_equal(getattr(got, column), getattr(want, column)), column
    assert got.report.long_decimal_times == want.report.long_decimal_times == 1
    assert (got.report.skipped_rows, got.report.skipped[0].line) == (1, 501)


# ---------------------------------------------------------------------- malformed rows
BAD_MESSAGES = {
    "short row": ("34200.3,7,0,0,-1", "row", "34200.3,7,0,0,-1", "does not have 6"),
    "text field": ("34200.3,7,0,zero,-1,-1", "size", "zero", "is not an integer"),
    "bad type": ("34200.3,8,0,0,-1,-1", "type", "8", "is not a message type"),
    "bad direction": ("34200.3,1,5,10,1000100,2", "direction", "2", "must be 1 or -1"),
    "zero size": ("34200.3,1,5,0,1000100,-1", "size", "0", "must be positive"),
    "huge price": (
        "34200.3,1,5,10,1152921504606846900,-1",
        "price",
        "1152921504606846900",
        "is beyond 1,000,000,000 ticks",
    ),
    "price beyond int64": (
        "34200.3,1,5,10,99999999999999999999,-1",
        "price",
        "99999999999999999999",
        "does not fit in int64",
    ),
    "negative price": ("34200.3,1,5,10,-1000100,-1", "price", "-1000100", "must be positive"),
    "negative time": ("-34200.3,7,0,0,-1,-1", "time", "-34200.3", "is not a non-negative decimal"),
    "time beyond int64": ("9999999999.3,7,0,0,-1,-1", "time", "9999999999.3", "is beyond int64 ns"),
    "empty line": ("", "row", "", "does not have 6"),
}


BAD_BOOK_ROWS = {
    "short row": ("1000100,10,999900", "row", "1000100,10,999900", "does not have 4"),
    "text field": ("1000100,ten,999900,20", "ask_size_1", "ten", "is not an integer"),
    "zero size": ("1000100,10,999900,0", "bid_size_1", "0", "must be positive"),
    "size at an empty level": (f"1000100,10,{EMPTY_BID},5", "bid_size_1", "5", "must be 0"),
    "huge price": (
        "1000100,10,1152921504606846900,20",
        "bid_price_1",
        "1152921504606846900",
        "is beyond 1,000,000,000 ticks",
    ),
}


ARTEFACTS = [("message", a) for a in BAD_MESSAGES] + [("orderbook", a) for a in BAD_BOOK_ROWS]


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize(("kind", "artefact"), ARTEFACTS)
def test_bad_row_errors_or_is_skipped_in_both_files(
    tmp_path: Path, kind: str, artefact: str, suffix: str
) -> None:
    """Line 3 of one file is bad: an error naming file, line, column and value, or with
    skip_bad_rows line 3 of both files is left out, and counted."""
    table = BAD_MESSAGES if kind == "message" else BAD_BOOK_ROWS
    line, column, value, reason = table[artefact]
    msg, ob = day_files(tmp_path, suffix, **{"message" if kind == "message" else "book": {3: line}})
    bad_file = msg if kind == "message" else ob
    reads = [lambda: read_pair(msg, ob)]
    if kind == "message":
        reads.append(lambda: read_message_columns(msg))
    for read in reads:
        with pytest.raises(LobsterFormatError) as info:
            read()
        err = info.value
        assert (err.path, err.line, err.column, err.value) == (str(bad_file), 3, column, value)
        assert f"{bad_file}, line 3: {column} {value!r} {reason}" in str(err)
    msgs, book = read_pair(msg, ob, skip_bad_rows=True)
    assert msgs.time_ns.tolist() == DAY_NS[:2] + DAY_NS[3:]
    assert book.tolist() == DAY_BOOK[:2] + DAY_BOOK[3:]
    (row,) = msgs.report.skipped
    assert (row.path, row.line, row.column, row.value) == (str(bad_file), 3, column, value)
    assert row.reason.startswith(reason) and msgs.report.skipped_rows == 1


def test_a_line_bad_in_both_files_is_skipped_once(tmp_path: Path) -> None:
    msg, ob = day_files(tmp_path, message={2: "x"}, book={2: "y", 5: "z"})
    msgs, book = read_pair(msg, ob, skip_bad_rows=True)
    assert msgs.time_ns.tolist() == [DAY_NS[0], DAY_NS[2], DAY_NS[3]] and len(book) == 3
    report = msgs.report
    assert report.skipped_rows == 2
    # the message file's fault is named first on a shared line
    assert [(Path(r.path).name, r.line) for r in report.skipped] == [
        (msg.name, 2),
        (ob.name, 5),
    ]


def test_many_bad_rows_are_all_counted_and_the_first_few_named(tmp_path: Path) -> None:
    good = [f"34200.{i:03d},1,{i + 1},1,1000000,1" for i in range(40)]
    lines = [line if i % 3 else "bad" for i, line in enumerate(good)]
    path = write_lines(tmp_path / "m.csv", lines)
    msgs = read_message_columns(path, skip_bad_rows=True)
    report = msgs.report
    assert len(msgs) == 26 and report.skipped_rows == 14
    assert [r.line for r in report.skipped] == list(range(1, 40, 3))[:REPORTED_ROWS]
    assert "... and 4 more" in report.text()
    assert report.summary()["skipped"][0] == {
        "file": str(path),
        "line": 1,
        "column": "row",
        "value": "bad",
        "reason": "does not have 6 comma-separated fields",
    }


def test_a_file_of_nothing_but_bad_rows_is_an_error_even_when_skipping(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "m.csv", ["a", "b"])
    with pytest.raises(LobsterFormatError, match="no rows left: all 2 are bad"):
        read_message_columns(path, skip_bad_rows=True)


# ---------------------------------------------------------------------- commands
def test_check_lobster_prints_and_writes_the_counts(tmp_path: Path) -> None:
    msg, ob = day_files(tmp_path, message={2: "34200.200000000004,1,2,20,999900,1"})
    out = tmp_path / "check.json"
    res = CliRunner().invoke(cli, ["data", "check-lobster", str(msg), str(ob), "--json", str(out)])
    assert res.exit_code == 0, res.output
    assert re.search(r"times rounded to the ns +1\n", res.output)
    written = json.loads(out.read_text())
    assert written["long_decimal_times"] == 1 and written["level1_match"] == 1.0
    assert (written["skipped_rows"], written["skipped"]) == (0, [])


def test_check_lobster_bad_row_fails_cleanly_or_is_skipped(tmp_path: Path) -> None:
    msg, ob = day_files(tmp_path, message={3: "34200.3,7,0,0,-1,5"})
    args = ["data", "check-lobster", str(msg), str(ob)]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code != 0 and "Traceback" not in res.output
    assert f"{msg}, line 3: direction '5' must be -1, 0 or 1" in res.output
    out = tmp_path / "check.json"
    res = CliRunner().invoke(cli, [*args, "--skip-bad-rows", "--json", str(out)])
    assert res.exit_code == 0, res.output
    assert "bad rows skipped" in res.output and f"{msg}, line 3: direction '5'" in res.output
    written = json.loads(out.read_text())
    assert written["messages"] == 4 and written["level1_match"] == 1.0
    assert written["skipped_rows"] == 1
    assert written["skipped"] == [
        {
            "file": str(msg),
            "line": 3,
            "column": "direction",
            "value": "5",
            "reason": "must be -1, 0 or 1",
        }
    ]


def test_ingest_lobster_prints_and_writes_the_counts(tmp_path: Path) -> None:
    msg, _ = day_files(
        tmp_path,
        ".gz",
        message={1: "34200.100000000004,1,1,10,1000100,-1", 4: "34200.4,1,3,0,1000100,-1"},
    )
    out, report = tmp_path / "events.parquet", tmp_path / "ingest.json"
    args = ["data", "ingest-lobster", str(msg), str(out), "--json", str(report)]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code != 0 and "Traceback" not in res.output
    assert f"{msg}, line 4: size '0' must be positive" in res.output
    res = CliRunner().invoke(cli, [*args, "--skip-bad-rows"])
    assert res.exit_code == 0, res.output
    assert "4 events" in res.output and re.search(r"bad rows skipped +1\n", res.output)
    written = json.loads(report.read_text())
    assert written["events"] == 4 and written["long_decimal_times"] == 1
    assert written["skipped_rows"] == 1 and written["skipped"][0]["line"] == 4
    meta = pq.read_schema(out).metadata
    assert json.loads(meta[b"mars_ray.read_report"])["skipped_rows"] == 1
    assert pq.read_table(out)["time_ns"].to_pylist()[0] == DAY_NS[0]


def test_real_file_with_a_twelve_decimal_time_checks_at_100_percent(tmp_path: Path) -> None:
    """A public sample day carries times such as 43002.632812672004; the same artefact put
    into a real file (a copy) reads, rounds back to its ns and replays at 100% level 1."""
    src = data_dir() / EXCERPT.format(kind="message")
    lines = src.read_text().splitlines()
    t = lines[500].split(",", 1)[0]
    artefact = f"{Decimal(t) - Decimal('0.000000000396'):.12f}"  # rounds back to t
    assert len(artefact.split(".")[1]) == 12
    lines[500] = artefact + "," + lines[500].split(",", 1)[1]
    msg = write_lines(tmp_path / src.name, lines)
    ob = data_dir() / EXCERPT.format(kind="orderbook")
    out = tmp_path / "check.json"
    res = CliRunner().invoke(cli, ["data", "check-lobster", str(msg), str(ob), "--json", str(out)])
    assert res.exit_code == 0, res.output
    written = json.loads(out.read_text())
    assert written["level1_match"] == 1.0 and written["long_decimal_times"] == 1
    assert np.array_equal(read_message_columns(msg).time_ns, read_message_columns(src).time_ns)


def test_corpus_and_realism_pass_skip_bad_rows_through(tmp_path: Path) -> None:
    folder = tmp_path / "lobster"
    folder.mkdir()
    src = data_dir() / EXCERPT.format(kind="message")
    lines = src.read_text().splitlines()
    lines[99] = lines[99].replace(",", ";", 1)
    msg = write_lines(folder / src.name, lines)
    ob = folder / Path(EXCERPT.format(kind="orderbook")).name
    ob.symlink_to(data_dir() / EXCERPT.format(kind="orderbook"))
    raw = {"lobster": {"dir": str(folder), "splits": {"AAPL": "train"}}}
    raw["synthetic"] = {"enabled": False}
    with pytest.raises(CorpusError, match=re.escape(f"{msg}, line 100: row")):
        build_corpus(parse_corpus_config(raw), tmp_path / "strict")
    raw["lobster"]["skip_bad_rows"] = True
    result = build_corpus(parse_corpus_config(raw), tmp_path / "out")
    written = json.loads(result.paths["counts"].read_text())
    assert written["lobster_reads"][str(msg)]["skipped_rows"] == 1
    source = lobster_source([(msg, ob)], skip_bad_rows=True)
    assert source.info["reads"][str(msg)]["skipped"][0]["line"] == 100
