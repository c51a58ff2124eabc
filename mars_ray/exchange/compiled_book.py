"""``OrderBook`` compiled: the same rules and the same events, on ``book_arrays``.

The simulation spends most of its time applying agents' orders to books; this
book applies a whole batch (numpy columns) in one numba call and records events
as integer rows, so neither the orders nor the events become Python objects.
``OrderBook`` (book.py) stays the definition: ``tests/test_book_properties.py``
holds this one to it, event for event and queue for queue, over random order
flow through every phase, and ``tests/test_simulation.py`` checks that a simulated
day gives identical tables with either (``kernel.book``).

State: ``book_arrays``' five arrays (orders with their owner agent, levels, the price
ladders, the id hash table, meta), plus ``state`` (event count, phase, last trade
price) and ``events``, one int64 row per event: ``schema.ROW_FIELDS`` with the
reason as a code (``reasons``). Sides are +1/-1 in events and orders, 0/1 (bid/ask)
inside the arrays. Before each compiled call the event rows are made big enough for
anything the call can write, and a submission that finds the book full returns to
Python, which doubles the arrays and resumes: the arrays never change inside a call.

The same engine replays exchange data (``mars_ray.data.lobster_replay``): besides
submit/cancel/modify it has what a record of another exchange's book needs, each
with ``OrderBook``'s events where ``OrderBook`` has the operation (``execute_resting``,
``record_hidden_trade``, ``record_cross``, ``move_to_head``) and otherwise the events the
reference replay (``tests/lobster_reference.py``) writes: ``take_liquidity`` (size that
left a level, anonymous liquidity first), ``rest_anonymous`` (liquidity that predates
the data) and ``record_halt``/``record_resume`` (a halt the data shows, during which
the book keeps accepting what the data says was entered). These are njit functions
on the arrays, for a compiled message loop, and methods, for Python.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from mars_ray.exchange.auction import UncrossResult, find_uncross_price
from mars_ray.exchange.book import MARKET_BUY_PRICE, MARKET_SELL_PRICE, SessionPhases
from mars_ray.exchange.book_arrays import (
    ASK,
    BID,
    EMPTY,
    INITIAL_CAPACITY,
    K_LEVEL,
    L_COUNT,
    L_DEPTH,
    L_HEAD,
    L_PRICE,
    L_SIDE,
    M_COUNT,
    M_HASH_SHIFT,
    M_NEXT_ANON,
    M_TOP_ORDER,
    O_AGENT,
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
    level_queue,
    move_to_head,
    new_book,
    order_slot,
    remove,
    rest,
    side_levels,
    snapshot,
)
from mars_ray.schema import reasons
from mars_ray.schema.events import EVENT_RECORD, NO_ID, NO_PRICE, ROW_FIELDS, EventType, OrderType
from mars_ray.schema.phases import Phase

_SUBMIT_EV, _CANCEL_EV = int(EventType.SUBMIT), int(EventType.CANCEL)
_MODIFY_EV, _TRADE = int(EventType.MODIFY), int(EventType.TRADE)
_REJECT, _AUCTION = int(EventType.REJECT), int(EventType.AUCTION)
_HALT_EV, _RESUME_EV = int(EventType.HALT), int(EventType.RESUME)
_HIDDEN_EV = int(EventType.HIDDEN_TRADE)
_LIMIT, _MARKET, _IOC = int(OrderType.LIMIT), int(OrderType.MARKET), int(OrderType.IOC)
_CANCEL_ORDER = int(OrderType.CANCEL)
_CLOSED, _CALL, _CONTINUOUS, _HALTED = (int(p) for p in Phase)

_R_NONE = reasons.NO_REASON
_R_DUPLICATE = reasons.code("duplicate_order_id")
_R_HALTED = reasons.code("halted")
_R_CLOSED = reasons.code("market_closed")
_R_IOC_CALL = reasons.code("ioc_during_call")
_R_UNKNOWN = reasons.code("unknown_order")
_R_MARKET_UNFILLED = reasons.code("market_unfilled")
_R_IOC_UNFILLED = reasons.code("ioc_unfilled")
_R_AUCTION_UNFILLED = reasons.code("auction_market_unfilled")
_R_QUOTE = reasons.code("quote")
_R_TRADE = reasons.code("trade")

# rows applied per compiled call: the event room reserved for a call is 4 per row, so huge
# batches go in chunks rather than reserving room for 4 events per order at once
ROWS_PER_CALL = 1 << 16
_NO_REASONS = np.full(1024, _R_NONE, np.int64)  # accepted rows' reasons (never written)

# state[field]; a compiled loop that must stop to let its caller drain events reads S_EVENTS
S_EVENTS, _S_PHASE, _S_LAST = 0, 1, 2  # last trade price: -1 while there was none
_EVENT_FIELDS = len(ROW_FIELDS)  # the reason (a code) last


# ---------------------------------------------------------------------- events
@njit(cache=True, inline="always")
def _emit(ev, state, t, typ, oid, side, price, size, agent, contra_oid, contra_agent, reason):
    i = state[S_EVENTS]
    if i >= ev.shape[0]:  # the caller's room is a proven bound; never write past it
        raise IndexError("compiled book: event rows full")
    ev[i, 0], ev[i, 1], ev[i, 2], ev[i, 3], ev[i, 4] = t, typ, oid, side, price
    ev[i, 5], ev[i, 6], ev[i, 7], ev[i, 8], ev[i, 9] = size, agent, contra_oid, contra_agent, reason
    state[S_EVENTS] = i + 1


@njit(cache=True, inline="always")
def _shown(price: int) -> int:
    """Price as events show it: a market buy's sentinel becomes NO_PRICE."""
    return NO_PRICE if price == MARKET_BUY_PRICE else price


