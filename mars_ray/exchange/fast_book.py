"""A numba-compiled LOBSTER replay that reproduces ``LobsterReplay`` exactly, at compiled speed.

The reference replay (``mars_ray.data.lobster_replay.LobsterReplay`` driving
``mars_ray.exchange.book.OrderBook``) is the definition of what a LOBSTER
message file does to the book; this module is only a faster way to compute the
same thing. ``tests/test_fast_book.py`` holds it to that: after every message of
every real file and of synthetic edge-case sequences, its top-N snapshot must
equal the reference's. So every rule below is the reference's rule, including
the odd ones (zero sizes, an order id that is also an anonymous id, a sell at
the market-order sentinel price); where a rule looks arbitrary, the reference
is the reason.

What the replay does, message type by message type (as ``LobsterReplay.replay``):

- 1 (add): rest the order at the tail of its level; a known id is a duplicate
  and changes nothing. With ``match=True`` in continuous trading it first trades
  against the opposite side like ``OrderBook._match`` (best level first, FIFO,
  a partly filled head keeps its place) and rests only what is left.
- 2 / 3 / 4 (partial cancel / delete / visible execution) of a known id: cancel
  (type 3: all of it) or execute it; whatever the message says left beyond the
  order's remaining size is taken from its level (``_take``). Of an unknown id:
  the whole size is taken from the message's level.
- ``_take``: anonymous orders (negative ids) first, then known ones, each head
  first, ``min(resting, left)`` from each.
- 5 (hidden), 6 (cross): no change to the visible book.
- 7 (halt): a halt or a quote resume puts the book in the call phase (rest,
  never match); a trading resume returns it to the replay's resting phase.

The initial book (``initial``, one LOBSTER orderbook row) is seeded as one
anonymous order per level, ids -1, -2, ... in (ask, bid) order per level, as
``LobsterReplay.seed`` does.

The book is ``mars_ray.exchange.book_arrays``' five arrays and their operations.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from mars_ray.data.lobster import Messages
from mars_ray.exchange.book_arrays import (
    ASK,
    BID,
    EMPTY,
    INITIAL_CAPACITY,
    L_HEAD,
    L_PRICE,
    L_SIDE,
    M_HASH_SHIFT,
    M_NEXT_ANON,
    O_ID,
    O_LEVEL,
    O_NEXT,
    O_SIZE,
    T_SLOT,
    cancel,
    checked_levels,
    crosses,
    crossing_level,
    execute,
    find_level,
    grown,
    hash_find,
    is_full,
    new_book,
    rest,
    snapshot,
)

# Message types and halt codes, as plain ints (numba freezes module globals as constants).
_SUBMIT, _PARTIAL_CANCEL, _DELETE, _EXECUTE, _HALT = 1, 2, 3, 4, 7
_HALT_STOP, _HALT_QUOTE = -1, 0


@njit(cache=True)
def _take(orders, levels, ladder, table, meta, side: int, price: int, size: int, fills: bool):
    """``LobsterReplay._take``: ``size`` leaves the level, anonymous orders first, then
    known ones, each head first, ``min(resting, left)`` from each."""
    level = find_level(ladder, meta, side, price)
    if level == EMPTY:
        return
    known_left = False
    for anonymous in (True, False):
        if not anonymous and not known_left:
            return  # only anonymous orders were there, and the level may be gone with them
        slot = levels[level, L_HEAD]
        while slot != EMPTY:
            if size <= 0:
                return
            nxt = orders[slot, O_NEXT]
            if (orders[slot, O_ID] < 0) == anonymous:
                resting = orders[slot, O_SIZE]
                part = resting if resting < size else size
                if fills:
                    execute(orders, levels, ladder, table, meta, slot, part)
                else:
                    cancel(orders, levels, ladder, table, meta, slot, part)
                size -= part
            else:
                known_left = True
            slot = nxt


@njit(cache=True)
def _match(orders, levels, ladder, table, meta, side: int, limit: int, size: int) -> int:
    """``OrderBook._match`` of an arriving order: trade against the best opposite level
    while it crosses ``limit``, head of the queue first; return the size left."""
    while size != 0:
        level = crossing_level(levels, ladder, meta, side, limit)
        if level == EMPTY:
            break
        # A fill of min(size, head) that removes a head it empties: execute_resting's rule.
        size -= execute(orders, levels, ladder, table, meta, levels[level, L_HEAD], size)
    return size


# ---------------------------------------------------------------------- the replay
@njit(cache=True)
def _run(
    orders, levels, ladder, table, meta, types, order_ids, sizes, prices, directions, match,
    continuous, start, depth, out,
):  # fmt: skip
    """Apply messages from ``start`` until the end or a submission that finds the book full.

    Returns (the first message not applied, whether the book is in continuous
    trading). A full book is grown by the caller and the loop resumes at the same
    message, so the arrays stay fixed for the whole loop.
    """
    shift = meta[M_HASH_SHIFT]
    n = types.size
    for i in range(start, n):
        typ = types[i]
        if _SUBMIT <= typ <= _EXECUTE:
            oid, size, price = order_ids[i], sizes[i], prices[i]
            cell = hash_find(table, shift, oid)
            if cell == EMPTY:
                direction = directions[i]
                if direction != 1 and direction != -1:
                    raise ValueError("direction must be 1 or -1 for message types 1-4")
                side = BID if direction == 1 else ASK
                if typ == _SUBMIT:
                    if is_full(orders, meta):
                        return i, continuous
                    rests = True
                    if continuous and crosses(levels, ladder, meta, side, price):
                        size = _match(orders, levels, ladder, table, meta, side, price, size)
                        rests = size != 0  # (submit returns when nothing is left)
                    if rests:
                        rest(orders, levels, ladder, table, meta, side, price, oid, size, -1)
                else:  # an id the book never saw: it rested before the file began
                    fills = typ == _EXECUTE
                    _take(orders, levels, ladder, table, meta, side, price, size, fills)
            elif typ != _SUBMIT:  # (a known id submitted again is rejected: no change)
                slot = table[cell, T_SLOT]
                remaining = orders[slot, O_SIZE]
                level = orders[slot, O_LEVEL]
                side, price = levels[level, L_SIDE], levels[level, L_PRICE]
                fills = typ == _EXECUTE
                if fills:
                    execute(orders, levels, ladder, table, meta, slot, size)
                else:
                    cut = size if typ == _PARTIAL_CANCEL else 0  # a delete cancels all
                    cancel(orders, levels, ladder, table, meta, slot, cut)
                if size > remaining:
                    left = size - remaining
                    _take(orders, levels, ladder, table, meta, side, price, left, fills)
        elif typ == _HALT:
            code = prices[i]
            continuous = match and code != _HALT_STOP and code != _HALT_QUOTE
        if depth > 0:
            snapshot(levels, ladder, meta, depth, out, i)
    return n, continuous


@njit(cache=True)
def _replay(types, order_ids, sizes, prices, directions, seed, match, depth, out):
    """Seed the book, replay every message (see the module docstring); with ``depth > 0``
    write the top ``depth`` levels after message ``i`` to ``out[i]``.

    Returns the message count and the final book's arrays (for ``fast_replay_levels``).
    """
    orders, levels, ladder, table, meta = new_book(INITIAL_CAPACITY)
    for k in range(seed.size // 4):
        for side, column in ((ASK, 0), (BID, 2)):
            price, size = seed[4 * k + column], seed[4 * k + column + 1]
            if price != 0 and size != 0:
                if is_full(orders, meta):
                    orders, levels, ladder, table, meta = grown(orders, levels, ladder, table, meta)
                anon = meta[M_NEXT_ANON]
                meta[M_NEXT_ANON] = anon - 1
                rest(orders, levels, ladder, table, meta, side, price, anon, size, -1)
    n = types.size
    i, continuous = np.int64(0), match
    while True:
        i, continuous = _run(
            orders, levels, ladder, table, meta, types, order_ids, sizes, prices, directions,
            match, continuous, i, depth, out,
        )  # fmt: skip
        if i == n:
            return n, orders, levels, ladder, table, meta
        orders, levels, ladder, table, meta = grown(orders, levels, ladder, table, meta)


_NO_OUTPUT = np.zeros((0, 0), dtype=np.int64)  # fast_replay records no snapshots


def _readonly_int64(values: np.ndarray) -> np.ndarray:
    """A contiguous int64 read-only view (a copy only if the dtype or layout differs).

    numba compiles one version per argument type, and writability is part of the
    type: columns read from a plain csv arrive read-only (zero-copy from Arrow),
    from a gzip file writable. Handing every caller read-only views means one
    compiled (and cached) signature.
    """
    view = np.ascontiguousarray(values, dtype=np.int64).view()
    view.flags.writeable = False
    return view


def _columns(msgs: Messages) -> tuple[np.ndarray, ...]:
    """The replay's message columns."""
    columns = (msgs.type, msgs.order_id, msgs.size, msgs.price, msgs.direction)
    return tuple(_readonly_int64(column) for column in columns)


