"""Replay LOBSTER messages through our book and check them against the orderbook file.

The replay is ``mars_ray.data.lobster_replay.LobsterReplay``, the one the
writer and the matching benchmark use too: its compiled loop runs while the
rebuilt book equals the file's rows, and stops at a row where it does not, for the
rules below (in Python, on the same book) before it goes on.

Real files are not perfectly self-consistent (orders resting before the file
starts, levels beyond the file's depth, orders that vanish without a message),
so the check follows the rules real tools use:

- orderbook row 0 is the book after message 0; the replay starts from it (as
  anonymous orders, negative ids) and replays messages 1..n-1, comparing the
  rebuilt book with each row;
- a cancel or execution of an id the book does not know consumes anonymous
  liquidity at that price (the order rested before the file began); when a
  message removes more than its order holds (unknown id without anonymous
  liquidity there, or an order a resync already cut), the rest comes off the
  level's other orders, head first, because the file says the level shrank;
- a level that comes into view from beyond the file's depth (on a side where
  the previous row showed every level, a price worse than its last one) is
  taken from the file, with the whole new part of the view: the data cannot
  know it (LOBSTER's message file only carries the events inside the requested
  depth, so whatever happened beyond it is invisible to any replay). Such
  liquidity goes at the head of its queue, since it predates every order the
  file submitted;
- a row where the rebuilt book still disagrees counts as a mismatch and the
  book resynchronises to that row (its view: every level shown, and no other
  level inside it), so one error is counted once.

``level1_match`` and ``all_levels_match`` are fractions of the compared rows
(1..n-1; row 0 is the start). ``queue_priority_agreement`` is the share of
visible executions (type 4) that hit the head of their level's queue under our
price-time priority: the named order, or for an unknown id an anonymous one.
It is a diagnostic, None when there are no executions.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mars_ray.data.lobster import Messages, read_pair
from mars_ray.data.lobster_csv import ReadReport, table_lines
from mars_ray.data.lobster_replay import LobsterReplay
from mars_ray.schema.events import Side

__all__ = ["CheckResult", "LobsterReplay", "check", "check_files", "rebuild"]

_BUY, _SELL = int(Side.BUY), int(Side.SELL)
_INF = 1 << 62

# Floors of the check (issue): only for files with at least this many levels.
MIN_LEVELS_FOR_THRESHOLDS = 5
LEVEL1_FLOOR = 0.999
ALL_LEVELS_FLOOR = 0.97


# ---------------------------------------------------------------------- the check
@dataclass
class CheckResult:
    """Counts of a check; ``summary`` gives the fractions the issue defines."""

    messages: int
    rows: int
    levels: int
    compared: int = 0  # rows 1..n-1
    level1_matches: int = 0
    all_matches: int = 0
    levels_from_file: int = 0  # levels taken from the file as they came into view
    resyncs: int = 0
    executions: int = 0
    head_agreements: int = 0
    unknown_id_messages: int = 0
    read: ReadReport = field(default_factory=ReadReport)  # rounded times, skipped rows

    @property
    def level1_match(self) -> float:
        return self.level1_matches / self.compared if self.compared else 1.0

    @property
    def all_levels_match(self) -> float:
        return self.all_matches / self.compared if self.compared else 1.0

    @property
    def queue_priority_agreement(self) -> float | None:
        """None when the file has no visible executions to judge by."""
        return self.head_agreements / self.executions if self.executions else None

    @property
    def thresholds_apply(self) -> bool:
        return self.levels >= MIN_LEVELS_FOR_THRESHOLDS

    def summary(self) -> dict[str, float | int | None]:
        return {
            "messages": self.messages,
            "rows": self.rows,
            "level1_match": self.level1_match,
            "all_levels_match": self.all_levels_match,
            "queue_priority_agreement": self.queue_priority_agreement,
        }

    def as_json(self) -> dict[str, Any]:
        """``summary`` and what reading the files tolerated (``ReadReport.summary``)."""
        return {**self.summary(), **self.read.summary()}

    def failures(self) -> list[str]:
        """Why the file fails the floors (empty: it passes, or they do not apply)."""
        if not self.thresholds_apply:
            return []
        out = []
        if self.level1_match < LEVEL1_FLOOR:
            out.append(f"level1_match {self.level1_match:.4%} < {LEVEL1_FLOOR:.1%}")
        if self.all_levels_match < ALL_LEVELS_FLOOR:
            out.append(f"all_levels_match {self.all_levels_match:.4%} < {ALL_LEVELS_FLOOR:.0%}")
        return out

    def table(self) -> str:
        """A human-readable summary."""
        qpa = self.queue_priority_agreement
        rows = [
            ("messages", f"{self.messages:,}"),
            ("orderbook rows", f"{self.rows:,} ({self.levels} levels)"),
            (
                "level 1 match",
                f"{self.level1_match:.4%} ({self.level1_matches:,}/{self.compared:,})",
            ),
            (
                "all levels match",
                f"{self.all_levels_match:.4%} ({self.all_matches:,}/{self.compared:,})",
            ),
            (
                "queue priority agreement",
                "n/a"
                if qpa is None
                else f"{qpa:.2%} ({self.head_agreements:,}/{self.executions:,})",
            ),
            ("resyncs (mismatched rows)", f"{self.resyncs:,}"),
            ("levels taken from file", f"{self.levels_from_file:,}"),
            ("unknown-id cancels/executions", f"{self.unknown_id_messages:,}"),
        ]
        if self.thresholds_apply:
            verdict = "FAIL: " + "; ".join(self.failures()) if self.failures() else "pass"
        else:
            verdict = f"thresholds not applied (< {MIN_LEVELS_FOR_THRESHOLDS} levels)"
        rows += self.read.rows()
        rows.append(("result", verdict))
        return "\n".join([*table_lines(rows), *self.read.named()])


def _side_levels(row: list[int], side: int, levels: int) -> list[tuple[int, int]]:
    col = 0 if side == _SELL else 2
    out = []
    for k in range(levels):
        p, s = row[4 * k + col], row[4 * k + col + 1]
        if p == 0:
            break
        out.append((p, s))
    return out


def check(msgs: Messages, orderbook: np.ndarray) -> CheckResult:
    """Replay ``msgs`` from orderbook row 0 and compare every later row (rules: module doc)."""
    n = len(msgs)
    if orderbook.shape[0] != n:
        raise ValueError(f"{n} messages but {orderbook.shape[0]} orderbook rows")
    levels = orderbook.shape[1] // 4
    result = CheckResult(messages=n, rows=orderbook.shape[0], levels=levels, read=msgs.report)
    replay = rebuild(msgs, orderbook, n, result)
    result.compared = n - 1
    result.executions = replay.executions
    result.head_agreements = replay.head_agreements
    result.unknown_id_messages = replay.unknown_id_messages
    return result


def rebuild(
    msgs: Messages, orderbook: np.ndarray, stop: int, result: CheckResult | None = None
) -> LobsterReplay:
    """The book after message ``stop - 1``, replayed from orderbook row 0 by the check's rules
    (module doc): it shows that message's row at the file's depth, queue by queue as far as
    the messages tell (a real start: ``mars_ray/sim/real_start.py``). ``result`` collects the
    check's counts."""
    n = min(stop, len(msgs))
    if result is None:
        result = CheckResult(
            messages=len(msgs), rows=len(orderbook), levels=orderbook.shape[1] // 4
        )
    replay = LobsterReplay(track_priority=True)
    replay.seed(orderbook[0], int(msgs.time_ns[0]))
    i = 1
    while i < n:
        mismatch = replay.follow(msgs, orderbook, i, n)
        result.level1_matches += mismatch - i
        result.all_matches += mismatch - i
        if mismatch == n:
            break
        t = int(msgs.time_ns[mismatch])
        _resync(replay, result, t, orderbook[mismatch - 1], orderbook[mismatch])
        i = mismatch + 1
    return replay


