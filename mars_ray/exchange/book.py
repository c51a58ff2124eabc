"""One instrument's limit order book: price-time priority on an integer tick grid.

Each side keeps its prices in a ``sortedcontainers.SortedList`` (the best bid
is the last element, the best ask the first) and one ``OrderedDict`` queue per
price, so the head of a queue, a cancel in the middle and an append at the tail
are all O(1). The touch of each side (``_bid_top``/``_ask_top``: the last bid and
the first ask of the lists, market sentinels included) is also kept as a plain
attribute, updated when a level is created or removed, because every incoming
order reads the opposite one and indexing a ``SortedList`` is slow Python.
Every state change appends an event tuple (``schema.ROW_FIELDS`` minus ``seq``)
to ``self.events``; the caller drains them with ``drain_events``.

Phases follow a real exchange's day: ``CLOSED`` rejects orders; ``CALL``
(pre-open or closing call, or after a halt's quote resume) accepts orders
without matching; ``uncross`` runs the call auction; ``CONTINUOUS`` matches on
arrival; ``HALTED`` rejects new orders and modifications but lets cancels
through.

``submit`` and ``cancel`` bind what they touch to locals and pick the per-side
structures once per call; ``apply`` takes a batch of orders for the book and hands
each row to them. The simulation's fast path is ``CompiledOrderBook``, held to this
book event for event; this one stays the readable definition.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from itertools import groupby, islice

import numpy as np
from sortedcontainers import SortedList

from mars_ray.exchange.auction import UncrossResult, find_uncross_price
from mars_ray.schema.events import NO_ID, NO_PRICE, EventType, OrderType, Side, rows_to_records
from mars_ray.schema.phases import Phase
from mars_ray.schema.reasons import VALIDATION

# Sentinel prices of market orders waiting in a call auction: a market buy is
# willing to pay anything, a market sell to take anything. Never shown in snapshots.
MARKET_BUY_PRICE = 1 << 62
MARKET_SELL_PRICE = 0

_SUBMIT = int(EventType.SUBMIT)
_CANCEL = int(EventType.CANCEL)
_MODIFY = int(EventType.MODIFY)
_TRADE = int(EventType.TRADE)
_REJECT = int(EventType.REJECT)
_AUCTION = int(EventType.AUCTION)
_PHASE = int(EventType.PHASE)
_HALT = int(EventType.HALT)
_RESUME = int(EventType.RESUME)
_HIDDEN = int(EventType.HIDDEN_TRADE)
_BUY = int(Side.BUY)
_SELL = int(Side.SELL)
_LIMIT = int(OrderType.LIMIT)
_MARKET = int(OrderType.MARKET)
_IOC = int(OrderType.IOC)
_CANCEL_ORDER = int(OrderType.CANCEL)  # a request type (_CANCEL is the event type)


# Module-level copies: reading an enum member off its class is slow in the hot path.
_CLOSED = Phase.CLOSED
_CALL = Phase.CALL
_CONTINUOUS = Phase.CONTINUOUS
_HALTED = Phase.HALTED


class SessionPhases:
    """The phase changes of a book's day, shared by ``OrderBook`` and ``CompiledOrderBook``:
    a book supplies ``phase``, ``_mark`` (one event without an order) and ``uncross``."""

    __slots__ = ()
    phase: Phase

    def _mark(self, t: int, event_type: int, reason: str | None) -> None:
        raise NotImplementedError

    def uncross(self, t: int, next_phase: Phase = Phase.CONTINUOUS) -> UncrossResult:
        raise NotImplementedError

    def open_call(self, t: int) -> None:
        """Start a call phase (pre-open or closing auction): orders rest, nothing matches."""
        self.phase = Phase.CALL
        self._mark(t, _PHASE, "call")

    def _enter(self, t: int, next_phase: Phase) -> None:
        """The end of an auction: the next phase, named in a PHASE event."""
        self.phase = next_phase
        self._mark(t, _PHASE, next_phase.name.lower())

    def close(self, t: int) -> None:
        self.phase = Phase.CLOSED
        self._mark(t, _PHASE, "closed")

    def halt(self, t: int) -> None:
        self.phase = Phase.HALTED
        self._mark(t, _HALT, None)

    def resume_quotes(self, t: int) -> None:
        """After a halt: orders are accepted again but trading waits for the re-opening auction."""
        self.phase = Phase.CALL
        self._mark(t, _RESUME, "quote")

    def resume_trading(self, t: int) -> UncrossResult:
        """End a halt: re-open with an auction on whatever was quoted meanwhile."""
        self._mark(t, _RESUME, "trade")
        return self.uncross(t, Phase.CONTINUOUS)


class OrderBook(SessionPhases):
    """A single book. Not thread-safe; one book belongs to one actor.

    Per side: ``_bids``/``_asks`` (ascending prices), ``_bid_levels``/``_ask_levels``
    (price -> queue of order id -> remaining size) and ``_bid_depth``/``_ask_depth``
    (price -> total size), and ``_bid_top``/``_ask_top`` (the highest bid and the
    lowest ask price in the lists, sentinels included; None for an empty side).
    ``_prices``, ``_levels`` and ``_depth`` index the same objects by side value, for
    code that is generic over the side.
    """

    __slots__ = (
        "_ask_depth",
        "_ask_levels",
        "_ask_top",
        "_asks",
        "_bid_depth",
        "_bid_levels",
        "_bid_top",
        "_bids",
        "_depth",
        "_levels",
        "_orders",
        "_prices",
        "_seq_base",
        "emit",
        "events",
        "last_trade_price",
        "phase",
        "reference_price",
    )

    def __init__(self, phase: Phase = Phase.CONTINUOUS, reference_price: int | None = None):
        self.phase = phase
        # order id -> (side, price, agent_id); the remaining size lives in the level queue.
        # Only ints: the GC stops tracking such tuples, so resting orders cost it nothing.
        self._orders: dict[int, tuple[int, int, int]] = {}
        self._bids: SortedList = SortedList()
        self._asks: SortedList = SortedList()
        self._bid_levels: dict[int, OrderedDict[int, int]] = {}
        self._ask_levels: dict[int, OrderedDict[int, int]] = {}
        self._bid_depth: dict[int, int] = {}
        self._ask_depth: dict[int, int] = {}
        self._bid_top: int | None = None  # self._bids[-1] while there are bids
        self._ask_top: int | None = None  # self._asks[0] while there are asks
        self._prices: dict[int, list[int]] = {_BUY: self._bids, _SELL: self._asks}
        self._levels = {_BUY: self._bid_levels, _SELL: self._ask_levels}
        self._depth = {_BUY: self._bid_depth, _SELL: self._ask_depth}
        self.events: list[tuple] = []
        self.emit = self.events.append
        self._seq_base = 0
        self.last_trade_price: int | None = None
        self.reference_price = reference_price

    # ------------------------------------------------------------------ events
    def drain_events(self) -> tuple[int, list[tuple]]:
        """Hand over the recorded events with the ``seq`` of the first one."""
        events, base = self.events, self._seq_base
        self._seq_base += len(events)
        self.events = []
        self.emit = self.events.append
        return base, events

    def drain_records(self) -> tuple[int, np.ndarray]:
        """``drain_events`` as an ``EVENT_RECORD`` array (what ``CompiledOrderBook`` gives)."""
        base, rows = self.drain_events()
        return base, rows_to_records(rows)

    def reject(self, t: int, oid: int, side: int, price: int, size: int, agent: int, why: str):
        self.emit((t, _REJECT, oid, side, price, size, agent, NO_ID, NO_ID, why))

    # ------------------------------------------------------------------ queries
    def best_bid(self) -> int | None:
        top = self._bid_top
        if top != MARKET_BUY_PRICE:  # the touch, or None: no bids
            return top
        for p in reversed(self._bids):
            if p != MARKET_BUY_PRICE:
                return p
        return None

    def best_ask(self) -> int | None:
        top = self._ask_top
        if top != MARKET_SELL_PRICE:
            return top
        for p in self._asks:
            if p != MARKET_SELL_PRICE:
                return p
        return None

    def __contains__(self, order_id: int) -> bool:
        return order_id in self._orders

    def __len__(self) -> int:
        return len(self._orders)

    def order_ids(self) -> list[int]:
        """Ids of the resting orders (in no particular order)."""
        return list(self._orders)

    def order(self, order_id: int) -> tuple[int, int, int, int] | None:
        """(side, price, remaining size, agent id) of a resting order, or None."""
        entry = self._orders.get(order_id)
        if entry is None:
            return None
        side, price, agent = entry
        return side, price, self._levels[side][price][order_id], agent

    def level_queue(self, side: int, price: int) -> list[tuple[int, int]]:
        """(order id, size) at one price level, head first."""
        queue = self._levels[side].get(price)
        return list(queue.items()) if queue else []

    def depth_at(self, side: int, price: int) -> int:
        return self._depth[side].get(price, 0)

    def levels(self, side: int) -> list[tuple[int, int]]:
        """All visible (price, size) levels of a side, best first."""
        prices = self._prices[side]
        depth = self._depth[side]
        ordered = reversed(prices) if side == _BUY else iter(prices)
        sentinel = MARKET_BUY_PRICE if side == _BUY else MARKET_SELL_PRICE
        return [(p, depth[p]) for p in ordered if p != sentinel]

    def snapshot(self, n: int) -> np.ndarray:
        """Top ``n`` levels as an int64 array of shape (n, 4): ask px, ask size, bid px, bid size.

        The column order is LOBSTER's; an empty level has price 0 and size 0.
        """
        # n + 1 candidates per side: a market sentinel may take one of the slots (a
        # SortedList iterates in C; slicing it is slow Python)
        asks = [p for p in islice(self._asks, n + 1) if p != MARKET_SELL_PRICE][:n]
        top_bids = [p for p in islice(reversed(self._bids), n + 1) if p != MARKET_BUY_PRICE][:n]
        flat = [0] * (4 * n)
        if asks:
            k = 4 * len(asks)
            ask_depth = self._ask_depth
            flat[0:k:4] = asks
            flat[1:k:4] = [ask_depth[p] for p in asks]
        if top_bids:
            k = 4 * len(top_bids)
            bid_depth = self._bid_depth
            flat[2:k:4] = top_bids
            flat[3:k:4] = [bid_depth[p] for p in top_bids]
        return np.array(flat, dtype=np.int64).reshape(n, 4)

    # ------------------------------------------------------------------ orders
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
        """Accept (or reject) a new order; in continuous trading it matches at once.

        ``price`` is ignored for market orders. Validation of the values
        themselves (size > 0, price on the grid) is the exchange's job; the book
        rejects what only it can know: duplicate ids and the phase.
        """
        orders = self._orders
        if oid in orders:
            self.reject(t, oid, side, price, size, agent, "duplicate_order_id")
            return
        phase = self.phase
        if phase != _CONTINUOUS:
            self._submit_not_continuous(t, oid, side, price, size, agent, order_type, phase)
            return
        if order_type != _LIMIT:
            self._submit_marketable(t, oid, side, price, size, agent, order_type)
            return
        shown = NO_PRICE if price == MARKET_BUY_PRICE else price
        self.emit((t, _SUBMIT, oid, side, shown, size, agent, NO_ID, NO_ID, None))
        # Most limit orders do not cross: test the touch here before paying for _match.
        if side == _BUY:
            top = self._ask_top
            crosses = top is not None and top <= price
        elif side == _SELL:
            top = self._bid_top
            crosses = top is not None and top >= price
        else:
            raise _bad_side(side)
        if crosses:
            size = self._match(t, oid, side, price, size, agent)
            if not size:
                return
        self._rest(oid, side, price, size, agent)

    def apply_batch(self, columns: Sequence[np.ndarray], rejects: np.ndarray | None = None) -> None:
        """``apply`` given columns (time, order type, id, side, price, size, agent), where
        ``rejects`` (the exchange's validation codes, 0 = accepted) marks refused rows."""
        rows = zip(*[c.tolist() for c in columns], strict=True)
        if rejects is None:
            self.apply(rows)
            return
        marked = zip(rows, rejects.tolist(), strict=True)
        for accepted, run in groupby(marked, _is_accepted):
            if accepted:
                self.apply(row for row, _ in run)
            else:
                for (t, _, oid, side, px, sz, agent), code in run:
                    self.reject(t, oid, side, px, sz, agent, VALIDATION[code])

    def apply(self, rows: Iterable[tuple[int, int, int, int, int, int, int]]) -> None:
        """Apply validated orders in order: each row is ``submit``, ``cancel`` or ``modify``.

        A row is (time, ``OrderType`` code, order id, side, price in ticks, whole
        size, agent id); a modify's price of 0 keeps the order's price.
        """
        submit, cancel, modify = self.submit, self.cancel, self.modify
        for t, ot, oid, side, px, sz, agent in rows:
            if ot == _CANCEL_ORDER:
                cancel(t, oid, sz, agent)
            elif ot <= _IOC:
                submit(t, oid, side, px, sz, agent, ot)
            else:
                modify(t, oid, px if px > 0 else None, sz, agent)

    def _submit_marketable(
        self, t: int, oid: int, side: int, price: int, size: int, agent: int, order_type: int
    ) -> None:
        """``submit`` of a market or IOC order in continuous trading: what does not trade
        is cancelled."""
        if order_type == _MARKET:
            price = MARKET_BUY_PRICE if side == _BUY else MARKET_SELL_PRICE
        shown = NO_PRICE if price == MARKET_BUY_PRICE else price
        self.emit((t, _SUBMIT, oid, side, shown, size, agent, NO_ID, NO_ID, None))
        if side != _BUY and side != _SELL:
            raise _bad_side(side)
        if side == _BUY:
            top = self._ask_top
            crosses = top is not None and top <= price
        else:
            top = self._bid_top
            crosses = top is not None and top >= price
        if crosses:
            size = self._match(t, oid, side, price, size, agent)
        if size:
            why = "market_unfilled" if order_type == _MARKET else "ioc_unfilled"
            self.emit((t, _CANCEL, oid, side, shown, size, agent, NO_ID, NO_ID, why))

    def _submit_not_continuous(
        self,
        t: int,
        oid: int,
        side: int,
        price: int,
        size: int,
        agent: int,
        order_type: int,
        phase: Phase,
    ) -> None:
        """``submit`` outside continuous trading: rest in a call, reject otherwise."""
        if phase != _CALL:
            why = "halted" if phase == _HALTED else "market_closed"
            self.reject(t, oid, side, price, size, agent, why)
            return
        if order_type == _MARKET:
            price = MARKET_BUY_PRICE if side == _BUY else MARKET_SELL_PRICE
        if order_type == _IOC:
            self.reject(t, oid, side, price, size, agent, "ioc_during_call")
            return
        shown = NO_PRICE if price == MARKET_BUY_PRICE else price
        self.emit((t, _SUBMIT, oid, side, shown, size, agent, NO_ID, NO_ID, None))
        self._rest(oid, side, price, size, agent)

    def cancel(self, t: int, oid: int, size: int = 0, agent: int = NO_ID) -> None:
        """Cancel ``size`` shares of a resting order (0 or at least its size: all of it)."""
        orders = self._orders
        entry = orders.pop(oid, None)
        if entry is None:
            self.reject(t, oid, Side.NONE, NO_PRICE, size, agent, "unknown_order")
            return
        side, price, owner = entry
        if side == _BUY:
            levels, depth = self._bid_levels, self._bid_depth
        else:
            levels, depth = self._ask_levels, self._ask_depth
        queue = levels[price]
        shown = NO_PRICE if price == MARKET_BUY_PRICE else price
        if 0 < size < queue[oid]:  # partial: the order keeps its place
            orders[oid] = entry
            queue[oid] -= size
            depth[price] -= size
            self.emit((t, _CANCEL, oid, side, shown, size, owner, NO_ID, NO_ID, None))
            return
        resting = queue.pop(oid)
        if queue:
            depth[price] -= resting
        else:  # the level is gone (as _drop_level, inlined)
            del levels[price]
            del depth[price]
            if side == _BUY:
                prices = self._bids
                if price == self._bid_top:  # the touch empties most often
                    prices.pop()
                    self._bid_top = prices[-1] if prices else None
                else:
                    prices.remove(price)
            else:
                prices = self._asks
                if price == self._ask_top:
                    del prices[0]
                    self._ask_top = prices[0] if prices else None
                else:
                    prices.remove(price)
        self.emit((t, _CANCEL, oid, side, shown, resting, owner, NO_ID, NO_ID, None))

    def modify(self, t: int, oid: int, price: int | None, size: int, agent: int = NO_ID) -> None:
        """Change price and/or size. Size down at the same price keeps queue priority;
        a price change or a size increase sends the order to the back (and, in
        continuous trading, a new price may trade at once)."""
        entry = self._orders.get(oid)
        if entry is None:
            self.reject(t, oid, Side.NONE, price or NO_PRICE, size, agent, "unknown_order")
            return
        side, old_price, owner = entry
        queue = self._levels[side][old_price]
        if self.phase == _HALTED or self.phase == _CLOSED:
            why = "halted" if self.phase == _HALTED else "market_closed"
            self.reject(t, oid, side, _shown(old_price), size, agent, why)
            return
        new_price = old_price if price is None else price
        resting = queue[oid]
        self.emit((t, _MODIFY, oid, side, _shown(new_price), size, owner, NO_ID, NO_ID, None))
        if new_price == old_price and size <= resting:
            queue[oid] = size
            self._depth[side][old_price] -= resting - size
            return
        self._remove(oid, side, old_price, queue, resting)
        remaining = size
        if self.phase == _CONTINUOUS:
            remaining = self._match(t, oid, side, new_price, size, owner)
        if remaining:
            self._rest(oid, side, new_price, remaining, owner)

    def execute_resting(self, t: int, oid: int, size: int, contra_agent: int = NO_ID) -> bool:
        """Fill ``size`` of a resting order against an aggressor the data does not show.

        This is how replayed exchange data (LOBSTER type 4) reaches the book.
        Returns False when the order is unknown.
        """
        entry = self._orders.get(oid)
        if entry is None:
            return False
        side, price, owner = entry
        queue = self._levels[side][price]
        resting = queue[oid]
        fill = size if size < resting else resting
        if fill == resting:
            self._remove(oid, side, price, queue, resting)
        else:
            queue[oid] = resting - fill
            self._depth[side][price] -= fill
        self.last_trade_price = price
        self.emit((t, _TRADE, oid, side, price, fill, owner, NO_ID, contra_agent, None))
        return True

    def record_hidden_trade(self, t: int, oid: int, side: int, price: int, size: int) -> None:
        """An execution against hidden liquidity: recorded, the visible book unchanged."""
        self.last_trade_price = price
        self.emit((t, _HIDDEN, oid, side, price, size, NO_ID, NO_ID, NO_ID, None))

    def record_cross(self, t: int, oid: int, side: int, price: int, size: int) -> None:
        """An auction that replayed data reports (LOBSTER type 6): recorded, and its price
        is the last trade; its fills reach the book as executions of their own."""
        self.last_trade_price = price
        self.emit((t, _AUCTION, oid, side, price, size, NO_ID, NO_ID, NO_ID, None))

    def move_to_head(self, oid: int) -> None:
        """Put a resting order at the head of its level's queue: liquidity that replayed
        data shows but no message submitted predates every order the data did submit."""
        side, price, _ = self._orders[oid]
        self._levels[side][price].move_to_end(oid, last=False)

    # ------------------------------------------------------------------ phases
    def _mark(self, t: int, event_type: int, reason: str | None) -> None:
        self.emit((t, event_type, NO_ID, 0, NO_PRICE, 0, NO_ID, NO_ID, NO_ID, reason))

    def uncross(self, t: int, next_phase: Phase = Phase.CONTINUOUS) -> UncrossResult:
        """Run the call auction at the volume-maximising price, then enter ``next_phase``."""
        result = self.indicative_uncross()
        if result.volume > 0:
            self._execute_uncross(t, result.price, result.volume)
        # Market orders that did not trade in the auction do not carry into the next phase.
        for side, sentinel in ((_BUY, MARKET_BUY_PRICE), (_SELL, MARKET_SELL_PRICE)):
            queue = self._levels[side].get(sentinel)
            while queue:
                oid, resting = next(iter(queue.items()))
                agent = self._orders[oid][2]
                self._remove(oid, side, sentinel, queue, resting)
                self.emit(
                    (
                        t,
                        _CANCEL,
                        oid,
                        side,
                        NO_PRICE,
                        resting,
                        agent,
                        NO_ID,
                        NO_ID,
                        "auction_market_unfilled",
                    )
                )
        self._enter(t, next_phase)
        return result

    def indicative_uncross(self) -> UncrossResult:
        """The auction price and volume if the call ended now (books may be crossed)."""
        reference = (
            self.last_trade_price if self.last_trade_price is not None else self.reference_price
        )
        bid_depth, ask_depth = self._bid_depth, self._ask_depth
        buys = [(p, bid_depth[p]) for p in reversed(self._bids)]
        sells = [(p, ask_depth[p]) for p in self._asks]
        return find_uncross_price(buys, sells, reference, MARKET_BUY_PRICE, MARKET_SELL_PRICE)

    # ------------------------------------------------------------------ internals
    def _rest(self, oid: int, side: int, price: int, size: int, agent: int) -> None:
        if side == _BUY:
            levels, depth = self._bid_levels, self._bid_depth
        elif side == _SELL:
            levels, depth = self._ask_levels, self._ask_depth
        else:
            raise _bad_side(side)
        queue = levels.get(price)
        if queue is None:
            levels[price] = queue = OrderedDict()
            queue[oid] = size
            depth[price] = size
            self._add_level(side, price)
        else:
            queue[oid] = size
            depth[price] += size
        self._orders[oid] = (side, price, agent)

    def _add_level(self, side: int, price: int) -> None:
        """List a new level's price (its queue and depth are already in place)."""
        if side == _BUY:
            self._bids.add(price)
            top = self._bid_top
            if top is None or price > top:
                self._bid_top = price
        else:
            self._asks.add(price)
            top = self._ask_top
            if top is None or price < top:
                self._ask_top = price

    def _remove(self, oid: int, side: int, price: int, queue: OrderedDict, resting: int) -> None:
        del queue[oid]
        del self._orders[oid]
        if queue:
            self._depth[side][price] -= resting
        else:
            self._drop_level(side, price)

    def _drop_level(self, side: int, price: int) -> None:
        """Forget an emptied level (its queue is already empty)."""
        if side == _BUY:
            del self._bid_levels[price]
            del self._bid_depth[price]
            prices = self._bids
            if price == self._bid_top:  # the touch empties most often
                prices.pop()
                self._bid_top = prices[-1] if prices else None
                return
        else:
            del self._ask_levels[price]
            del self._ask_depth[price]
            prices = self._asks
            if price == self._ask_top:
                del prices[0]
                self._ask_top = prices[0] if prices else None
                return
        prices.remove(price)

    def _match(self, t: int, oid: int, side: int, limit: int, size: int, agent: int) -> int:
        """Trade an incoming order against the opposite side; return what is left."""
        buy = side == _BUY
        if buy:
            prices, levels, depth = self._asks, self._ask_levels, self._ask_depth
            contra, best = _SELL, self._ask_top
        else:
            prices, levels, depth = self._bids, self._bid_levels, self._bid_depth
            contra, best = _BUY, self._bid_top
        orders = self._orders
        emit = self.emit
        while size and best is not None:
            if (best > limit) if buy else (best < limit):
                break
            queue = levels[best]
            traded = 0
            while size and queue:
                rid, rsize = queue.popitem(last=False)  # the head of the queue
                if rsize <= size:
                    fill = rsize
                    owner = orders.pop(rid)[2]
                else:  # partly filled: back at the head with what is left
                    fill = size
                    queue[rid] = rsize - fill
                    queue.move_to_end(rid, last=False)
                    owner = orders[rid][2]
                size -= fill
                traded += fill
                emit((t, _TRADE, rid, contra, best, fill, owner, oid, agent, None))
            self.last_trade_price = best
            if queue:
                depth[best] -= traded
            else:  # the level is gone: the next one is the touch
                del levels[best]
                del depth[best]
                if buy:
                    del prices[0]
                    best = self._ask_top = prices[0] if prices else None
                else:
                    prices.pop()
                    best = self._bid_top = prices[-1] if prices else None
        return size

    def _execute_uncross(self, t: int, price: int, volume: int) -> None:
        """Fill ``volume`` at ``price``: buys best price first, sells likewise, FIFO per level."""
        emit = self.emit
        emit((t, _AUCTION, NO_ID, 0, price, volume, NO_ID, NO_ID, NO_ID, None))
        buy_left = sell_left = volume
        buy_prices = [p for p in reversed(self._bids) if p >= price]
        sell_prices = [p for p in self._asks if p <= price]
        buy_fifo = _fifo(self._bid_levels, buy_prices)
        sell_fifo = _fifo(self._ask_levels, sell_prices)
        fills: dict[int, int] = {}
        b_oid, b_size = next(buy_fifo)
        s_oid, s_size = next(sell_fifo)
        while buy_left:
            fill = min(b_size, s_size, buy_left)
            emit(
                (
                    t,
                    _TRADE,
                    s_oid,
                    _SELL,
                    price,
                    fill,
                    self._orders[s_oid][2],
                    b_oid,
                    self._orders[b_oid][2],
                    None,
                )
            )
            fills[b_oid] = fills.get(b_oid, 0) + fill
            fills[s_oid] = fills.get(s_oid, 0) + fill
            buy_left -= fill
            sell_left -= fill
            b_size -= fill
            s_size -= fill
            if buy_left == 0:
                break
            if b_size == 0:
                b_oid, b_size = next(buy_fifo)
            if s_size == 0:
                s_oid, s_size = next(sell_fifo)
        for oid, filled in fills.items():
            side, p, _ = self._orders[oid]
            queue = self._levels[side][p]
            resting = queue[oid]
            if filled == resting:
                self._remove(oid, side, p, queue, resting)
            else:
                queue[oid] = resting - filled
                self._depth[side][p] -= filled
        self.last_trade_price = price

    # ------------------------------------------------------------------ checks
    def check_invariants(self) -> None:
        """Raise AssertionError if the book's internal state is inconsistent."""
        seen = 0
        for side in (_BUY, _SELL):
            prices = list(self._prices[side])
            assert prices == sorted(set(prices)), "price list not sorted/unique"
            assert set(prices) == set(self._levels[side]) == set(self._depth[side])
            for p in prices:
                queue = self._levels[side][p]
                assert queue, f"empty level {p} kept"
                assert all(s > 0 for s in queue.values()), f"non-positive size at {p}"
                assert sum(queue.values()) == self._depth[side][p], f"depth mismatch at {p}"
                for oid in queue:
                    assert self._orders[oid][:2] == (side, p), f"order {oid} misfiled"
                seen += len(queue)
        assert seen == len(self._orders), "order index and queues disagree"
        assert self._bid_top == (self._bids[-1] if self._bids else None), "stale bid touch"
        assert self._ask_top == (self._asks[0] if self._asks else None), "stale ask touch"
        if self.phase == Phase.CONTINUOUS:
            bid, ask = self.best_bid(), self.best_ask()
            assert bid is None or ask is None or bid < ask, f"crossed book {bid} >= {ask}"


def _is_accepted(marked_row: tuple[tuple, int]) -> bool:
    return marked_row[1] == 0


def _bad_side(side: int) -> ValueError:
    """Sides are validated by the exchange; a book fed directly gets a clear error."""
    return ValueError(f"side must be {_BUY} (buy) or {_SELL} (sell), got {side!r}")


def _shown(price: int) -> int:
    """Price as written to events: market sentinels become NO_PRICE."""
    return NO_PRICE if price == MARKET_BUY_PRICE else price


def _fifo(levels: dict[int, OrderedDict[int, int]], prices: list[int]):
    for p in prices:
        yield from list(levels[p].items())