@njit(cache=True, inline="always")
def side_index(side: int) -> int:
    """+1 (buy) / -1 (sell) as the arrays' side index; anything else is an error."""
    if side == 1:
        return BID
    if side == -1:
        return ASK
    raise ValueError("side must be 1 (buy) or -1 (sell)")


# ---------------------------------------------------------------------- orders
@njit(cache=True)
def _match(orders, levels, ladder, table, meta, state, ev, t, oid, side, limit, size, agent):
    """``OrderBook._match``: trade against the best opposite levels while they cross
    ``limit``, head of each queue first; return the size left."""
    s = side_index(side)
    while size != 0:
        level = crossing_level(levels, ladder, meta, s, limit)
        if level == EMPTY:
            break
        best = levels[level, L_PRICE]
        last_order = False
        while size != 0 and not last_order:
            head = levels[level, L_HEAD]
            resting = orders[head, O_SIZE]
            fill = resting if resting <= size else size
            last_order = fill == resting and levels[level, L_COUNT] == 1
            _emit(
                ev, state, t, _TRADE, orders[head, O_ID], -side, best, fill,
                orders[head, O_AGENT], oid, agent, _R_NONE,
            )  # fmt: skip
            execute(orders, levels, ladder, table, meta, head, fill)
            size -= fill
        state[_S_LAST] = best
    return size


@njit(cache=True, inline="always")
def submit_order(
    orders, levels, ladder, table, meta, state, ev, t, typ, oid, side, px, size, agent
):  # fmt: skip
    """``OrderBook.submit`` (the book has a free slot)."""
    if hash_find(table, meta[M_HASH_SHIFT], oid) != EMPTY:
        _emit(ev, state, t, _REJECT, oid, side, px, size, agent, NO_ID, NO_ID, _R_DUPLICATE)
        return
    phase = state[_S_PHASE]
    price = px
    if typ == _MARKET:
        price = MARKET_BUY_PRICE if side == 1 else MARKET_SELL_PRICE
    if phase != _CONTINUOUS:
        if phase != _CALL:
            why = _R_HALTED if phase == _HALTED else _R_CLOSED
            _emit(ev, state, t, _REJECT, oid, side, px, size, agent, NO_ID, NO_ID, why)
            return
        if typ == _IOC:
            _emit(ev, state, t, _REJECT, oid, side, px, size, agent, NO_ID, NO_ID, _R_IOC_CALL)
            return
        s = side_index(side)
        _emit(
            ev, state, t, _SUBMIT_EV, oid, side, _shown(price), size, agent, NO_ID, NO_ID, _R_NONE
        )
        rest(orders, levels, ladder, table, meta, s, price, oid, size, agent)
        return
    s = side_index(side)
    shown = _shown(price)
    _emit(ev, state, t, _SUBMIT_EV, oid, side, shown, size, agent, NO_ID, NO_ID, _R_NONE)
    if crosses(levels, ladder, meta, s, price):
        size = _match(
            orders, levels, ladder, table, meta, state, ev, t, oid, side, price, size, agent
        )
        if size == 0:
            return
    if typ == _LIMIT:  # (a size of 0 that crossed nothing rests, as in OrderBook)
        rest(orders, levels, ladder, table, meta, s, price, oid, size, agent)
    elif size != 0:  # what a market or IOC order could not trade is cancelled
        why = _R_MARKET_UNFILLED if typ == _MARKET else _R_IOC_UNFILLED
        _emit(ev, state, t, _CANCEL_EV, oid, side, shown, size, agent, NO_ID, NO_ID, why)