def _resync(
    replay: LobsterReplay, result: CheckResult, t: int, previous: np.ndarray, row: np.ndarray
) -> None:
    """The rules for a row the rebuilt book does not show (module doc): levels that came
    into view from beyond the previous row's depth are taken from the file; if the book
    still disagrees, the row is a mismatch and the book takes the row's view.

    Prices are compared as keys that grow away from the touch (asks as they are, bids
    negated), so one comparison serves both sides.
    """
    book = replay.book
    levels = row.shape[0] // 4
    values = row.tolist()
    file_levels = {s: _side_levels(values, s, levels) for s in (_SELL, _BUY)}
    # The previous row's view of a side ends at its last level, the file's at the row's last
    # level; either at _INF when the side was short of full depth (nothing lay beyond).
    bound, edge = {}, {}
    for side, column in ((_SELL, 4 * levels - 4), (_BUY, 4 * levels - 2)):
        last = int(previous[column])
        bound[side] = side * -last if last else _INF
        lv = file_levels[side]
        edge[side] = side * -lv[-1][0] if len(lv) == levels else _INF
    for side, lv in file_levels.items():
        shown = {p for p, _ in lv}
        key, beyond, in_view = -side, bound[side], edge[side]
        for p, _ in book.levels(side):
            if beyond < key * p <= in_view and p not in shown:
                replay.set_level(t, side, p, 0, front=False)
        for p, s in lv:
            if key * p > beyond and replay.set_level(t, side, p, s, front=True):
                result.levels_from_file += 1
    snap = book.snapshot(levels).reshape(-1)
    if np.array_equal(snap[:4], row[:4]):
        result.level1_matches += 1
    if np.array_equal(snap, row):
        result.all_matches += 1
        return
    result.resyncs += 1
    for side, lv in file_levels.items():
        shown = {p for p, _ in lv}
        key, in_view = -side, edge[side]
        for p, _ in book.levels(side):
            if key * p <= in_view and p not in shown:
                replay.set_level(t, side, p, 0, front=False)
        for p, s in lv:
            replay.set_level(t, side, p, s, front=False)


def check_files(
    message_path: str | os.PathLike,
    orderbook_path: str | os.PathLike,
    skip_bad_rows: bool = False,
) -> CheckResult:
    """Read a LOBSTER file pair (``read_pair``) and ``check`` it; bad input raises
    ``LobsterFormatError``, or with ``skip_bad_rows`` is skipped in both files and counted."""
    msgs, orderbook = read_pair(message_path, orderbook_path, skip_bad_rows=skip_bad_rows)
    return check(msgs, orderbook)
