"""LOB-Bench's scores for a run, a baseline and a real day, at the real day's depth, with a floor.

Every source becomes books of (messages, rows at ``levels`` depth, book before the first
message): the real day cut into windows of ``WINDOW_NS`` of continuous trading, each
run trajectory replayed from an empty book at the same depth over its open to closing
call. Each score (``lob_scores.SCORES``) is pooled over a source's books and compared
with the real one by L1 and W1 with bootstrap 95% intervals (``distances``).

The floor is real against real: the reference's windows split into their first and
second halves (morning against afternoon for one day) and scored the same way, so a
generator's distance reads against what two samples of the real thing differ by.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mars_ray.data.lobster import (
    EXECUTE,
    HIDDEN,
    LobsterFormatError,
    Messages,
    book_before_first,
    read_pair,
)
from mars_ray.reports.distances import conditional_distances, score_distances
from mars_ray.reports.impact import (
    SIGN_LAGS,
    deviations,
    market_order_signs,
    pooled_curves,
    response_sums,
    sign_autocorrelation,
)
from mars_ray.reports.lob_scores import (
    CONDITIONAL,
    SCORES,
    book_before,
    book_conditional,
    book_scores,
    pool_conditional,
    pool_scores,
)
from mars_ray.reports.realism import Run, depth_view, trajectory_events
from mars_ray.reports.stylized_facts import FACTS, stylized_facts
from mars_ray.schema.clock import NS_PER_S

if TYPE_CHECKING:
    import pyarrow as pa

WINDOW_NS = 20 * 60 * NS_PER_S  # the real day's windows: 20 minutes, as a realism run
FACT_INTERVAL_NS = 10 * NS_PER_S  # returns of the stylized facts: the mid every 10 s
N_BOOT = 20  # bootstrap draws per interval (a report of 21 scores x 3 comparisons)


@dataclass(frozen=True)
class Book:
    """One book to score: messages, the rows after each, the book before the first."""

    msgs: Messages
    rows: np.ndarray
    initial: np.ndarray


def slice_book(msgs: Messages, rows: np.ndarray, initial: np.ndarray, a: int, b: int) -> Book:
    """Messages [a, b) and their rows; the book before them is row a - 1 (or ``initial``)."""
    part = Messages(
        time_ns=msgs.time_ns[a:b],
        type=msgs.type[a:b],
        order_id=msgs.order_id[a:b],
        size=msgs.size[a:b],
        price=msgs.price[a:b],
        direction=msgs.direction[a:b],
        subtick=msgs.subtick[a:b],
    )
    first = rows[a - 1] if a > 0 else initial
    return Book(part, rows[a:b], np.asarray(first, dtype=np.int64))


def windows(
    msgs: Messages, rows: np.ndarray, initial: np.ndarray, window: tuple[int, int], width: int
) -> list[Book]:
    """The book cut into consecutive windows of ``width`` ns from ``window``'s start
    (a last partial window kept when it holds messages)."""
    out = []
    for start in range(window[0], window[1], width):
        end = min(start + width, window[1])
        a, b = np.searchsorted(msgs.time_ns, [start, end], side="left")
        if b > a:
            out.append(slice_book(msgs, rows, initial, int(a), int(b)))
    return out


def reference_books(
    pairs: Sequence[tuple[Path, Path]],
    window: tuple[int, int],
    skip_bad_rows: bool = False,
    width: int = WINDOW_NS,
) -> tuple[list[Book], int]:
    """The real days' windows of continuous trading, and the files' depth (levels)."""
    books: list[Book] = []
    levels = 0
    for message, orderbook in pairs:
        try:
            msgs, rows = read_pair(message, orderbook, skip_bad_rows=skip_bad_rows)
        except LobsterFormatError as exc:
            raise ValueError(str(exc)) from None
        levels = rows.shape[1] // 4 if not levels else min(levels, rows.shape[1] // 4)
        books += windows(msgs, rows, book_before_first(rows, msgs), window, width)
    return books, levels


def events_book(events: pa.Table, levels: int, window: tuple[int, int]) -> Book:
    """One simulated trajectory's book over ``window``: events -> LOBSTER messages ->
    rows replayed at ``levels`` from an empty book, keeping the messages an N-level
    LOBSTER file would hold (``depth_view``)."""
    from mars_ray.data.lobster_replay import replay_orderbook
    from mars_ray.data.lobster_write import events_to_messages

    msgs, _ = events_to_messages(events)
    empty = np.zeros(4 * levels, dtype=np.int64)
    msgs, rows = depth_view(msgs, replay_orderbook(msgs, levels), empty)  # as LOBSTER writes
    a, b = np.searchsorted(msgs.time_ns, list(window), side="left")
    return slice_book(msgs, rows, empty, int(a), int(b))


def scores_of(books: Sequence[Book]) -> dict[str, np.ndarray]:
    return pool_scores([book_scores(b.msgs, b.rows, b.initial) for b in books])


def conditional_of(books: Sequence[Book]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return pool_conditional([book_conditional(b.msgs, b.rows) for b in books])


def message_rate(books: Sequence[Book]) -> float | None:
    """Messages per second over the books' spans (None: no time spanned)."""
    span = sum(int(b.msgs.time_ns[-1] - b.msgs.time_ns[0]) for b in books if len(b.msgs))
    n = sum(len(b.msgs) for b in books)
    return n / (span / NS_PER_S) if span > 0 else None


