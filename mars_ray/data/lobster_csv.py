"""LOBSTER csv text -> int64 columns, one entry per line, every fault known by its line.

Both LOBSTER files are csv of integers (a message file's first column is a decimal time).
A real file parses in one vectorised pyarrow.csv pass. A file that does not (a short row,
a text field, a value beyond int64) is read again the careful way, still vectorised: split
into lines and fields with pyarrow compute and every field matched, so each faulty line is
known by its line, column and value; only the faulty lines ever become Python objects.

What the integers must mean (types, sides, the tick grid) is the file kind's business
(``mars_ray.data.lobster``), which adds its rules with ``Lines.check``. ``select_rows``
then raises for the first faulty line or, when asked, skips every faulty line (of one file,
or of a message/orderbook pair line for line, so the pair stays aligned) and counts them
in a ``ReadReport``: a row is never dropped silently.

Times are seconds with any number of decimals (real files carry float artefacts such as
``43002.632812672004``), parsed from the text, never through a float, and rounded to the
nearest ns, half up: 43002.632812672004 s -> 43002632812672 ns.
"""

from __future__ import annotations

import gzip
import io
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

NS_DIGITS = 9  # decimals of a time kept exactly; more are rounded to the ns
MAX_TIME_S = (2**63 - 1) // 10**NS_DIGITS - 1  # whole seconds whose ns, rounded up, fit int64
REPORTED_ROWS = 10  # skipped rows a report names one by one (every one is counted)
ROW = "row"  # the column name of a fault in a whole line (the wrong number of fields)

_INT = r"^-?\d+$"
_DECIMAL = r"^(?P<s>\d+)(?:\.(?P<f>\d+))?$"
_INT64_DIGITS = 18  # any integer of up to 18 characters fits in int64


class LobsterFormatError(ValueError):
    """A LOBSTER file that cannot be read as it stands; says where and why."""

    def __init__(
        self,
        path: str | os.PathLike,
        line: int | None,
        message: str,
        column: str | None = None,
        value: str | None = None,
    ):
        self.path = str(path)
        self.line = line
        self.column = column
        self.value = value
        where = f"{self.path}, line {line}" if line is not None else self.path
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True)
class BadRow:
    """One faulty line: the file, the 1-based line, the column, the value as written and
    what is wrong with it (a predicate: ``"is not an integer"``)."""

    path: str
    line: int
    column: str
    value: str
    reason: str

    def error(self) -> LobsterFormatError:
        message = f"{self.column} {self.value!r} {self.reason}"
        return LobsterFormatError(self.path, self.line, message, self.column, self.value)

    def __str__(self) -> str:
        return str(self.error())

    def summary(self) -> dict[str, Any]:
        return {
            "file": self.path,
            "line": self.line,
            "column": self.column,
            "value": self.value,
            "reason": self.reason,
        }


@dataclass
class ReadReport:
    """What a read tolerated, so every command can say it: times with more than nine
    decimals (rounded to the ns) and bad rows skipped (counted, the first few named)."""

    long_decimal_times: int = 0
    skipped_rows: int = 0
    skipped: list[BadRow] = field(default_factory=list)  # the first REPORTED_ROWS, by line

    def summary(self) -> dict[str, Any]:
        return {
            "long_decimal_times": self.long_decimal_times,
            "skipped_rows": self.skipped_rows,
            "skipped": [row.summary() for row in self.skipped],
        }

    def rows(self) -> list[tuple[str, str]]:
        """The counts as (name, value) rows of a printed table."""
        return [
            ("times rounded to the ns", f"{self.long_decimal_times:,}"),
            ("bad rows skipped", f"{self.skipped_rows:,}"),
        ]

    def named(self) -> list[str]:
        """A line per named skipped row (and how many more there were)."""
        lines = [f"  {row}" for row in self.skipped]
        if self.skipped_rows > len(self.skipped):
            lines.append(f"  ... and {self.skipped_rows - len(self.skipped):,} more")
        return lines

    def text(self) -> str:
        """``rows`` as a table, then ``named``."""
        return "\n".join([*table_lines(self.rows()), *self.named()])


def table_lines(rows: list[tuple[str, str]]) -> list[str]:
    """(name, value) rows as lines, the values aligned."""
    width = max(len(name) for name, _ in rows)
    return [f"{name:<{width}}  {value}" for name, value in rows]


def read_note(summaries: Iterable[dict[str, Any]]) -> str:
    """One phrase for the ``ReadReport.summary`` of several files ("" if they tolerated
    nothing), for commands that read many files and report them in a line."""
    summaries = list(summaries)
    rounded = sum(s["long_decimal_times"] for s in summaries)
    skipped = sum(s["skipped_rows"] for s in summaries)
    if not (rounded or skipped):
        return ""
    return f"{rounded:,} times rounded to the ns, {skipped:,} bad rows skipped"