@njit(cache=True)
def _cancel(orders, levels, ladder, table, meta, state, ev, t, oid, size, agent):
    """``OrderBook.cancel``: ``0 < size < remaining`` cuts the order in place, else it goes."""
    slot = order_slot(table, meta, oid)
    if slot == EMPTY:
        _emit(ev, state, t, _REJECT, oid, 0, NO_PRICE, size, agent, NO_ID, NO_ID, _R_UNKNOWN)
        return
    cancel_resting(orders, levels, ladder, table, meta, state, ev, t, slot, size)


@njit(cache=True, inline="always")
def cancel_resting(orders, levels, ladder, table, meta, state, ev, t, slot, size):
    """``OrderBook.cancel`` of the order in ``slot``, with its CANCEL event."""
    level = orders[slot, O_LEVEL]
    side = 1 if levels[level, L_SIDE] == BID else -1
    price = _shown(levels[level, L_PRICE])
    oid, owner = orders[slot, O_ID], orders[slot, O_AGENT]
    gone = cancel(orders, levels, ladder, table, meta, slot, size)
    _emit(ev, state, t, _CANCEL_EV, oid, side, price, gone, owner, NO_ID, NO_ID, _R_NONE)


@njit(cache=True)
def _modify(orders, levels, ladder, table, meta, state, ev, t, oid, px, size, agent):
    """``OrderBook.modify`` with price ``px`` (<= 0: keep the price): size down at the same
    price keeps the order's place, anything else sends it to the back (and may trade)."""
    slot = order_slot(table, meta, oid)
    if slot == EMPTY:
        price = px if px > 0 else NO_PRICE
        _emit(ev, state, t, _REJECT, oid, 0, price, size, agent, NO_ID, NO_ID, _R_UNKNOWN)
        return
    level = orders[slot, O_LEVEL]
    s = levels[level, L_SIDE]
    side = 1 if s == BID else -1
    old_price = levels[level, L_PRICE]
    phase = state[_S_PHASE]
    if phase == _HALTED or phase == _CLOSED:
        why = _R_HALTED if phase == _HALTED else _R_CLOSED
        _emit(ev, state, t, _REJECT, oid, side, _shown(old_price), size, agent, NO_ID, NO_ID, why)
        return
    owner = orders[slot, O_AGENT]
    new_price = px if px > 0 else old_price
    resting = orders[slot, O_SIZE]
    _emit(
        ev, state, t, _MODIFY_EV, oid, side, _shown(new_price), size, owner, NO_ID, NO_ID, _R_NONE
    )
    if new_price == old_price and size <= resting:
        orders[slot, O_SIZE] = size
        levels[level, L_DEPTH] -= resting - size
        return
    remove(orders, levels, ladder, table, meta, slot)
    if phase == _CONTINUOUS:
        size = _match(
            orders, levels, ladder, table, meta, state, ev, t, oid, side, new_price, size, owner
        )
    if size != 0:
        rest(orders, levels, ladder, table, meta, s, new_price, oid, size, owner)


@njit(cache=True)
def _apply(
    orders, levels, ladder, table, meta, state, ev, t, typ, oid, side, px, size, agent, why,
    start, stop,
):  # fmt: skip
    """Apply rows ``start:stop`` in order, as ``OrderBook.apply`` does; a row with a reason
    code ``why >= 0`` was refused by the exchange and is rejected with that reason.

    Returns the first row not applied: ``stop``, or a submission that found the book full.
    """
    for i in range(start, stop):
        if why[i] >= 0:
            _emit(
                ev,
                state,
                t[i],
                _REJECT,
                oid[i],
                side[i],
                px[i],
                size[i],
                agent[i],
                NO_ID,
                NO_ID,
                why[i],
            )
        elif typ[i] == _CANCEL_ORDER:
            _cancel(orders, levels, ladder, table, meta, state, ev, t[i], oid[i], size[i], agent[i])
        elif typ[i] <= _IOC:
            if is_full(orders, meta):
                return i
            submit_order(
                orders, levels, ladder, table, meta, state, ev, t[i], typ[i], oid[i], side[i],
                px[i], size[i], agent[i],
            )  # fmt: skip
        else:
            _modify(
                orders,
                levels,
                ladder,
                table,
                meta,
                state,
                ev,
                t[i],
                oid[i],
                px[i],
                size[i],
                agent[i],
            )
    return stop


