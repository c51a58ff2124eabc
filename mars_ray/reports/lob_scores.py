"""LOB-Bench's unconditional score functions, at any book depth.

Each score is a small pure function of one book's LOBSTER messages and orderbook rows
(row i: the book after message i, ``4 * levels`` columns ask px, ask size, bid px, bid
size per level, prices in ticks, an empty level price 0) to a 1-D sample; distances
(``distances``) are applied to any of them. Written from the published definitions
(Nagy et al. 2025, LOB-Bench), not from its code:

- ``spread``: best ask - best bid in ticks, after each message, two-sided books only;
- ``orderbook_imbalance``: (bid - ask) / (bid + ask) volume at the touch;
- ``log_inter_arrival``: log10 seconds between consecutive messages (floored at 1 us);
- ``log_time_to_cancel``: log10 seconds from a submission to its full delete;
- ``ask_volume_touch`` / ``bid_volume_touch``: shares at the best level of a side;
- ``ask_volume`` / ``bid_volume``: shares over every level of the file's depth;
- ``limit_ask_depth`` / ``limit_bid_depth``: ticks from the same side's best quote
  (before the message) to a new limit order's price, away from the spread positive;
- ``limit_ask_level`` / ``limit_bid_level``: the book level (1..N) a new order rests at;
- ``cancel_*_depth`` / ``cancel_*_level``: the same for cancels and deletes, in the book
  before the cancel;
- ``volume_per_minute``: executed shares (visible and hidden) per whole minute;
- ``ofi``: order-flow imbalance (Cont, Kukanov and Stoikov 2014) summed over blocks of
  ``OFI_BLOCK`` messages; ``ofi_up`` / ``ofi_stay`` / ``ofi_down``: the blocks whose next
  block ends with the mid higher, unchanged or lower.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from mars_ray.data.lobster import DELETE, EXECUTE, HIDDEN, PARTIAL_CANCEL, SUBMIT, Messages
from mars_ray.schema.clock import NS_PER_S

MIN_SECONDS = 1e-6  # times below 1 us (simultaneous messages) count as 1 us before log10
MINUTE_NS = 60 * NS_PER_S
OFI_BLOCK = 100  # messages per order-flow-imbalance sample
ASK, BID = -1, 1  # LOBSTER's direction column: -1 sell (ask side), 1 buy (bid side)


def log10_seconds(ns: np.ndarray) -> np.ndarray:
    return np.log10(np.maximum(np.asarray(ns, dtype=np.float64) / NS_PER_S, MIN_SECONDS))


def book_before(rows: np.ndarray, initial: np.ndarray | None = None) -> np.ndarray:
    """Row i: the book before message i (``initial`` before message 0, None: empty)."""
    rows = np.asarray(rows, dtype=np.int64)
    first = np.zeros((1, rows.shape[1]), dtype=np.int64)
    if initial is not None:
        first[0] = np.asarray(initial, dtype=np.int64).reshape(-1)[: rows.shape[1]]
    return np.vstack([first, rows[:-1]]) if len(rows) else rows


def side_columns(rows: np.ndarray, side: int) -> tuple[np.ndarray, np.ndarray]:
    """(prices, sizes), each (rows, levels), of one side: ``ASK`` or ``BID``."""
    off = 0 if side == ASK else 2
    return rows[:, off::4], rows[:, off + 1 :: 4]


# ----------------------------------------------------------------------------- the book
def spread(rows: np.ndarray) -> np.ndarray:
    ask, bid = rows[:, 0], rows[:, 2]
    ok = (ask > 0) & (bid > 0)
    return (ask - bid)[ok].astype(np.float64)


def orderbook_imbalance(rows: np.ndarray) -> np.ndarray:
    ask, bid = rows[:, 1].astype(np.float64), rows[:, 3].astype(np.float64)
    total = ask + bid
    ok = total > 0
    return (bid - ask)[ok] / total[ok]


def volume_touch(rows: np.ndarray, side: int) -> np.ndarray:
    return side_columns(rows, side)[1][:, 0].astype(np.float64)


def volume_all_levels(rows: np.ndarray, side: int) -> np.ndarray:
    return side_columns(rows, side)[1].sum(axis=1).astype(np.float64)


# ----------------------------------------------------------------------------- the flow
def log_inter_arrival(msgs: Messages) -> np.ndarray:
    return log10_seconds(np.diff(msgs.time_ns))


def cancel_lifetimes(msgs: Messages, window: tuple[int, int] | None = None) -> np.ndarray:
    """Nanoseconds from submission (type 1) to full cancel (type 3) of each deleted order whose
    submission is in ``msgs``; with ``window``, only deletes at start <= time < end.

    An id can be deleted and submitted again (a simulated modify is written that way),
    so each delete is paired with the latest submission of its id before it.
    """
    typ = msgs.type
    sel = np.flatnonzero((typ == SUBMIT) | (typ == DELETE))
    order = sel[np.lexsort((sel, msgs.order_id[sel]))]  # by id, then message position
    ids = msgs.order_id[order]
    sub = typ[order] == SUBMIT
    paired = np.zeros(len(order), dtype=bool)
    paired[1:] = ~sub[1:] & sub[:-1] & (ids[1:] == ids[:-1])
    deletes = order[paired]
    submits = order[np.flatnonzero(paired) - 1]
    t_del = msgs.time_ns[deletes]
    keep = np.ones(len(deletes), dtype=bool)
    if window is not None:
        keep = (t_del >= window[0]) & (t_del < window[1])
    return (t_del - msgs.time_ns[submits])[keep].astype(np.int64)


def log_time_to_cancel(msgs: Messages) -> np.ndarray:
    return log10_seconds(cancel_lifetimes(msgs))


def _selected(msgs: Messages, types: tuple[int, ...], side: int) -> np.ndarray:
    return np.flatnonzero(np.isin(msgs.type, types) & (msgs.direction == side))


def order_depth(
    msgs: Messages, before: np.ndarray, types: tuple[int, ...], side: int
) -> np.ndarray:
    """Ticks from the side's best quote before each message of ``types`` to its price,
    positive away from the spread (negative: inside it); messages on an empty side skipped."""
    at = _selected(msgs, types, side)
    best = side_columns(before, side)[0][at, 0]
    ok = best > 0
    price = msgs.price[at]
    depth = price - best if side == ASK else best - price
    return depth[ok].astype(np.float64)


def order_level(msgs: Messages, book: np.ndarray, types: tuple[int, ...], side: int) -> np.ndarray:
    """The level (1..N) of ``book`` holding each message's price; prices out of view skipped."""
    at = _selected(msgs, types, side)
    prices = side_columns(book, side)[0][at]
    hit = prices == msgs.price[at][:, None]
    found = hit.any(axis=1)
    return (hit.argmax(axis=1) + 1)[found].astype(np.float64)