@dataclass
class Lines:
    """One file as read: an int64 array per column with one entry per line (a time column
    in ns; 0 where a field is faulty), and the faults found so far, in the order checked
    (a line's first fault is the one reported)."""

    path: Path
    values: dict[str, np.ndarray]
    text: dict[str, pa.Array | pa.ChunkedArray]  # fields kept as written (and ROW: the line)
    long_times: np.ndarray  # per line: a time with more than NS_DIGITS decimals
    faults: list[tuple[str, np.ndarray, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.long_times)

    def check(self, column: str, bad: np.ndarray, reason: str) -> None:
        """Record that on the lines flagged in ``bad`` the ``column`` ``reason``."""
        if bad.any():
            self.faults.append((column, bad, reason))

    def bad_lines(self) -> np.ndarray:
        bad = np.zeros(len(self), dtype=bool)
        for _, flagged, _ in self.faults:
            bad |= flagged
        return bad

    def first_fault(self, i: int) -> BadRow | None:
        """The first fault of line index ``i`` (0-based), None if it has none."""
        for column, flagged, reason in self.faults:
            if flagged[i]:
                text = self.text.get(column)
                value = text[i].as_py() if text is not None else str(self.values[column][i])
                return BadRow(str(self.path), i + 1, column, value, reason)
        return None


def select_rows(files: Sequence[Lines], skip_bad_rows: bool) -> tuple[np.ndarray, ReadReport]:
    """The lines to keep (one mask for every file: a pair stays aligned) and the report.

    Without ``skip_bad_rows`` the first faulty line (the earliest file on a tie) raises;
    with it, a line faulty in any file is skipped in all of them.
    """
    n = len(files[0])
    bad = np.zeros(n, dtype=bool)
    for lines in files:
        bad |= lines.bad_lines()
    faulty = np.flatnonzero(bad)
    named = faulty[:REPORTED_ROWS] if skip_bad_rows else faulty[:1]
    rows = [_first_fault(files, int(i)) for i in named]
    if rows and not skip_bad_rows:
        raise rows[0].error()
    keep = ~bad
    if not keep.any():
        reason = f"no rows left: all {n:,} are bad" if n else "no rows"
        raise LobsterFormatError(files[0].path, None, reason)
    long_times = sum(int(np.count_nonzero(lines.long_times & keep)) for lines in files)
    return keep, ReadReport(long_times, len(faulty), rows)


def _first_fault(files: Sequence[Lines], i: int) -> BadRow:
    for lines in files:
        row = lines.first_fault(i)
        if row is not None:
            return row
    raise AssertionError(f"line {i + 1} has no fault")


# ---------------------------------------------------------------------- reading
def read_lines(
    path: str | os.PathLike, columns: Sequence[str], time_column: str | None = None
) -> Lines:
    """Read a csv file of ``columns`` (integers; ``time_column`` decimal seconds)."""
    path = Path(path)
    if not path.is_file():
        raise LobsterFormatError(path, None, "no such file")
    fast = _read_fast(path, columns, time_column)
    if fast is not None:
        lines = Lines(path, {}, {}, np.zeros(fast.num_rows, dtype=bool))
        for name in columns:
            if name != time_column:
                lines.values[name] = fast.column(name).to_numpy()
        if time_column is not None:
            _decimal_times(lines, time_column, fast.column(time_column))
        return lines
    return _read_careful(path, columns, time_column)


def _read_fast(path: Path, columns: Sequence[str], time_column: str | None) -> pa.Table | None:
    """The whole file typed in one pyarrow.csv pass; None if any field does not parse."""
    types = {name: pa.int64() for name in columns}
    if time_column is not None:
        types[time_column] = pa.string()
    try:
        table = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(column_names=list(columns)),
            parse_options=pacsv.ParseOptions(quote_char=False, ignore_empty_lines=False),
            convert_options=pacsv.ConvertOptions(column_types=types, strings_can_be_null=False),
        )
    except pa.ArrowInvalid:
        return None
    except (OSError, EOFError) as exc:
        raise LobsterFormatError(path, None, f"unreadable ({exc})") from None
    if any(table.column(name).null_count for name in columns):
        return None  # a short or empty line reads as nulls
    return table


def open_text(path: Path) -> io.TextIOBase:
    """A LOBSTER file as text, gzipped or not; undecodable bytes become U+FFFD, which no
    rule accepts, so they are reported where they stand."""
    if path.suffix == ".gz":
        return gzip.open(path, "rt", newline="", errors="replace")
    return open(path, newline="", errors="replace")  # closed by the caller's with


