"""LOBSTER messages replayed through the simulation's compiled book: one engine, not two.

The consistency check (``lobster_check``), the writer's orderbook file
(``lobster_write``), the corpus pipeline, the realism report and the matching
benchmark all replay through ``LobsterReplay``, a numba message loop over
``CompiledOrderBook``'s operations, so what is benchmarked is what is checked and
written, and what the simulation matches with. ``tests/lobster_reference.py``
keeps the readable definition (the same rules on ``OrderBook``, in Python), and
``tests/test_lobster_replay.py`` holds this loop to it: after every message, the
same book, queue for queue, and the same events.

A LOBSTER file is the exchange's record of what happened: a type 1 is the part of
an order that came to rest (whatever it took on arrival is in the type 4 messages
before it), and every fill is a type 4. So by default (``match=False``) the book
runs in its call phase: orders rest as given and nothing matches on its own, even
when missing data leaves the rebuilt book crossed. With ``match=True`` it runs in
continuous trading, so every submission goes through the book's crossing check as
in a live engine (the benchmark's default).

Message by message:

- 1 (add): ``submit`` (a known id is a duplicate: rejected, no change).
- 2 / 3 / 4 (partial cancel / delete / visible execution) of a known id: cancel
  (type 3: all of it) or ``execute_resting``; whatever the message says left beyond
  the order's remaining size is taken from its level (``take_liquidity``: the order
  was already cut by a resync, or the data lost a message). Of an unknown id (it
  rested before the file began): the whole size is taken from the message's level.
- 5 (hidden execution): ``record_hidden_trade``; 6 (cross): ``record_cross``.
- 7 (halt): recorded (``record_halt``/``record_resume``), but the book does not refuse
  what the file shows was entered during a halt, and a trading resume runs no
  auction of our own: the file's type 6 and type 4 messages say what crossed.

Liquidity the messages cannot account for (the book before the file, levels taken
from the orderbook file) is held as anonymous orders with negative ids.

Events are recorded as the book records them (``OrderBook``'s rows) and handed to
``on_events`` in chunks of at most about ``EVENT_CHUNK`` rows, so a full day's replay
holds a bounded buffer.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numba import njit

from mars_ray.data.lobster import (
    CROSS,
    DELETE,
    EXECUTE,
    HALT,
    HALT_QUOTE,
    HALT_STOP,
    HIDDEN,
    PARTIAL_CANCEL,
    SUBMIT,
    Messages,
)
from mars_ray.exchange.book import OrderBook
from mars_ray.exchange.book_arrays import (
    EMPTY,
    L_HEAD,
    L_PRICE,
    L_SIDE,
    O_ID,
    O_LEVEL,
    O_SIZE,
    find_level,
    is_full,
    order_slot,
    snapshot,
)
from mars_ray.exchange.compiled_book import (
    S_EVENTS,
    CompiledOrderBook,
    cancel_resting,
    execute_resting,
    record_cross,
    record_halt,
    record_hidden_trade,
    record_resume,
    side_index,
    submit_order,
    take_liquidity,
)
from mars_ray.schema.events import NO_ID, OrderType, Side
from mars_ray.schema.phases import Phase

EVENT_CHUNK = 1 << 16  # events recorded between two drains (plus what one message writes)

_LIMIT = int(OrderType.LIMIT)
_CALL = int(Phase.CALL)
_BUY, _SELL = int(Side.BUY), int(Side.SELL)

# why the message loop returned
_DONE, _FULL, _DRAIN, _MISMATCH = 0, 1, 2, 3
# counters[field] (with track_priority)
_C_EXECUTIONS, _C_HEAD, _C_UNKNOWN = 0, 1, 2


# ---------------------------------------------------------------------- the message loop
@njit(cache=True)
def _run(
    orders, levels, ladder, table, meta, state, ev, times, types, ids, sizes, prices, directions,
    resting_phase, track, counters, start, stop, event_limit, depth, out, expected,
):  # fmt: skip
    """Apply messages ``start:stop`` to the book (the rules: module doc); count unknown ids,
    and with ``track`` visible executions and those at the head of their queue.

    With ``depth > 0`` the top ``depth`` levels after message ``i`` go to ``out[i]``
    when ``out`` has rows, else they are compared with ``expected[i]``. Returns (the
    first message not applied, why): ``_DONE`` at ``stop``; ``_FULL``, a submission
    found the book full (grow it and resume there); ``_DRAIN``, ``event_limit`` events
    are recorded (drain them and resume there); ``_MISMATCH``, the book after the
    last message applied differs from its row of ``expected``.
    """
    compare = depth > 0 and out.shape[0] == 0
    scratch = np.zeros((1, 4 * depth), np.int64)
    for i in range(start, stop):
        if state[S_EVENTS] >= event_limit:
            return i, _DRAIN
        typ = types[i]
        t, oid, size, price, direction = times[i], ids[i], sizes[i], prices[i], directions[i]
        if typ == SUBMIT:
            if is_full(orders, meta):
                return i, _FULL
            if direction != 1 and direction != -1 and order_slot(table, meta, oid) == EMPTY:
                side_index(direction)  # raises: the book cannot file the order
            submit_order(
                orders, levels, ladder, table, meta, state, ev, t, _LIMIT, oid, direction, price,
                size, NO_ID,
            )  # fmt: skip
        elif typ == PARTIAL_CANCEL or typ == DELETE or typ == EXECUTE:
            fills = typ == EXECUTE
            slot = order_slot(table, meta, oid)
            if slot == EMPTY:  # it rested before the file began
                s = side_index(direction)
                counters[_C_UNKNOWN] += 1
                if track and fills:
                    counters[_C_EXECUTIONS] += 1
                    level = find_level(ladder, meta, s, price)
                    if level != EMPTY and orders[levels[level, L_HEAD], O_ID] < 0:
                        counters[_C_HEAD] += 1
                take_liquidity(
                    orders, levels, ladder, table, meta, state, ev, t, s, price, size, fills
                )
            else:
                remaining = orders[slot, O_SIZE]
                level = orders[slot, O_LEVEL]
                s, at = levels[level, L_SIDE], levels[level, L_PRICE]
                if fills:
                    if track:
                        counters[_C_EXECUTIONS] += 1
                        if levels[level, L_HEAD] == slot:
                            counters[_C_HEAD] += 1
                    execute_resting(
                        orders, levels, ladder, table, meta, state, ev, t, slot, size, NO_ID
                    )
                else:
                    cut = size if typ == PARTIAL_CANCEL else 0  # a delete cancels all
                    cancel_resting(orders, levels, ladder, table, meta, state, ev, t, slot, cut)
                if size > remaining:
                    left = size - remaining
                    take_liquidity(
                        orders, levels, ladder, table, meta, state, ev, t, s, at, left, fills
                    )
        elif typ == HIDDEN:
            record_hidden_trade(state, ev, t, oid, direction, price, size)
        elif typ == CROSS:
            record_cross(state, ev, t, oid, direction, price, size)
        elif typ == HALT:
            if price == HALT_STOP:
                record_halt(state, ev, t)
            elif price == HALT_QUOTE:
                record_resume(state, ev, t, False, _CALL)
            else:  # a trading resume (and any other code)
                record_resume(state, ev, t, True, resting_phase)
        if compare:
            scratch[0, :] = 0
            snapshot(levels, ladder, meta, depth, scratch, 0)
            for k in range(4 * depth):
                if scratch[0, k] != expected[i, k]:
                    return i + 1, _MISMATCH
        elif depth > 0:
            snapshot(levels, ladder, meta, depth, out, i)
    return stop, _DONE


_NO_OUT = np.zeros((0, 0), dtype=np.int64)  # writable, as ``out`` is
_NO_EXPECTED = _NO_OUT.view()  # read-only, as ``expected`` is: one compiled signature
_NO_EXPECTED.flags.writeable = False


def _readonly_int64(values: np.ndarray) -> np.ndarray:
    """A contiguous int64 read-only view (a copy only if the dtype or layout differs).

    numba compiles one version per argument type, and writability is part of the
    type: columns read from a plain csv arrive read-only (zero-copy from Arrow),
    from a gzip file writable. Handing the loop read-only views means one compiled
    (and cached) signature.
    """
    view = np.ascontiguousarray(values, dtype=np.int64).view()
    view.flags.writeable = False
    return view


def _columns(msgs: Messages) -> tuple[np.ndarray, ...]:
    """The loop's message columns."""
    columns = (msgs.time_ns, msgs.type, msgs.order_id, msgs.size, msgs.price, msgs.direction)
    return tuple(_readonly_int64(column) for column in columns)