def volume_per_minute(msgs: Messages) -> np.ndarray:
    """Executed shares (types 4 and 5) in each whole minute from the first message."""
    if len(msgs.time_ns) == 0:
        return np.zeros(0)
    t0 = int(msgs.time_ns[0])
    minutes = (int(msgs.time_ns[-1]) - t0) // MINUTE_NS
    if minutes == 0:
        return np.zeros(0)
    done = np.isin(msgs.type, (EXECUTE, HIDDEN))
    idx = (msgs.time_ns[done] - t0) // MINUTE_NS
    keep = idx < minutes
    return np.bincount(idx[keep], weights=msgs.size[done][keep], minlength=minutes).astype(
        np.float64
    )


def ofi_events(rows: np.ndarray, before: np.ndarray) -> np.ndarray:
    """Each message's order-flow contribution e_n from the level-1 quotes before and after
    it (Cont, Kukanov and Stoikov 2014): bid-side inflow minus ask-side inflow."""
    pb0, qb0, pa0, qa0 = before[:, 2], before[:, 3], before[:, 0], before[:, 1]
    pb1, qb1, pa1, qa1 = rows[:, 2], rows[:, 3], rows[:, 0], rows[:, 1]
    bid = np.where(pb1 >= pb0, qb1, 0) - np.where(pb1 <= pb0, qb0, 0)
    ask = np.where(pa1 <= pa0, qa1, 0) - np.where(pa1 >= pa0, qa0, 0)
    return (bid - ask).astype(np.float64)


def ofi_blocks(rows: np.ndarray, before: np.ndarray, block: int = OFI_BLOCK) -> np.ndarray:
    """(OFI of each whole block of ``block`` messages, mid move over the next block: -1/0/1)."""
    e = ofi_events(rows, before)
    n = len(e) // block
    ofi = e[: n * block].reshape(n, block).sum(axis=1)
    mid = (rows[:, 0] + rows[:, 2]) / 2.0
    ends = mid[np.arange(1, n + 1) * block - 1] if n else np.zeros(0)
    move = np.sign(np.diff(ends))  # block k's next block: ends[k + 1] vs ends[k]
    return np.stack([ofi[:-1], move]) if n > 1 else np.zeros((2, 0))


# ----------------------------------------------------------------------------- every score
Score = Callable[[Messages, np.ndarray, np.ndarray], np.ndarray]


def _ofi_by_move(move: int) -> Score:
    def score(msgs: Messages, rows: np.ndarray, before: np.ndarray) -> np.ndarray:
        ofi, moves = ofi_blocks(rows, before)
        return ofi[moves == move]

    return score