def one_sided_share(books: Sequence[Book]) -> float | None:
    """Share of book rows with an empty side (None: no rows)."""
    rows = [b.rows for b in books if len(b.rows)]
    if not rows:
        return None
    r = np.vstack(rows)
    return float(np.mean((r[:, 0] <= 0) | (r[:, 2] <= 0)))


def mid_moves(books: Sequence[Book]) -> dict[str, float | int] | None:
    """How far each book's mid moved over its span (ticks, first two-sided row to last),
    summarised: mean, standard deviation, mean absolute move, the extremes and the count
    (None: no book with a two-sided row). The drift and spread of these show what the
    scores, all of them shapes of distributions, do not: where the price went."""
    moves = []
    for b in books:
        ask, bid = b.rows[:, 0], b.rows[:, 2]
        two = np.flatnonzero((ask > 0) & (bid > 0))
        if two.size:
            first, last = two[0], two[-1]
            moves.append((ask[last] + bid[last] - ask[first] - bid[first]) / 2.0)
    if not moves:
        return None
    m = np.asarray(moves, dtype=np.float64)
    return {
        "mean": float(m.mean()),
        "sd": float(m.std()),
        "mean_abs": float(np.abs(m).mean()),
        "min": float(m.min()),
        "max": float(m.max()),
        "books": len(m),
    }


def interval_returns(book: Book, interval: int = FACT_INTERVAL_NS) -> tuple[np.ndarray, np.ndarray]:
    """Log returns of the last two-sided mid at each ``interval`` mark from the book's first
    message, and the shares executed in each interval; intervals without a mid dropped."""
    t = book.msgs.time_ns
    if len(t) < 2:
        return np.zeros(0), np.zeros(0)
    marks = np.arange(int(t[0]), int(t[-1]) + 1, interval, dtype=np.int64)
    ask, bid = book.rows[:, 0], book.rows[:, 2]
    mid = np.where((ask > 0) & (bid > 0), (ask + bid) / 2.0, np.nan)
    at = np.searchsorted(t, marks, side="right") - 1
    r = np.diff(np.log(mid[at]))
    done = np.isin(book.msgs.type, (EXECUTE, HIDDEN))
    idx = (t[done] - t[0]) // interval
    v = np.bincount(idx, weights=book.msgs.size[done], minlength=len(marks))[1 : len(marks)]
    ok = np.isfinite(r)
    return r[ok], v[ok].astype(np.float64)


def facts_of(books: Sequence[Book]) -> dict[str, dict[str, float | bool | None]]:
    """The stylized facts of the books' interval returns, pooled (books end to end)."""
    parts = [interval_returns(b) for b in books]
    r = np.concatenate([p[0] for p in parts] or [np.zeros(0)])
    v = np.concatenate([p[1] for p in parts] or [np.zeros(0)])
    return stylized_facts(r, v)


def curves_of(books: Sequence[Book]) -> dict[str, list[float | None]]:
    """The price-response curves of the books, pooled (``impact``)."""
    return pooled_curves(
        [response_sums(b.msgs, b.rows, book_before(b.rows, b.initial)) for b in books]
    )


def sign_memory_of(books: Sequence[Book]) -> list[float | None]:
    """The books' market-order sign autocorrelation at ``SIGN_LAGS``, pairs pooled."""
    return sign_autocorrelation([market_order_signs(b.msgs) for b in books])


def floor_halves(books: Sequence[Book]) -> tuple[list[Book], list[Book]]:
    """The reference's windows in two halves: first and second in time."""
    half = len(books) // 2
    return list(books[:half]), list(books[half:])