# ---------------------------------------------------------------------- the replay
class AnonymousLiquidity:
    """Liquidity the messages cannot account for, on any book with ``OrderBook``'s interface.

    The rules the check needs beside the message loop, shared by ``LobsterReplay`` and
    the Python reference replay of the tests (``book`` is theirs; ``add_anonymous``
    rests ``size`` at a level under a new negative id, at the head of its queue if
    ``front``: liquidity that was there before the file, a seed or a level coming into
    view, predates every order the file submitted).
    """

    book: OrderBook | CompiledOrderBook

    def add_anonymous(self, t: int, side: int, price: int, size: int, front: bool) -> None:
        raise NotImplementedError

    def remove_liquidity(self, t: int, side: int, price: int, size: int) -> None:
        """Take ``size`` off a level: anonymous orders first (head first), then known ones
        from the tail (the newest are the likeliest to be the data's missing cancels)."""
        book = self.book
        queue = book.level_queue(side, price)
        ordered = [q for q in queue if q[0] < 0] + [q for q in reversed(queue) if q[0] >= 0]
        for oid, resting in ordered:
            if size <= 0:
                break
            take = resting if resting < size else size
            book.cancel(t, oid, take)
            size -= take

    def set_level(self, t: int, side: int, price: int, target: int, front: bool) -> bool:
        """Make the level at ``price`` hold ``target``; return whether anything changed."""
        have = self.book.depth_at(side, price)
        if have == target:
            return False
        if target > have:
            self.add_anonymous(t, side, price, target - have, front)
        else:
            self.remove_liquidity(t, side, price, have - target)
        return True

    def seed(self, row: np.ndarray, t: int = 0) -> None:
        """Start from one orderbook row (ticks, LOBSTER column order): one anonymous order
        per level."""
        flat = np.asarray(row, dtype=np.int64).reshape(-1).tolist()
        for k in range(len(flat) // 4):
            ask_p, ask_s, bid_p, bid_s = flat[4 * k : 4 * k + 4]
            if ask_p and ask_s:
                self.add_anonymous(t, _SELL, ask_p, ask_s, front=False)
            if bid_p and bid_s:
                self.add_anonymous(t, _BUY, bid_p, bid_s, front=False)


class LobsterReplay(AnonymousLiquidity):
    """Drives a ``CompiledOrderBook`` with LOBSTER messages (message types 1-7).

    ``match``: see the module doc. ``track_priority`` keeps the check's counters:
    visible executions, those that hit the head of their level's queue (the named
    order, or for an unknown id an anonymous one), and cancels/executions of ids
    the book does not know. ``on_events(seq, records)`` receives the recorded
    events (``EVENT_RECORD`` arrays) in order, a chunk at a time; without it they
    are dropped once recorded.
    """

    def __init__(
        self,
        track_priority: bool = False,
        match: bool = False,
        on_events: Callable[[int, np.ndarray], None] | None = None,
    ):
        self.resting_phase = Phase.CONTINUOUS if match else Phase.CALL
        self.book = CompiledOrderBook(self.resting_phase)
        self.track_priority = track_priority
        self.on_events = on_events
        self._counters = np.zeros(3, dtype=np.int64)
        self._columns: tuple[Messages | None, tuple[np.ndarray, ...]] = (None, ())

    @property
    def executions(self) -> int:
        """Visible executions seen (with ``track_priority``)."""
        return int(self._counters[_C_EXECUTIONS])

    @property
    def head_agreements(self) -> int:
        """Visible executions that hit the head of their level's queue."""
        return int(self._counters[_C_HEAD])

    @property
    def unknown_id_messages(self) -> int:
        """Cancels and executions of ids the book does not know."""
        return int(self._counters[_C_UNKNOWN])

    def add_anonymous(self, t: int, side: int, price: int, size: int, front: bool) -> None:
        self.book.rest_anonymous(t, side, price, size, front)

    # ------------------------------------------------------------ the loop
    def replay(
        self, msgs: Messages, start: int = 0, stop: int | None = None, out: np.ndarray | None = None
    ) -> int:
        """Apply messages ``start..stop-1``; return how many were applied.

        With ``out`` (int64, ``(len(msgs), 4 * levels)``, zero) the top ``levels``
        after message ``i`` are written to ``out[i]``. The first call in a process
        compiles the loop (or loads numba's cached machine code).
        """
        stop = len(msgs) if stop is None else min(stop, len(msgs))
        if start >= stop:
            self.drain()
            return 0
        rows = _NO_OUT if out is None else out
        self._loop(msgs, start, stop, rows.shape[1] // 4, rows, _NO_EXPECTED)
        return stop - start

    def follow(self, msgs: Messages, orderbook: np.ndarray, start: int, stop: int) -> int:
        """Apply messages from ``start`` while the book after each equals its row of
        ``orderbook``; return the first message (applied) after which it differs, or ``stop``."""
        if start >= stop:
            return stop
        expected = _readonly_int64(orderbook)
        return self._loop(msgs, start, stop, expected.shape[1] // 4, _NO_OUT, expected)

    def _loop(self, msgs, start, stop, depth, out, expected) -> int:
        cached, columns = self._columns
        if cached is not msgs:
            columns = _columns(msgs)
            self._columns = (msgs, columns)
        book = self.book
        phase = int(self.resting_phase)
        i = start
        while True:
            self.drain()
            capacity = book.arrays[0].shape[0]
            # one message writes at most an event per resting order and two more
            book.reserve_events(EVENT_CHUNK + capacity + 2)
            i, why = _run(
                *book.arrays, book.state, book.event_rows, *columns, phase,
                self.track_priority, self._counters, i, stop, EVENT_CHUNK, depth, out, expected,
            )  # fmt: skip
            if why == _FULL:
                book.grow()
            elif why != _DRAIN:
                self.drain()
                return i - 1 if why == _MISMATCH else i

    def drain(self) -> None:
        """Hand the events recorded so far to ``on_events`` (or drop them)."""
        if self.book.events_recorded:
            seq, records = self.book.drain_records()
            if self.on_events is not None:
                self.on_events(seq, records)


def replay_orderbook(
    msgs: Messages, levels: int, initial: np.ndarray | None = None, match: bool = False
) -> np.ndarray:
    """The book's top ``levels`` after each message: int64 ``(len(msgs), 4 * levels)``,
    ticks, LOBSTER column order, an empty level 0/0.

    ``initial`` is the book before the first message (held as anonymous orders);
    ``match`` is ``LobsterReplay``'s. Raises ValueError on a type 1-4 message whose
    direction is neither 1 nor -1 where the book would have to file it.
    """
    replay = LobsterReplay(match=match)
    if initial is not None:
        replay.seed(initial, int(msgs.time_ns[0]) if len(msgs) else 0)
    out = np.zeros((len(msgs), 4 * levels), dtype=np.int64)
    replay.replay(msgs, out=out)
    return out


def warm_up() -> None:
    """Compile (or load from numba's on-disk cache) the message loop, as the writer, the
    reports and the check call it, so that the first replay after an install starts at
    once. The set-up script runs this after ``compiled_book.warm_up``."""
    rows = [  # (type, id, size, price, direction): every message type
        (SUBMIT, 1, 5, 100, 1),
        (SUBMIT, 2, 5, 101, -1),
        (PARTIAL_CANCEL, 1, 2, 100, 1),
        (EXECUTE, 2, 1, 101, -1),
        (DELETE, 9, 1, 99, 1),
        (HIDDEN, 0, 1, 100, 1),
        (CROSS, 0, 1, 100, 1),
        (HALT, 0, 0, HALT_STOP, 0),
        (HALT, 0, 0, HALT_QUOTE, 0),
        (HALT, 0, 0, 1, 0),
    ]
    cols = np.array(rows, dtype=np.int64)
    msgs = Messages(
        time_ns=np.arange(len(rows), dtype=np.int64),
        type=cols[:, 0].astype(np.int8),
        order_id=cols[:, 1],
        size=cols[:, 2],
        price=cols[:, 3],
        direction=cols[:, 4].astype(np.int8),
    )
    initial = np.array([[101, 3, 99, 4]])
    book = replay_orderbook(msgs, 1, initial, match=True)
    check = LobsterReplay(track_priority=True)
    check.seed(initial)
    check.follow(msgs, book, 0, len(msgs))