def _read_careful(path: Path, columns: Sequence[str], time_column: str | None) -> Lines:
    """Every line split into fields and every field matched, so each fault has its line."""
    try:
        with open_text(path) as f:
            text = f.read()
    except (OSError, EOFError) as exc:
        raise LobsterFormatError(path, None, f"unreadable ({exc})") from None
    split = text.split("\n")
    if split[-1] == "":
        split.pop()  # the newline that ends the last line
    rows = pc.utf8_rtrim(pa.array(split, pa.string()), characters="\r")
    n_cols = len(columns)
    counts = pc.list_value_length(pc.split_pattern(rows, ",")).to_numpy(zero_copy_only=False)
    whole = counts == n_cols
    lines = Lines(path, {}, {ROW: rows}, np.zeros(len(rows), dtype=bool))
    lines.check(ROW, ~whole, f"does not have {n_cols} comma-separated fields")
    filler = ",".join(["0"] * n_cols)  # stands in for a line without its fields
    fields = pc.split_pattern(pc.if_else(pa.array(whole), rows, filler), ",")
    for k, name in enumerate(columns):
        raw = pc.list_element(fields, k)
        lines.text[name] = raw
        if name == time_column:
            _decimal_times(lines, name, raw)
        else:
            lines.values[name] = _integers(lines, name, raw)
    return lines


def _integers(lines: Lines, column: str, raw: pa.Array) -> np.ndarray:
    """Integer text -> int64, as pyarrow.csv parses it (blanks around allowed)."""
    text = pc.utf8_trim_whitespace(raw)
    is_int = pc.match_substring_regex(text, _INT).to_numpy(zero_copy_only=False)
    fits = is_int.copy()
    for i in np.flatnonzero(is_int & (pc.utf8_length(text).to_numpy() > _INT64_DIGITS)):
        fits[i] = -(2**63) <= int(text[i].as_py()) < 2**63
    lines.check(column, ~is_int, "is not an integer")
    lines.check(column, is_int & ~fits, "does not fit in int64")
    return pc.cast(pc.if_else(pa.array(fits), text, "0"), pa.int64()).to_numpy()


def _decimal_times(lines: Lines, column: str, raw: pa.Array | pa.ChunkedArray) -> None:
    """Decimal seconds text -> int64 ns in ``lines.values[column]``, rounded half up from
    the digits (never a float); flags the times with more than NS_DIGITS decimals.

    The steps only rare rows need (long decimals, very long whole parts) run on those
    rows alone, so a clean file pays one regex pass and two casts.
    """
    lines.text[column] = raw
    parts = pc.extract_regex(raw, _DECIMAL)
    shaped = parts.is_valid().to_numpy(zero_copy_only=False)
    whole = pc.fill_null(pc.struct_field(parts, "s"), "0")
    if (pc.max(pc.utf8_length(whole)).as_py() or 0) > len(str(MAX_TIME_S)):
        whole = _seconds_text(whole)  # leading zeros, or beyond int64 ns
    fits = shaped & pc.is_valid(whole).to_numpy(zero_copy_only=False)
    seconds = pc.cast(pc.fill_null(whole, "0"), pa.int64()).to_numpy(zero_copy_only=False)
    fits &= seconds <= MAX_TIME_S
    frac = pc.fill_null(pc.struct_field(parts, "f"), "")
    long = pc.utf8_length(frac).to_numpy(zero_copy_only=False) > NS_DIGITS
    round_up = np.zeros(len(long), dtype=np.int64)
    if long.any():
        rows = np.flatnonzero(long)
        rest = pc.utf8_slice_codeunits(pc.take(frac, rows), NS_DIGITS, NS_DIGITS + 1)
        round_up[rows] = pc.greater_equal(rest, "5").to_numpy(zero_copy_only=False)
        frac = pc.utf8_slice_codeunits(frac, 0, NS_DIGITS)
    nanos = pc.cast(pc.utf8_rpad(frac, NS_DIGITS, padding="0"), pa.int64())
    ns = seconds * 10**NS_DIGITS + nanos.to_numpy(zero_copy_only=False) + round_up
    lines.values[column] = np.where(fits, ns, 0)
    lines.long_times = fits & long
    lines.check(column, ~shaped, "is not a non-negative decimal number of seconds")
    lines.check(column, shaped & ~fits, "is beyond int64 ns")


def _seconds_text(whole: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Whole seconds without leading zeros ("0" for none), null where too long for int64."""
    trimmed = pc.utf8_ltrim(whole, characters="0")
    digits = pc.utf8_length(trimmed)
    trimmed = pc.if_else(pc.equal(digits, 0), "0", trimmed)
    too_long = pc.greater(digits, len(str(MAX_TIME_S)))
    return pc.if_else(too_long, pa.scalar(None, pa.string()), trimmed)
