"""The reference LOBSTER replay: the rules in Python on the readable ``OrderBook``.

``mars_ray.data.lobster_replay`` replays through the compiled engine; this is the
definition it is held to (``test_lobster_replay.py``): the same book after every
message, queue for queue, and the same events. It drives ``OrderBook`` through its
public methods only, so it cannot lean on how that book stores its queues.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

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
from mars_ray.data.lobster_replay import AnonymousLiquidity
from mars_ray.exchange.book import OrderBook
from mars_ray.schema.events import NO_ID, NO_PRICE, EventType, Side
from mars_ray.schema.phases import Phase

_BUY, _SELL = int(Side.BUY), int(Side.SELL)
_RESUME = int(EventType.RESUME)


class ReferenceReplay(AnonymousLiquidity):
    """Drives an ``OrderBook`` with LOBSTER messages (message types 1-7).

    A LOBSTER file is the exchange's record of what happened: a type 1 is the part
    of an order that came to rest (whatever it took on arrival is in the type 4
    messages before it), and every fill is a type 4. So by default (``match=False``)
    the book runs in its call phase: orders rest as given and nothing matches on
    its own, even when missing data leaves the rebuilt book crossed. With
    ``match=True`` it runs in continuous trading, so every submission goes through
    the book's crossing check as in a live engine (the benchmark's default).

    Halts (type 7) are recorded, but the book does not refuse what the file shows
    was entered during one, and a trading resume does not run our own auction:
    the file's type 6 and type 4 messages say what crossed.

    Liquidity the messages cannot account for (the book before the file, levels
    taken from the orderbook file) is held as anonymous orders with negative ids.
    """

    def __init__(self, track_priority: bool = False, match: bool = False):
        self.resting_phase = Phase.CONTINUOUS if match else Phase.CALL
        self.book = OrderBook(self.resting_phase)
        self.track_priority = track_priority
        self._next_anon = -1
        self.executions = 0  # visible executions seen (with track_priority)
        self.head_agreements = 0  # ... that hit the head of their level's queue
        self.unknown_id_messages = 0  # cancels/executions of ids the book does not know

    # ------------------------------------------------------------ anonymous liquidity
    def add_anonymous(self, t: int, side: int, price: int, size: int, front: bool) -> None:
        """Rest ``size`` of anonymous liquidity at a level, at the head of its queue if ``front``.

        Liquidity that was there before the file (seed, a level coming into view)
        predates every order the file submitted, hence ``front``.
        """
        book = self.book
        oid = self._next_anon
        self._next_anon -= 1
        phase = book.phase
        book.phase = Phase.CALL  # rest, never match
        book.submit(t, oid, side, price, size)
        book.phase = phase
        if front:
            book.move_to_head(oid)

    def _unknown(self, t: int, side: int, price: int, size: int, execute: bool) -> None:
        """A cancel/execution of an id never seen: it rested before the file began, so it
        consumes anonymous liquidity at its price (and, failing that, the level's others)."""
        self.unknown_id_messages += 1
        if execute and self.track_priority:
            self.executions += 1
            queue = self.book.level_queue(side, price)
            if queue and queue[0][0] < 0:
                self.head_agreements += 1
        self._take(t, side, price, size, execute)

    def _take(self, t: int, side: int, price: int, size: int, execute: bool) -> None:
        """Remove ``size`` from a level: anonymous orders first, then known ones, head first.

        The file says this much left the level; when the order it names cannot
        supply it (unknown, or already cut by a resync) the level still shrinks.
        """
        book = self.book
        queue = book.level_queue(side, price)
        ordered = [q for q in queue if q[0] < 0] + [q for q in queue if q[0] >= 0]
        for oid, resting in ordered:
            if size <= 0:
                break
            take = resting if resting < size else size
            if execute:
                book.execute_resting(t, oid, take)
            else:
                book.cancel(t, oid, take)
            size -= take

    # ------------------------------------------------------------ the hot path
    def replay(
        self,
        msgs: Messages,
        start: int = 0,
        stop: int | None = None,
        after: Callable[[int], None] | None = None,
    ) -> int:
        """Apply messages ``start..stop-1``; call ``after(i)`` after each if given.

        Returns the number of messages applied. The loop binds everything it
        touches to locals and dispatches on the type, most frequent first.
        """
        n = len(msgs)
        stop = n if stop is None else min(stop, n)
        if start >= stop:
            return 0
        book = self.book
        lookup = book.order
        submit, cancel = book.submit, book.cancel
        execute, hidden = book.execute_resting, book.record_hidden_trade
        unknown, take = self._unknown, self._take
        track = self.track_priority
        level_queue = book.level_queue
        columns = zip(
            range(start, stop),
            msgs.type[start:stop].tolist(),
            msgs.time_ns[start:stop].tolist(),
            msgs.order_id[start:stop].tolist(),
            msgs.size[start:stop].tolist(),
            msgs.price[start:stop].tolist(),
            msgs.direction[start:stop].tolist(),
            strict=True,
        )
        for i, typ, t, oid, size, price, side in columns:
            if typ == SUBMIT:
                submit(t, oid, side, price, size)
            elif typ == DELETE or typ == PARTIAL_CANCEL:
                entry = lookup(oid)
                if entry is None:
                    unknown(t, side, price, size, False)
                else:
                    cancel(t, oid, size if typ == PARTIAL_CANCEL else 0)  # a delete: all
                    if size > entry[2]:
                        take(t, entry[0], entry[1], size - entry[2], False)
            elif typ == EXECUTE:
                entry = lookup(oid)
                if entry is None:
                    unknown(t, side, price, size, True)
                else:
                    if track:
                        self.executions += 1
                        if level_queue(entry[0], entry[1])[0][0] == oid:
                            self.head_agreements += 1
                    execute(t, oid, size)
                    if size > entry[2]:
                        take(t, entry[0], entry[1], size - entry[2], True)
            elif typ == HIDDEN:
                hidden(t, oid, side, price, size)
            elif typ == CROSS:
                book.record_cross(t, oid, side, price, size)
            elif typ == HALT:
                self._halt(t, price)
            if after is not None:
                after(i)
        return stop - start

    def _halt(self, t: int, code: int) -> None:
        book = self.book
        if code == HALT_STOP:
            book.halt(t)
            book.phase = Phase.CALL  # see the class docstring: accept, never match
        elif code == HALT_QUOTE:
            book.resume_quotes(t)
        else:
            book.emit((t, _RESUME, NO_ID, 0, NO_PRICE, 0, NO_ID, NO_ID, NO_ID, "trade"))
            book.phase = self.resting_phase


def reference_orderbook(
    msgs: Messages, levels: int, initial: np.ndarray | None = None, match: bool = False
) -> tuple[np.ndarray, list[tuple]]:
    """The book's top ``levels`` after each message (ticks, LOBSTER column order), and
    every event the replay recorded, seeding included.

    ``initial`` is the book before the first message (held as anonymous orders).
    """
    replay = ReferenceReplay(match=match)
    if initial is not None:
        replay.seed(initial, int(msgs.time_ns[0]) if len(msgs) else 0)
    out = np.zeros((len(msgs), 4 * levels), dtype=np.int64)
    snapshot = replay.book.snapshot

    def record(i: int) -> None:
        out[i] = snapshot(levels).reshape(-1)

    replay.replay(msgs, after=record)
    return out, replay.book.drain_events()[1]