# ---------------------------------------------------------------------- exchange data
@njit(cache=True, inline="always")
def execute_resting(orders, levels, ladder, table, meta, state, ev, t, slot, size, contra_agent):
    """``OrderBook.execute_resting`` of the order in ``slot``: fill ``min(size, remaining)``
    against an aggressor the data does not show; return the fill."""
    level = orders[slot, O_LEVEL]
    side = 1 if levels[level, L_SIDE] == BID else -1
    price = levels[level, L_PRICE]
    oid, owner = orders[slot, O_ID], orders[slot, O_AGENT]
    fill = execute(orders, levels, ladder, table, meta, slot, size)
    state[_S_LAST] = price
    _emit(ev, state, t, _TRADE, oid, side, price, fill, owner, NO_ID, contra_agent, _R_NONE)
    return fill


@njit(cache=True)
def record_hidden_trade(state, ev, t, oid, side, price, size):
    """``OrderBook.record_hidden_trade``: recorded, the visible book unchanged."""
    state[_S_LAST] = price
    _emit(ev, state, t, _HIDDEN_EV, oid, side, price, size, NO_ID, NO_ID, NO_ID, _R_NONE)


@njit(cache=True)
def record_cross(state, ev, t, oid, side, price, size):
    """``OrderBook.record_cross``: an auction the data reports (its fills come separately)."""
    state[_S_LAST] = price
    _emit(ev, state, t, _AUCTION, oid, side, price, size, NO_ID, NO_ID, NO_ID, _R_NONE)


@njit(cache=True)
def take_liquidity(orders, levels, ladder, table, meta, state, ev, t, s, price, size, fills):
    """``size`` left the level at (side index ``s``, ``price``) though no order the book
    knows can supply it: anonymous orders (negative ids) give first, then known ones,
    each head first, ``min(resting, left)`` from each, as executions (``fills``) or
    cancels, each with its event."""
    level = find_level(ladder, meta, s, price)
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
                    execute_resting(
                        orders, levels, ladder, table, meta, state, ev, t, slot, part, NO_ID
                    )
                else:
                    cancel_resting(orders, levels, ladder, table, meta, state, ev, t, slot, part)
                size -= part
            else:
                known_left = True
            slot = nxt


@njit(cache=True)
def rest_anonymous(orders, levels, ladder, table, meta, state, ev, t, side, price, size, front):
    """Rest liquidity no order accounts for under the next anonymous id (-1, -2, ...), as a
    limit order in a call (it never trades on arrival); at the head of its queue if
    ``front`` (it predates every order there). The book has a free slot."""
    oid = meta[M_NEXT_ANON]
    meta[M_NEXT_ANON] = oid - 1
    phase = state[_S_PHASE]
    state[_S_PHASE] = _CALL
    submit_order(
        orders, levels, ladder, table, meta, state, ev, t, _LIMIT, oid, side, price, size, NO_ID
    )
    state[_S_PHASE] = phase
    if front:
        slot = order_slot(table, meta, oid)
        if slot != EMPTY:  # (not when the id was taken: then the submission was rejected)
            move_to_head(orders, levels, slot)


@njit(cache=True)
def record_halt(state, ev, t):
    """A halt the data shows: the HALT event, and a call phase, so the book keeps accepting
    (never matching) what the data says was entered during it."""
    _emit(ev, state, t, _HALT_EV, NO_ID, 0, NO_PRICE, 0, NO_ID, NO_ID, NO_ID, _R_NONE)
    state[_S_PHASE] = _CALL


@njit(cache=True)
def record_resume(state, ev, t, trading, phase):
    """A resume the data shows (of trading, else of quoting) without an auction of our own:
    the data's own messages say what crossed. The book goes on in ``phase``."""
    why = _R_TRADE if trading else _R_QUOTE
    _emit(ev, state, t, _RESUME_EV, NO_ID, 0, NO_PRICE, 0, NO_ID, NO_ID, NO_ID, why)
    state[_S_PHASE] = phase


# ---------------------------------------------------------------------- auctions
@njit(cache=True)
def _next_in_line(orders, levels, ladder, s, pos, slot):
    """The order after ``slot`` in price-time priority on side ``s``: the next one in its
    queue, else the head of the next level (``pos`` is the slot's ladder position)."""
    slot = orders[slot, O_NEXT]
    if slot == EMPTY:
        pos -= 1
        slot = levels[ladder[s, pos, K_LEVEL], L_HEAD]
    return pos, slot