def _seed(initial: np.ndarray | None) -> np.ndarray:
    """``initial`` flattened (LOBSTER column order), as ``LobsterReplay.seed`` reads it."""
    if initial is None:
        return _readonly_int64(np.zeros(0, dtype=np.int64))
    return _readonly_int64(np.asarray(initial, dtype=np.int64).reshape(-1))


def fast_replay_orderbook(
    msgs: Messages, levels: int, initial: np.ndarray | None = None, match: bool = False
) -> np.ndarray:
    """The book's top ``levels`` after each message: ``replay_orderbook``'s result, compiled.

    Same layout as ``mars_ray.data.lobster_replay.replay_orderbook`` (int64
    ``(len(msgs), 4 * levels)``, ticks, LOBSTER column order, empty = 0/0) and
    identical values. ``initial`` is the book before the first message (held as
    anonymous orders); ``match`` is ``LobsterReplay(match=...)``: ``False``, as
    ``replay_orderbook`` runs it, rests every order as the file gives it.
    Raises ValueError on a type 1-4 message whose direction is neither 1 nor -1
    (the reader refuses those; the reference book would mis-file the order).
    """
    out = np.zeros((len(msgs), 4 * levels), dtype=np.int64)
    _replay(*_columns(msgs), _seed(initial), match, levels, out)
    return out