CANCELS = (PARTIAL_CANCEL, DELETE)
SCORES: dict[str, Score] = {
    "spread": lambda m, r, b: spread(r),
    "orderbook_imbalance": lambda m, r, b: orderbook_imbalance(r),
    "log_inter_arrival": lambda m, r, b: log_inter_arrival(m),
    "log_time_to_cancel": lambda m, r, b: log_time_to_cancel(m),
    "ask_volume_touch": lambda m, r, b: volume_touch(r, ASK),
    "bid_volume_touch": lambda m, r, b: volume_touch(r, BID),
    "ask_volume": lambda m, r, b: volume_all_levels(r, ASK),
    "bid_volume": lambda m, r, b: volume_all_levels(r, BID),
    "limit_ask_depth": lambda m, r, b: order_depth(m, b, (SUBMIT,), ASK),
    "limit_bid_depth": lambda m, r, b: order_depth(m, b, (SUBMIT,), BID),
    "limit_ask_level": lambda m, r, b: order_level(m, r, (SUBMIT,), ASK),
    "limit_bid_level": lambda m, r, b: order_level(m, r, (SUBMIT,), BID),
    "cancel_ask_depth": lambda m, r, b: order_depth(m, b, CANCELS, ASK),
    "cancel_bid_depth": lambda m, r, b: order_depth(m, b, CANCELS, BID),
    "cancel_ask_level": lambda m, r, b: order_level(m, b, CANCELS, ASK),
    "cancel_bid_level": lambda m, r, b: order_level(m, b, CANCELS, BID),
    "volume_per_minute": lambda m, r, b: volume_per_minute(m),
    "ofi": lambda m, r, b: ofi_blocks(r, b)[0],
    "ofi_up": _ofi_by_move(1),
    "ofi_stay": _ofi_by_move(0),
    "ofi_down": _ofi_by_move(-1),
}


def book_scores(
    msgs: Messages, rows: np.ndarray, initial: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Every score of one book (a day, a window or a trajectory), at the rows' depth."""
    rows = np.asarray(rows, dtype=np.int64)
    if len(rows) != len(msgs.time_ns):
        raise ValueError(f"{len(rows):,} orderbook rows for {len(msgs.time_ns):,} messages")
    before = book_before(rows, initial)
    return {name: np.asarray(f(msgs, rows, before), np.float64) for name, f in SCORES.items()}


def pool_scores(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Concatenate the scores of several books."""
    return {name: np.concatenate([p[name] for p in parts] or [np.zeros(0)]) for name in SCORES}


# ----------------------------------------------------------------------------- conditional
SPREAD_GROUPS = 5  # spreads of 5 ticks and more share a group
TIME_GROUP_NS = 30 * MINUTE_NS  # spread given time of day: half hours
VOLATILITY_LAG = 100  # messages over which the mid's move stands for recent volatility
VOLATILITY_GROUPS = 4  # |move| of 0, 1, 2 and 3+ ticks


def ask_volume_given_spread(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ask volume at the touch, spread group 1..SPREAD_GROUPS) of two-sided rows."""
    ok = (rows[:, 0] > 0) & (rows[:, 2] > 0)
    spread_ = np.minimum(rows[ok, 0] - rows[ok, 2], SPREAD_GROUPS)
    return rows[ok, 1].astype(np.float64), spread_.astype(np.int64)


def spread_given_time(msgs: Messages, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(spread, half hour of the day) of two-sided rows."""
    ok = (rows[:, 0] > 0) & (rows[:, 2] > 0)
    return (rows[ok, 0] - rows[ok, 2]).astype(np.float64), msgs.time_ns[ok] // TIME_GROUP_NS


def spread_given_volatility(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(spread, |mid move| over the previous VOLATILITY_LAG messages in whole ticks, capped)
    of two-sided rows that have such a past."""
    ok = (rows[:, 0] > 0) & (rows[:, 2] > 0)
    mid = np.where(ok, (rows[:, 0] + rows[:, 2]) / 2.0, np.nan)
    move = np.full(len(mid), np.nan)
    move[VOLATILITY_LAG:] = np.abs(mid[VOLATILITY_LAG:] - mid[:-VOLATILITY_LAG])
    keep = ok & np.isfinite(move)
    group = np.minimum(np.floor(move[keep]), VOLATILITY_GROUPS - 1).astype(np.int64)
    return (rows[keep, 0] - rows[keep, 2]).astype(np.float64), group


Conditional = Callable[[Messages, np.ndarray], tuple[np.ndarray, np.ndarray]]
CONDITIONAL: dict[str, Conditional] = {
    "ask_volume_given_spread": lambda m, r: ask_volume_given_spread(r),
    "spread_given_time": spread_given_time,
    "spread_given_volatility": lambda m, r: spread_given_volatility(r),
}


def book_conditional(msgs: Messages, rows: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rows = np.asarray(rows, dtype=np.int64)
    return {name: f(msgs, rows) for name, f in CONDITIONAL.items()}


def pool_conditional(
    parts: list[dict[str, tuple[np.ndarray, np.ndarray]]],
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {
        name: (
            np.concatenate([p[name][0] for p in parts] or [np.zeros(0)]),
            np.concatenate([p[name][1] for p in parts] or [np.zeros(0, np.int64)]),
        )
        for name in CONDITIONAL
    }