@njit(cache=True)
def _uncross(orders, levels, ladder, table, meta, state, ev, t, price, volume):
    """``OrderBook._execute_uncross`` (when volume > 0) and the cancel of the market orders
    left: buys best price first, sells likewise, FIFO per level, all at ``price``."""
    if volume > 0:
        _emit(ev, state, t, _AUCTION, NO_ID, 0, price, volume, NO_ID, NO_ID, NO_ID, _R_NONE)
        filled = np.zeros(orders.shape[0], np.int64)
        touched = np.empty(2 * orders.shape[0], np.int64)
        n_touched = 0
        b_pos, s_pos = meta[M_COUNT + BID] - 1, meta[M_COUNT + ASK] - 1
        b = levels[ladder[BID, b_pos, K_LEVEL], L_HEAD]
        a = levels[ladder[ASK, s_pos, K_LEVEL], L_HEAD]
        b_size, a_size = orders[b, O_SIZE], orders[a, O_SIZE]
        left = volume
        while left:
            fill = min(b_size, a_size, left)
            _emit(
                ev, state, t, _TRADE, orders[a, O_ID], -1, price, fill, orders[a, O_AGENT],
                orders[b, O_ID], orders[b, O_AGENT], _R_NONE,
            )  # fmt: skip
            for slot in (b, a):
                if filled[slot] == 0:
                    touched[n_touched] = slot
                    n_touched += 1
                filled[slot] += fill
            left -= fill
            b_size -= fill
            a_size -= fill
            if left == 0:
                break
            if b_size == 0:
                b_pos, b = _next_in_line(orders, levels, ladder, BID, b_pos, b)
                b_size = orders[b, O_SIZE]
            if a_size == 0:
                s_pos, a = _next_in_line(orders, levels, ladder, ASK, s_pos, a)
                a_size = orders[a, O_SIZE]
        for k in range(n_touched):
            slot = touched[k]
            execute(orders, levels, ladder, table, meta, slot, filled[slot])
        state[_S_LAST] = price
    # market orders that did not trade in the auction do not carry into the next phase
    for s, sentinel in ((BID, MARKET_BUY_PRICE), (ASK, MARKET_SELL_PRICE)):
        while True:
            level = find_level(ladder, meta, s, sentinel)
            if level == EMPTY:
                break
            slot = levels[level, L_HEAD]
            oid, resting, owner = orders[slot, O_ID], orders[slot, O_SIZE], orders[slot, O_AGENT]
            remove(orders, levels, ladder, table, meta, slot)
            side = 1 if s == BID else -1
            _emit(
                ev, state, t, _CANCEL_EV, oid, side, NO_PRICE, resting, owner, NO_ID, NO_ID,
                _R_AUCTION_UNFILLED,
            )  # fmt: skip