def compare_scores(
    reference: Sequence[Book],
    generated: Mapping[str, Sequence[Book] | None],
    *,
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> tuple[dict[str, Any], dict[str, dict[str, np.ndarray]]]:
    """({"scores": {score: {label: distances, "floor": distances}}, "impact",
    "stylized_facts", "one_sided_rows", "messages_per_s"}, each source's pooled score
    samples (for plots))."""
    real = scores_of(reference)
    pooled = {k: scores_of(v) for k, v in generated.items() if v}
    first, second = floor_halves(reference)
    floor_a, floor_b = scores_of(first), scores_of(second)
    scores: dict[str, dict[str, Any]] = {}
    for name in SCORES:
        row: dict[str, Any] = {}
        for label, s in pooled.items():
            row[label] = score_distances(real[name], s[name], n_boot=n_boot, seed=seed)
        row["floor"] = score_distances(floor_a[name], floor_b[name], n_boot=n_boot, seed=seed)
        scores[name] = row
    real_c = conditional_of(reference)
    pooled_c = {k: conditional_of(v) for k, v in generated.items() if v}
    floor_c = conditional_of(first), conditional_of(second)
    for name in CONDITIONAL:
        row = {
            label: conditional_distances(real_c[name], c[name], n_boot=n_boot, seed=seed)
            for label, c in pooled_c.items()
        }
        row["floor"] = conditional_distances(
            floor_c[0][name], floor_c[1][name], n_boot=n_boot, seed=seed
        )
        scores[name] = row
    every = {"real": list(reference), **{k: list(v) for k, v in generated.items() if v}}
    facts = {k: facts_of(v) for k, v in every.items()}
    curves = {k: curves_of(v) for k, v in every.items()}
    mad = {k: deviations(curves["real"], c) for k, c in curves.items() if k != "real"}
    mad["floor"] = deviations(curves_of(first), curves_of(second))
    result = {
        "scores": scores,
        "impact": {"deviation": mad, "curves": curves},
        "stylized_facts": {
            name: {
                **{k: f[name]["present"] for k, f in facts.items()},
                "statistic": {k: f[name]["statistic"] for k, f in facts.items()},
            }
            for name in FACTS
        },
        "one_sided_rows": {k: one_sided_share(v) for k, v in every.items()},
        "messages_per_s": {k: message_rate(v) for k, v in every.items()},
        "mid_change_ticks": {k: mid_moves(v) for k, v in every.items()},
        "market_sign_autocorrelation": {
            "lags": list(SIGN_LAGS),
            **{k: sign_memory_of(v) for k, v in every.items()},
        },
    }
    return result, {"real": real, **pooled}


def format_scores(result: Mapping[str, Any], labels: Sequence[str]) -> str:
    """Score | L1 per source | floor L1 | ratio of the first source to the floor."""

    def num(v: float | None) -> str:
        return "-" if v is None else f"{v:.3f}"

    head = ["score", *[f"{k} L1" for k in labels], "floor L1", f"{labels[0]}/floor"]
    rows = [head]
    for name, row in result["scores"].items():
        ls = [row.get(k, {}).get("l1") for k in labels]
        fl = row["floor"]["l1"]
        ratio = None if not fl or ls[0] is None else ls[0] / fl
        rows.append([name, *[num(v) for v in ls], num(fl), num(ratio)])
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = [
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def run_books(run: Run, instrument: str, levels: int) -> list[Book]:
    """Each trajectory of a run's instrument as a book at ``levels`` depth, open to closing call."""
    return [events_book(t, levels, run.window) for t in trajectory_events(run, instrument)]


def format_facts(result: Mapping[str, Any], labels: Sequence[str]) -> str:
    """Fact | present (yes/no/-) per source, real first; then one-sided rows and rates."""
    cols = ["real", *labels]
    rows = [["fact", *cols]]
    for name, row in result["stylized_facts"].items():
        rows.append([name, *["yes" if row.get(k) else "no" for k in cols]])
    widths = [max(len(r[i]) for r in rows) for i in range(len(cols) + 1)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))

    def num(v: float | None, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)

    for curve in ("market_0", "market_1"):
        mad = result["impact"]["deviation"]
        lines.append(
            f"impact {curve} deviation (ticks): "
            + ", ".join(f"{k} {num(mad.get(k, {}).get(curve), '.3f')}" for k in [*labels, "floor"])
        )
    for key, fmt in (("one_sided_rows", ".2%"), ("messages_per_s", ".1f")):
        lines.append(f"{key}: " + ", ".join(f"{k} {num(result[key].get(k), fmt)}" for k in cols))
    memory = result["market_sign_autocorrelation"]
    lines.append(
        f"market-order sign autocorrelation at lags {'/'.join(map(str, memory['lags']))}: "
        + ", ".join(f"{k} " + "/".join(num(v, ".2f") for v in memory[k]) for k in cols)
    )
    moves = result["mid_change_ticks"]
    lines.append(
        "mid change over a book (ticks, mean / sd): "
        + ", ".join(
            f"{k} {num((moves.get(k) or {}).get('mean'), '.1f')} / "
            f"{num((moves.get(k) or {}).get('sd'), '.1f')}"
            for k in cols
        )
    )
    return "\n".join(lines)