def fast_replay_levels(
    msgs: Messages, initial: np.ndarray | None = None, match: bool = False
) -> list[tuple[int, int, list[tuple[int, int]]]]:
    """Every level of the book after the replay, in full: (direction, price, queue).

    Bids come first, then asks, each best level first; a queue is
    ``[(order id, size), ...]`` head first, as ``OrderBook.level_queue`` gives it.
    The book's internal invariants are checked on the way (AssertionError if
    one fails). For tests and debugging: this is where queue order, which the
    snapshots cannot show, is compared with the reference.
    """
    result = _replay(*_columns(msgs), _seed(initial), match, 0, _NO_OUTPUT)
    rows = checked_levels(*result[1:]).tolist()
    out: list[tuple[int, int, list[tuple[int, int]]]] = []
    for side, price, oid, size in rows:
        direction = 1 if side == 0 else -1
        if not out or out[-1][:2] != (direction, price):
            out.append((direction, price, []))
        out[-1][2].append((oid, size))
    return out


def fast_replay(msgs: Messages, initial: np.ndarray | None = None, match: bool = False) -> int:
    """Replay every message without recording snapshots (the benchmark's path).

    Returns the number of messages applied. The first call in a process compiles
    (or loads the cached machine code), so time a second one.
    """
    return int(_replay(*_columns(msgs), _seed(initial), match, 0, _NO_OUTPUT)[0])