# ---------------------------------------------------------------------- the book
def _int64_column(values: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(values, dtype=np.int64)


class CompiledOrderBook(SessionPhases):
    """A single book with ``OrderBook``'s interface (see the module doc).

    ``arrays`` (the five ``book_arrays``), ``state`` and ``event_rows`` are public for
    compiled loops that drive the book through this module's njit functions (a LOBSTER
    replay): such a loop calls ``reserve_events`` for what it may write and ``grow``
    when it finds the book full.
    """

    def __init__(self, phase: Phase = Phase.CONTINUOUS, reference_price: int | None = None):
        self.arrays = new_book(INITIAL_CAPACITY)
        self.state = np.array([0, int(phase), -1], dtype=np.int64)
        self.event_rows = np.empty((1024, _EVENT_FIELDS), dtype=np.int64)
        self._seq_base = 0
        self.reference_price = reference_price

    # ------------------------------------------------------------------ state
    @property
    def phase(self) -> Phase:
        return Phase(int(self.state[_S_PHASE]))

    @phase.setter
    def phase(self, phase: Phase) -> None:
        self.state[_S_PHASE] = int(phase)

    @property
    def last_trade_price(self) -> int | None:
        last = int(self.state[_S_LAST])
        return None if last < 0 else last

    def __len__(self) -> int:
        _, levels, ladder, _, meta = self.arrays
        return sum(
            int(levels[ladder[s, :n, K_LEVEL], L_COUNT].sum())
            for s, n in ((BID, meta[M_COUNT + BID]), (ASK, meta[M_COUNT + ASK]))
        )

    def __contains__(self, order_id: int) -> bool:
        return self._slot(order_id) != EMPTY

    def _slot(self, order_id: int) -> int:
        return int(order_slot(self.arrays[3], self.arrays[4], order_id))

    def grow(self) -> None:
        """Double the arrays (a compiled loop that found the book full resumes after this)."""
        self.arrays = grown(*self.arrays)

    def _free_slot(self) -> None:
        """Make room for one more resting order."""
        if is_full(self.arrays[0], self.arrays[4]):
            self.grow()

    # ------------------------------------------------------------------ events
    def reserve_events(self, more: int) -> None:
        """Make the event rows hold ``more`` events beyond those recorded."""
        recorded = int(self.state[S_EVENTS])
        if recorded + more > len(self.event_rows):
            rows = max(recorded + more, 2 * len(self.event_rows))
            grown_rows = np.empty((rows, _EVENT_FIELDS), np.int64)
            grown_rows[:recorded] = self.event_rows[:recorded]
            self.event_rows = grown_rows

    def _reserve_per_order(self) -> None:
        """Room for an operation that may write an event per resting order, and two more."""
        self.reserve_events(int(self.arrays[4][M_TOP_ORDER]) + 2)

    def _record(self, t: int, typ: int, reason: str | None = None, **fields: int) -> None:
        """One event from Python (phases, rejects); unnamed fields are NO_ID / 0."""
        self.reserve_events(1)
        _emit(
            self.event_rows, self.state, t, typ, fields.get("oid", NO_ID), fields.get("side", 0),
            fields.get("price", NO_PRICE), fields.get("size", 0), fields.get("agent", NO_ID),
            NO_ID, NO_ID, reasons.code(reason),
        )  # fmt: skip

    @property
    def events_recorded(self) -> int:
        """Events recorded since the last drain."""
        return int(self.state[S_EVENTS])

    def drain_records(self) -> tuple[int, np.ndarray]:
        """The recorded events as ``EVENT_RECORD``s, with the ``seq`` of the first one."""
        n = int(self.state[S_EVENTS])
        records = self.event_rows[:n].copy().view(EVENT_RECORD).reshape(n)
        base = self._seq_base
        self._seq_base += n
        self.state[S_EVENTS] = 0
        return base, records

    def drain_events(self) -> tuple[int, list[tuple]]:
        """The recorded events as ``OrderBook`` gives them: tuples, the reason a string."""
        base, records = self.drain_records()
        return base, [(*row[:-1], reasons.name(row[-1])) for row in records.tolist()]

    def reject(self, t: int, oid: int, side: int, price: int, size: int, agent: int, why: str):
        self._record(t, _REJECT, why, oid=oid, side=side, price=price, size=size, agent=agent)

    # ------------------------------------------------------------------ orders
    def apply_batch(self, columns: list[np.ndarray], rejects: np.ndarray | None = None) -> None:
        """Apply rows (time, order type, id, side, price, size, agent columns) in order;
        ``rejects`` (validation codes, 0 = accepted) marks rows the exchange refused."""
        t, typ, oid, side, px, size, agent = (_int64_column(c) for c in columns)
        n = len(t)
        if not n:
            return
        if rejects is not None:
            why = reasons.FROM_VALIDATION[rejects]
        else:  # read only: a slice of one array of "no reason"
            why = _NO_REASONS[:n] if n <= len(_NO_REASONS) else np.full(n, _R_NONE, np.int64)
        for start in range(0, n, ROWS_PER_CALL):
            stop = min(start + ROWS_PER_CALL, n)
            # A row writes at most 2 events besides its trades. Each trade but an aggressor's
            # last fills a resting order completely: one resting now (no more than the order
            # slots ever used) or one that rested in this chunk (at most one per row).
            self.reserve_events(4 * (stop - start) + int(self.arrays[4][M_TOP_ORDER]))
            i = start
            while True:
                i = _apply(
                    *self.arrays, self.state, self.event_rows,
                    t, typ, oid, side, px, size, agent, why, i, stop,
                )  # fmt: skip
                if i == stop:
                    break
                self.grow()

    def submit(
        self,
        t: int,
        oid: int,
        side: int,
        price: int,
        size: int,
        agent: int = NO_ID,
        order_type: int = _LIMIT,
    ) -> None:
        self._apply_one(t, order_type, oid, side, price, size, agent)

    def cancel(self, t: int, oid: int, size: int = 0, agent: int = NO_ID) -> None:
        self._apply_one(t, _CANCEL_ORDER, oid, 0, 0, size, agent)

    def modify(self, t: int, oid: int, price: int | None, size: int, agent: int = NO_ID) -> None:
        """``OrderBook.modify``; a price of None (or <= 0, which the exchange never passes)
        keeps the order's price."""
        px = 0 if price is None else price
        self._apply_one(t, int(OrderType.MODIFY), oid, 0, px, size, agent)

    def _apply_one(self, *row: int) -> None:
        """One row (the ``apply_batch`` columns' values) as a batch of one."""
        self.apply_batch([np.array([value]) for value in row])

    def move_to_head(self, oid: int) -> None:
        """``OrderBook.move_to_head``: a resting order goes to the head of its queue."""
        slot = self._slot(oid)
        if slot == EMPTY:
            raise KeyError(oid)
        move_to_head(self.arrays[0], self.arrays[1], slot)

    # ------------------------------------------------------------------ exchange data
    def execute_resting(self, t: int, oid: int, size: int, contra_agent: int = NO_ID) -> bool:
        """``OrderBook.execute_resting``: fill ``size`` of a resting order against an
        aggressor the data does not show. Returns False when the order is unknown."""
        slot = self._slot(oid)
        if slot == EMPTY:
            return False
        self.reserve_events(1)
        execute_resting(*self.arrays, self.state, self.event_rows, t, slot, size, contra_agent)
        return True

    def record_hidden_trade(self, t: int, oid: int, side: int, price: int, size: int) -> None:
        """An execution against hidden liquidity: recorded, the visible book unchanged."""
        self.reserve_events(1)
        record_hidden_trade(self.state, self.event_rows, t, oid, side, price, size)

    def record_cross(self, t: int, oid: int, side: int, price: int, size: int) -> None:
        """``OrderBook.record_cross``: an auction the data reports, the book unchanged."""
        self.reserve_events(1)
        record_cross(self.state, self.event_rows, t, oid, side, price, size)

    def take_liquidity(self, t: int, side: int, price: int, size: int, fills: bool) -> None:
        """``size`` left a level though no known order supplied it (see ``take_liquidity``)."""
        self._reserve_per_order()
        take_liquidity(
            *self.arrays, self.state, self.event_rows, t, side_index(side), price, size, fills
        )

    def rest_anonymous(self, t: int, side: int, price: int, size: int, front: bool) -> None:
        """Rest liquidity no order accounts for (see ``rest_anonymous``)."""
        self._free_slot()
        self.reserve_events(1)
        rest_anonymous(*self.arrays, self.state, self.event_rows, t, side, price, size, front)

    def record_halt(self, t: int) -> None:
        """A halt the data shows; the book keeps accepting orders (see ``record_halt``)."""
        self.reserve_events(1)
        record_halt(self.state, self.event_rows, t)

    def record_resume(self, t: int, trading: bool, phase: Phase) -> None:
        """A resume the data shows, without an auction (see ``record_resume``)."""
        self.reserve_events(1)
        record_resume(self.state, self.event_rows, t, trading, int(phase))

    # ------------------------------------------------------------------ phases
    def _mark(self, t: int, event_type: int, reason: str | None) -> None:
        self._record(t, event_type, reason)

    def uncross(self, t: int, next_phase: Phase = Phase.CONTINUOUS) -> UncrossResult:
        """Run the call auction at the volume-maximising price, then enter ``next_phase``."""
        result = self.indicative_uncross()
        # the auction, then trades (each but the last ends a resting order), then cancels
        self.reserve_events(2 * int(self.arrays[4][M_TOP_ORDER]) + 2)
        _uncross(*self.arrays, self.state, self.event_rows, t, result.price, result.volume)
        self._enter(t, next_phase)
        return result

    def indicative_uncross(self) -> UncrossResult:
        """The auction price and volume if the call ended now (books may be crossed)."""
        last = self.last_trade_price
        reference = last if last is not None else self.reference_price
        buys, sells = (self._side(s).tolist() for s in (BID, ASK))
        return find_uncross_price(
            [tuple(b) for b in buys], [tuple(s) for s in sells], reference,
            MARKET_BUY_PRICE, MARKET_SELL_PRICE,
        )  # fmt: skip

    # ------------------------------------------------------------------ queries
    def _side(self, s: int) -> np.ndarray:
        _, levels, ladder, _, meta = self.arrays
        return side_levels(levels, ladder, meta, s)

    def snapshot(self, n: int) -> np.ndarray:
        """Top ``n`` levels as (n, 4) int64: ask px, ask size, bid px, bid size (as OrderBook)."""
        out = np.zeros((1, 4 * n), dtype=np.int64)
        _, levels, ladder, _, meta = self.arrays
        snapshot(levels, ladder, meta, n, out, 0)
        return out.reshape(n, 4)

    def best_bid(self) -> int | None:
        prices = [p for p, _ in self._side(BID).tolist() if p != MARKET_BUY_PRICE]
        return prices[0] if prices else None

    def best_ask(self) -> int | None:
        prices = [p for p, _ in self._side(ASK).tolist() if p != MARKET_SELL_PRICE]
        return prices[0] if prices else None

    def levels(self, side: int) -> list[tuple[int, int]]:
        """All visible (price, size) levels of a side, best first."""
        sentinel = MARKET_BUY_PRICE if side == 1 else MARKET_SELL_PRICE
        rows = self._side(BID if side == 1 else ASK).tolist()
        return [(p, d) for p, d in rows if p != sentinel]

    def queues(self) -> list[tuple[int, int, list[tuple[int, int]]]]:
        """Every level in full, (side, price, [(order id, size), ...] head first), bids then
        asks, best first, after checking the arrays' invariants (AssertionError if one fails)."""
        out: list[tuple[int, int, list[tuple[int, int]]]] = []
        for s, price, oid, size in checked_levels(*self.arrays).tolist():
            side = 1 if s == BID else -1
            if not out or out[-1][:2] != (side, price):
                out.append((side, price, []))
            out[-1][2].append((oid, size))
        return out

    def order(self, order_id: int) -> tuple[int, int, int, int] | None:
        """(side, price, remaining size, agent id) of a resting order, or None."""
        slot = self._slot(order_id)
        if slot == EMPTY:
            return None
        orders, levels = self.arrays[0], self.arrays[1]
        level = int(orders[slot, O_LEVEL])
        side = 1 if levels[level, L_SIDE] == BID else -1
        return (
            side,
            int(levels[level, L_PRICE]),
            int(orders[slot, O_SIZE]),
            int(orders[slot, O_AGENT]),
        )

    def level_queue(self, side: int, price: int) -> list[tuple[int, int]]:
        """(order id, size) at one price level, head first."""
        orders, levels, ladder, _, meta = self.arrays
        s = BID if side == 1 else ASK
        return [tuple(row) for row in level_queue(orders, levels, ladder, meta, s, price).tolist()]

    def depth_at(self, side: int, price: int) -> int:
        _, levels, ladder, _, meta = self.arrays
        level = find_level(ladder, meta, BID if side == 1 else ASK, price)
        return 0 if level == EMPTY else int(levels[level, L_DEPTH])

    def check_invariants(self) -> None:
        """Raise AssertionError if the arrays disagree with each other or the book is crossed."""
        self.queues()
        if self.phase == Phase.CONTINUOUS:
            bid, ask = self.best_bid(), self.best_ask()
            assert bid is None or ask is None or bid < ask, f"crossed book {bid} >= {ask}"

    def order_ids(self) -> list[int]:
        """Ids of the resting orders (in no particular order)."""
        orders, _, _, table, _ = self.arrays
        return orders[table[table[:, T_SLOT] != EMPTY, T_SLOT], O_ID].tolist()


def warm_up() -> None:
    """Compile (or load from numba's on-disk cache) everything a simulation calls, and the
    operations a replay of exchange data calls from Python.

    The set-up script runs this once, so that the first simulation after an install
    does not spend its first seconds compiling, once per shard. (The replay's message
    loop lives in the data layer, which warms itself: ``lobster_replay.warm_up``.)
    """
    book = CompiledOrderBook(Phase.CALL, reference_price=100)
    columns = [  # time, type, id, side, price, size, agent: a crossed call book
        np.arange(1, 5),
        np.array([_LIMIT, _LIMIT, _MARKET, _LIMIT]),
        np.arange(1, 5),
        np.array([1, -1, 1, -1]),
        np.array([101, 99, 0, 102]),
        np.array([5, 3, 2, 4]),
        np.arange(4),
    ]
    book.apply_batch(columns)
    book.uncross(5)
    columns[0] = np.arange(6, 10)
    columns[1] = np.array([_IOC, _CANCEL_ORDER, int(OrderType.MODIFY), _LIMIT])
    columns[2] = np.array([5, 4, 1, 6])
    book.apply_batch(columns, np.array([0, 0, 0, 3], dtype=np.int8))
    book.snapshot(5)
    book.queues()
    # what a replay does from Python
    book.rest_anonymous(11, 1, 98, 5, front=True)
    book.rest_anonymous(11, -1, 103, 5, front=False)
    book.move_to_head(4)
    book.execute_resting(12, 4, 1)
    book.take_liquidity(13, 1, 98, 2, fills=True)
    book.take_liquidity(13, -1, 103, 2, fills=False)
    book.record_hidden_trade(14, 0, 1, 100, 1)
    book.record_cross(15, 0, 1, 100, 1)
    book.record_halt(16)
    book.record_resume(17, True, Phase.CALL)
    book.depth_at(1, 98)
    book.level_queue(1, 98)
    book.levels(1)
    book.drain_records()
