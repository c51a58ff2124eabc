"""One instrument's limit order book: price-time priority on an integer tick grid.

Price levels live in ``SortedList``s of prices (sortedcontainers) with one
``OrderedDict`` queue per price, so the head of a queue, a cancel in the middle
and an append at the tail are all O(1). Every state change appends an event
tuple (``schema.ROW_FIELDS`` minus ``seq``) to ``self.events``; the caller drains
them with ``drain_events``.

Phases follow a real exchange's day: ``CLOSED`` rejects orders; ``CALL``
(pre-open or closing call, or after a halt's quote resume) accepts orders
without matching; ``uncross`` runs the call auction; ``CONTINUOUS`` matches on
arrival; ``HALTED`` rejects new orders and modifications but lets cancels
through.
"""

from __future__ import annotations

from collections import OrderedDict
from enum import IntEnum

import numpy as np
from sortedcontainers import SortedList

from mars_ray.exchange.auction import UncrossResult, find_uncross_price
from mars_ray.schema import NO_ID, NO_PRICE, EventType, OrderType, Side

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


class Phase(IntEnum):
    CLOSED = 0
    CALL = 1
    CONTINUOUS = 2
    HALTED = 3


class OrderBook:
    """A single book. Not thread-safe; one book belongs to one actor."""

    __slots__ = (
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
        # order id -> (side, price, agent_id); remaining size lives in the level queue
        self._orders: dict[int, tuple[int, int, int]] = {}
        # index by side: [_, buy, sell] via side value (1 or -1)
        self._prices: dict[int, SortedList] = {_BUY: SortedList(), _SELL: SortedList()}
        self._levels: dict[int, dict[int, OrderedDict[int, int]]] = {_BUY: {}, _SELL: {}}
        self._depth: dict[int, dict[int, int]] = {_BUY: {}, _SELL: {}}
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

    def reject(self, t: int, oid: int, side: int, price: int, size: int, agent: int, why: str):
        self.emit((t, _REJECT, oid, side, price, size, agent, NO_ID, NO_ID, why))

    # ------------------------------------------------------------------ queries
    def best_bid(self) -> int | None:
        prices = self._prices[_BUY]
        for p in reversed(prices):
            if p != MARKET_BUY_PRICE:
                return p
        return None

    def best_ask(self) -> int | None:
        for p in self._prices[_SELL]:
            if p != MARKET_SELL_PRICE:
                return p
        return None

    def __contains__(self, order_id: int) -> bool:
        return order_id in self._orders

    def __len__(self) -> int:
        return len(self._orders)

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
        out = np.zeros((n, 4), dtype=np.int64)
        ask_prices = self._prices[_SELL]
        ask_depth = self._depth[_SELL]
        i = 0
        for p in ask_prices.islice(0, n + 1):
            if p == MARKET_SELL_PRICE:
                continue
            if i == n:
                break
            out[i, 0] = p
            out[i, 1] = ask_depth[p]
            i += 1
        bid_prices = self._prices[_BUY]
        bid_depth = self._depth[_BUY]
        i = 0
        for p in bid_prices.islice(max(0, len(bid_prices) - n - 1), reverse=True):
            if p == MARKET_BUY_PRICE:
                continue
            if i == n:
                break
            out[i, 2] = p
            out[i, 3] = bid_depth[p]
            i += 1
        return out

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
        if oid in self._orders:
            self.reject(t, oid, side, price, size, agent, "duplicate_order_id")
            return
        phase = self.phase
        if phase != Phase.CONTINUOUS and phase != Phase.CALL:
            why = "halted" if phase == Phase.HALTED else "market_closed"
            self.reject(t, oid, side, price, size, agent, why)
            return
        if order_type == _MARKET:
            price = MARKET_BUY_PRICE if side == _BUY else MARKET_SELL_PRICE
        if phase == Phase.CALL:
            if order_type == _IOC:
                self.reject(t, oid, side, price, size, agent, "ioc_during_call")
                return
            self.emit((t, _SUBMIT, oid, side, _shown(price), size, agent, NO_ID, NO_ID, None))
            self._rest(oid, side, price, size, agent)
            return
        self.emit((t, _SUBMIT, oid, side, _shown(price), size, agent, NO_ID, NO_ID, None))
        contra = self._prices[-side]
        # most orders do not cross: test the touch here before paying for _match
        if contra and (contra[0] <= price if side == _BUY else contra[-1] >= price):
            remaining = self._match(t, oid, side, price, size, agent)
        else:
            remaining = size
        if remaining:
            if order_type == _LIMIT:
                self._rest(oid, side, price, remaining, agent)
            else:
                why = "market_unfilled" if order_type == _MARKET else "ioc_unfilled"
                self.emit((t, _CANCEL, oid, side, _shown(price), remaining, agent, NO_ID, NO_ID, why))

    def cancel(self, t: int, oid: int, size: int = 0, agent: int = NO_ID) -> None:
        """Cancel ``size`` shares of a resting order (0 or at least its size: all of it)."""
        entry = self._orders.get(oid)
        if entry is None:
            self.reject(t, oid, Side.NONE, NO_PRICE, size, agent, "unknown_order")
            return
        side, price, owner = entry
        queue = self._levels[side][price]
        resting = queue[oid]
        if size <= 0 or size >= resting:
            self._remove(oid, side, price, queue, resting)
            self.emit((t, _CANCEL, oid, side, _shown(price), resting, owner, NO_ID, NO_ID, None))
        else:
            queue[oid] = resting - size
            self._depth[side][price] -= size
            self.emit((t, _CANCEL, oid, side, _shown(price), size, owner, NO_ID, NO_ID, None))

    def modify(self, t: int, oid: int, price: int | None, size: int, agent: int = NO_ID) -> None:
        """Change price and/or size. Size down at the same price keeps queue priority;
        a price change or a size increase sends the order to the back (and, in
        continuous trading, a new price may trade at once)."""
        entry = self._orders.get(oid)
        if entry is None:
            self.reject(t, oid, Side.NONE, price or NO_PRICE, size, agent, "unknown_order")
            return
        side, old_price, owner = entry
        if self.phase == Phase.HALTED or self.phase == Phase.CLOSED:
            why = "halted" if self.phase == Phase.HALTED else "market_closed"
            self.reject(t, oid, side, _shown(old_price), size, agent, why)
            return
        new_price = old_price if price is None else price
        queue = self._levels[side][old_price]
        resting = queue[oid]
        self.emit((t, _MODIFY, oid, side, _shown(new_price), size, owner, NO_ID, NO_ID, None))
        if new_price == old_price and size <= resting:
            queue[oid] = size
            self._depth[side][old_price] -= resting - size
            return
        self._remove(oid, side, old_price, queue, resting)
        remaining = size
        if self.phase == Phase.CONTINUOUS:
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

    # ------------------------------------------------------------------ phases
    def open_call(self, t: int) -> None:
        """Start a call phase (pre-open or closing auction): orders rest, nothing matches."""
        self.phase = Phase.CALL
        self.emit((t, _PHASE, NO_ID, 0, NO_PRICE, 0, NO_ID, NO_ID, NO_ID, "call"))

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
                self.emit((t, _CANCEL, oid, side, NO_PRICE, resting, agent, NO_ID, NO_ID,
                           "auction_market_unfilled"))
        self.phase = next_phase
        self.emit((t, _PHASE, NO_ID, 0, NO_PRICE, 0, NO_ID, NO_ID, NO_ID, next_phase.name.lower()))
        return result

    def close(self, t: int) -> None:
        self.phase = Phase.CLOSED
        self.emit((t, _PHASE, NO_ID, 0, NO_PRICE, 0, NO_ID, NO_ID, NO_ID, "closed"))

    def halt(self, t: int) -> None:
        self.phase = Phase.HALTED
        self.emit((t, _HALT, NO_ID, 0, NO_PRICE, 0, NO_ID, NO_ID, NO_ID, None))

    def resume_quotes(self, t: int) -> None:
        """After a halt: orders are accepted again but trading waits for the re-opening auction."""
        self.phase = Phase.CALL
        self.emit((t, _RESUME, NO_ID, 0, NO_PRICE, 0, NO_ID, NO_ID, NO_ID, "quote"))

    def resume_trading(self, t: int) -> UncrossResult:
        """End a halt: re-open with an auction on whatever was quoted meanwhile."""
        self.emit((t, _RESUME, NO_ID, 0, NO_PRICE, 0, NO_ID, NO_ID, NO_ID, "trade"))
        return self.uncross(t, Phase.CONTINUOUS)

    def indicative_uncross(self) -> UncrossResult:
        """The auction price and volume if the call ended now (books may be crossed)."""
        reference = self.last_trade_price if self.last_trade_price is not None else self.reference_price
        buys = [(p, self._depth[_BUY][p]) for p in reversed(self._prices[_BUY])]
        sells = [(p, self._depth[_SELL][p]) for p in self._prices[_SELL]]
        return find_uncross_price(buys, sells, reference, MARKET_BUY_PRICE, MARKET_SELL_PRICE)

    # ------------------------------------------------------------------ internals
    def _rest(self, oid: int, side: int, price: int, size: int, agent: int) -> None:
        self._orders[oid] = (side, price, agent)
        levels = self._levels[side]
        queue = levels.get(price)
        if queue is None:
            levels[price] = OrderedDict(((oid, size),))
            self._depth[side][price] = size
            self._prices[side].add(price)
        else:
            queue[oid] = size
            self._depth[side][price] += size

    def _remove(self, oid: int, side: int, price: int, queue: OrderedDict, resting: int) -> None:
        del queue[oid]
        del self._orders[oid]
        if queue:
            self._depth[side][price] -= resting
        else:
            del self._levels[side][price]
            del self._depth[side][price]
            self._prices[side].remove(price)

    def _match(self, t: int, oid: int, side: int, limit: int, size: int, agent: int) -> int:
        """Trade an incoming order against the opposite side; return what is left."""
        contra = -side
        prices = self._prices[contra]
        if not prices:
            return size
        levels = self._levels[contra]
        depth = self._depth[contra]
        orders = self._orders
        emit = self.emit
        best_index = 0 if side == _BUY else -1
        while size and prices:
            best = prices[best_index]
            if (best > limit) if side == _BUY else (best < limit):
                break
            queue = levels[best]
            traded = 0
            while size and queue:
                rid = next(iter(queue))
                rsize = queue[rid]
                if rsize <= size:
                    fill = rsize
                    del queue[rid]
                    owner = orders.pop(rid)[2]
                else:
                    fill = size
                    queue[rid] = rsize - fill
                    owner = orders[rid][2]
                size -= fill
                traded += fill
                emit((t, _TRADE, rid, contra, best, fill, owner, oid, agent, None))
            self.last_trade_price = best
            if queue:
                depth[best] -= traded
            else:
                del levels[best]
                del depth[best]
                prices.pop(best_index)
        return size

    def _execute_uncross(self, t: int, price: int, volume: int) -> None:
        """Fill ``volume`` at ``price``: buys best price first, sells likewise, FIFO within a level."""
        emit = self.emit
        emit((t, _AUCTION, NO_ID, 0, price, volume, NO_ID, NO_ID, NO_ID, None))
        buy_left = sell_left = volume
        buy_prices = [p for p in reversed(self._prices[_BUY]) if p >= price]
        sell_prices = [p for p in self._prices[_SELL] if p <= price]
        buy_fifo = _fifo(self._levels[_BUY], buy_prices)
        sell_fifo = _fifo(self._levels[_SELL], sell_prices)
        fills: dict[int, int] = {}
        b_oid, b_size = next(buy_fifo)
        s_oid, s_size = next(sell_fifo)
        while buy_left:
            fill = min(b_size, s_size, buy_left)
            emit((t, _TRADE, s_oid, _SELL, price, fill, self._orders[s_oid][2],
                  b_oid, self._orders[b_oid][2], None))
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
        if self.phase == Phase.CONTINUOUS:
            bid, ask = self.best_bid(), self.best_ask()
            assert bid is None or ask is None or bid < ask, f"crossed book {bid} >= {ask}"


def _shown(price: int) -> int:
    """Price as written to events: market sentinels become NO_PRICE."""
    return NO_PRICE if price == MARKET_BUY_PRICE else price


def _fifo(levels: dict[int, OrderedDict[int, int]], prices: list[int]):
    for p in prices:
        yield from list(levels[p].items())
