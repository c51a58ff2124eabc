"""Property tests: long random event sequences against a naive reference book.

The reference (``RefBook``) keeps every resting order in one flat list with a
priority counter and finds the best contra order by sorting, applying the
documented rules literally. It is run side by side with ``OrderBook`` and the
two event streams must be identical, operation by operation, in every phase, and
batch by batch through ``apply_batch`` with rows the exchange refused mixed in (the
simulation's path); ``CompiledOrderBook`` goes through the same runs.
Independently of the reference, every operation is followed by checks of the
book's invariants, of "never crossed in continuous trading", of FIFO at each
traded level, and of share conservation computed from the event stream alone.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mars_ray.exchange import compiled_book
from mars_ray.exchange.auction import UncrossResult
from mars_ray.exchange.book import OrderBook
from mars_ray.exchange.compiled_book import CompiledOrderBook
from mars_ray.schema.events import NO_ID, NO_PRICE, EventType, OrderType
from mars_ray.schema.phases import Phase
from mars_ray.schema.reasons import VALIDATION

BUY, SELL = 1, -1
LIMIT, MARKET, IOC = int(OrderType.LIMIT), int(OrderType.MARKET), int(OrderType.IOC)
CANCEL_ORDER, MODIFY_ORDER = int(OrderType.CANCEL), int(OrderType.MODIFY)
SUBMIT = int(EventType.SUBMIT)
CANCEL = int(EventType.CANCEL)
MODIFY = int(EventType.MODIFY)
TRADE = int(EventType.TRADE)
REJECT = int(EventType.REJECT)
AUCTION = int(EventType.AUCTION)
HALT = int(EventType.HALT)
RESUME = int(EventType.RESUME)
PHASE = int(EventType.PHASE)

REF_MKT_BUY = 10**15  # the reference's own market-order prices
REF_MKT_SELL = -(10**15)


def shown(price: int) -> int:
    return NO_PRICE if price in (REF_MKT_BUY, REF_MKT_SELL) else price


class RefBook:
    """Naive list-based book. orders: oid -> [side, price, size, agent, priority]."""

    def __init__(self, phase: Phase, reference: int | None):
        self.phase = phase
        self.reference = reference
        self.last_trade: int | None = None
        self.orders: dict[int, list[int]] = {}
        self.events: list[tuple] = []
        self.clock = 0

    def _emit(self, *row):
        self.events.append(tuple(row))

    def _rest(self, oid, side, price, size, agent):
        self.clock += 1
        self.orders[oid] = [side, price, size, agent, self.clock]

    def _queue(self, side):
        """Resting orders of one side, best first, oldest first within a price."""
        rows = [(oid, o) for oid, o in self.orders.items() if o[0] == side]
        rows.sort(key=lambda r: (-r[1][1] * side, r[1][4]))
        return rows

    def _match(self, t, oid, side, limit, size, agent):
        while size:
            contra = self._queue(-side)
            if not contra:
                break
            rid, r = contra[0]
            if (side == BUY and r[1] > limit) or (side == SELL and r[1] < limit):
                break
            fill = min(size, r[2])
            self._emit(t, TRADE, rid, r[0], r[1], fill, r[3], oid, agent, None)
            r[2] -= fill
            size -= fill
            if r[2] == 0:
                del self.orders[rid]
            self.last_trade = r[1]
        return size

    def submit(self, t, oid, side, price, size, agent, otype):
        if oid in self.orders:
            self._emit(t, REJECT, oid, side, price, size, agent, NO_ID, NO_ID, "duplicate_order_id")
            return
        if self.phase not in (Phase.CONTINUOUS, Phase.CALL):
            why = "halted" if self.phase == Phase.HALTED else "market_closed"
            self._emit(t, REJECT, oid, side, price, size, agent, NO_ID, NO_ID, why)
            return
        if otype == MARKET:
            price = REF_MKT_BUY if side == BUY else REF_MKT_SELL
        if self.phase == Phase.CALL:
            if otype == IOC:
                self._emit(
                    t, REJECT, oid, side, price, size, agent, NO_ID, NO_ID, "ioc_during_call"
                )
                return
            self._emit(t, SUBMIT, oid, side, shown(price), size, agent, NO_ID, NO_ID, None)
            self._rest(oid, side, price, size, agent)
            return
        self._emit(t, SUBMIT, oid, side, shown(price), size, agent, NO_ID, NO_ID, None)
        left = self._match(t, oid, side, price, size, agent)
        if left and otype == LIMIT:
            self._rest(oid, side, price, left, agent)
        elif left:
            why = "market_unfilled" if otype == MARKET else "ioc_unfilled"
            self._emit(t, CANCEL, oid, side, shown(price), left, agent, NO_ID, NO_ID, why)

    def cancel(self, t, oid, size, agent):
        o = self.orders.get(oid)
        if o is None:
            self._emit(t, REJECT, oid, 0, NO_PRICE, size, agent, NO_ID, NO_ID, "unknown_order")
            return
        gone = o[2] if size <= 0 or size >= o[2] else size
        o[2] -= gone
        if o[2] == 0:
            del self.orders[oid]
        self._emit(t, CANCEL, oid, o[0], shown(o[1]), gone, o[3], NO_ID, NO_ID, None)

    def modify(self, t, oid, price, size, agent):
        o = self.orders.get(oid)
        if o is None:
            self._emit(
                t, REJECT, oid, 0, price or NO_PRICE, size, agent, NO_ID, NO_ID, "unknown_order"
            )
            return
        side, old_price, resting, owner, _ = o
        if self.phase in (Phase.HALTED, Phase.CLOSED):
            why = "halted" if self.phase == Phase.HALTED else "market_closed"
            self._emit(t, REJECT, oid, side, shown(old_price), size, agent, NO_ID, NO_ID, why)
            return
        new_price = old_price if price is None else price
        self._emit(t, MODIFY, oid, side, shown(new_price), size, owner, NO_ID, NO_ID, None)
        if new_price == old_price and size <= resting:
            o[2] = size  # keeps its priority
            return
        del self.orders[oid]
        left = size
        if self.phase == Phase.CONTINUOUS:
            left = self._match(t, oid, side, new_price, size, owner)
        if left:
            self._rest(oid, side, new_price, left, owner)

    def apply_row(self, row, code):
        """One row of a batch: refused by the exchange (``code``), or the request it is."""
        t, otype, oid, side, price, size, agent = row
        if code:
            self._emit(t, REJECT, oid, side, price, size, agent, NO_ID, NO_ID, VALIDATION[code])
        elif otype == CANCEL_ORDER:
            self.cancel(t, oid, size, agent)
        elif otype == MODIFY_ORDER:
            self.modify(t, oid, price if price > 0 else None, size, agent)
        else:
            self.submit(t, oid, side, price, size, agent, otype)

    # ---------------------------------------------------------------- phases
    def _phase_event(self, t, name):
        self._emit(t, PHASE, NO_ID, 0, NO_PRICE, 0, NO_ID, NO_ID, NO_ID, name)

    def open_call(self, t):
        self.phase = Phase.CALL
        self._phase_event(t, "call")

    def close(self, t):
        self.phase = Phase.CLOSED
        self._phase_event(t, "closed")

    def halt(self, t):
        self.phase = Phase.HALTED
        self._emit(t, HALT, NO_ID, 0, NO_PRICE, 0, NO_ID, NO_ID, NO_ID, None)

    def resume_quotes(self, t):
        self.phase = Phase.CALL
        self._emit(t, RESUME, NO_ID, 0, NO_PRICE, 0, NO_ID, NO_ID, NO_ID, "quote")

    def resume_trading(self, t):
        self._emit(t, RESUME, NO_ID, 0, NO_PRICE, 0, NO_ID, NO_ID, NO_ID, "trade")
        return self.uncross(t, Phase.CONTINUOUS)

    def auction_price(self) -> UncrossResult:
        """The four documented rules, applied literally over the candidate prices."""
        ref = self.last_trade if self.last_trade is not None else self.reference
        orders = list(self.orders.values())
        markets = (REF_MKT_BUY, REF_MKT_SELL)
        cands = {o[1] for o in orders if o[1] not in markets}
        if ref is not None and ref > 0:
            cands.add(ref)
        if not any(o[0] == BUY for o in orders) or not any(o[0] == SELL for o in orders):
            return UncrossResult(0, 0, 0)
        rows = []
        for p in sorted(cands):
            d = sum(o[2] for o in orders if o[0] == BUY and o[1] >= p)
            s = sum(o[2] for o in orders if o[0] == SELL and o[1] <= p)
            rows.append((p, min(d, s), d - s))
        if not rows or max(r[1] for r in rows) == 0:
            return UncrossResult(0, 0, 0)
        vol = max(r[1] for r in rows)
        rows = [r for r in rows if r[1] == vol]
        least = min(abs(r[2]) for r in rows)
        rows = [r for r in rows if abs(r[2]) == least]
        if all(r[2] > 0 for r in rows):
            best = rows[-1]
        elif all(r[2] < 0 for r in rows):
            best = rows[0]
        else:
            target2 = 2 * ref if ref is not None and ref > 0 else rows[0][0] + rows[-1][0]
            best = min(rows, key=lambda r: (abs(2 * r[0] - target2), r[0]))
        return UncrossResult(best[0], vol, best[2])

    def uncross(self, t, next_phase=Phase.CONTINUOUS):
        result = self.auction_price()
        if result.volume:
            p = result.price
            self._emit(t, AUCTION, NO_ID, 0, p, result.volume, NO_ID, NO_ID, NO_ID, None)
            buys = [(oid, o) for oid, o in self._queue(BUY) if o[1] >= p]
            sells = [(oid, o) for oid, o in self._queue(SELL) if o[1] <= p]
            left = result.volume
            while left:
                (bid, b), (sid, s) = buys[0], sells[0]
                fill = min(b[2], s[2], left)
                self._emit(t, TRADE, sid, SELL, p, fill, s[3], bid, b[3], None)
                left -= fill
                for oid, o, book_side in ((bid, b, buys), (sid, s, sells)):
                    o[2] -= fill
                    if o[2] == 0:
                        del self.orders[oid]
                        book_side.pop(0)
            self.last_trade = p
        for side, mkt in ((BUY, REF_MKT_BUY), (SELL, REF_MKT_SELL)):
            for oid, o in self._queue(side):
                if o[1] == mkt:
                    del self.orders[oid]
                    self._emit(
                        t,
                        CANCEL,
                        oid,
                        side,
                        NO_PRICE,
                        o[2],
                        o[3],
                        NO_ID,
                        NO_ID,
                        "auction_market_unfilled",
                    )
        self.phase = next_phase
        self._phase_event(t, next_phase.name.lower())
        return result

    def state(self, side):
        """[(shown price, [(oid, size), ...]), ...] best first; market orders first."""
        out: list[tuple[int, list[tuple[int, int]]]] = []
        for oid, o in self._queue(side):
            if not out or out[-1][0] != o[1]:
                out.append((o[1], []))
            out[-1][1].append((oid, o[2]))
        return [(shown(p), q) for p, q in out]


def book_state(book: OrderBook, side):
    """The same view of the real book, through its public API."""
    out = []
    market = book.level_queue(side, 1 << 62 if side == BUY else 0)
    if market:
        out.append((NO_PRICE, market))
    for price, depth in book.levels(side):
        queue = book.level_queue(side, price)
        assert sum(s for _, s in queue) == depth == book.depth_at(side, price)
        out.append((price, queue))
    return out


# ---------------------------------------------------------------- the driver


class Harness:
    """Runs one operation on both books and checks everything after it."""

    def __init__(self, phase=Phase.CONTINUOUS, reference=100, book_type=OrderBook):
        self.book = book_type(phase=phase, reference_price=reference)
        self.ref = RefBook(phase, reference)
        self.live: dict[int, int] = {}  # oid -> size still open, from the event stream
        self.ledger: dict[int, list[int]] = {}
        self.t = 0
        self.applied = 0
        self._last_id = 0
        self.stats = dict.fromkeys(
            ("trades", "cancels", "modifies", "rejects", "auctions", "continuous_ops"), 0
        )

    def next_id(self) -> int:
        self._last_id += 1
        return self._last_id

    def _contra_queues(self, side):
        return {
            p: [oid for oid, _ in self.book.level_queue(-side, p)]
            for p, _ in self.book.levels(-side)
        }

    def apply(self, op: str, *args):
        book, ref = self.book, self.ref
        self.t += 1
        t = self.t
        continuous = book.phase == Phase.CONTINUOUS
        pre_queues = None
        if continuous and op in ("submit", "modify"):
            side = args[1] if op == "submit" else (book.order(args[0]) or (0,))[0]
            if side:
                pre_queues = self._contra_queues(side)
        result = getattr(book, op)(t, *args)
        ref_result = getattr(ref, op)(t, *args)
        self.applied += 1
        self.stats["continuous_ops"] += continuous
        _, events = book.drain_events()
        want, ref.events = ref.events, []
        assert events == want, (op, args)
        assert result == ref_result
        self._account(events)
        if pre_queues is not None:
            self._check_fifo(events, pre_queues)
        book.check_invariants()
        if book.phase == Phase.CONTINUOUS:
            bid, ask = book.best_bid(), book.best_ask()
            assert bid is None or ask is None or bid < ask
        assert book.last_trade_price == ref.last_trade

    def apply_batch(self, rows, codes):
        """Rows (time, order type, id, side, price, size, agent) through the book's
        ``apply_batch`` with the exchange's reject codes, and one by one through the
        reference; then the same checks as ``apply``."""
        book, ref = self.book, self.ref
        columns = [np.array(column, dtype=np.int64) for column in zip(*rows, strict=True)]
        book.apply_batch(columns, np.array(codes, dtype=np.int8))
        for row, code in zip(rows, codes, strict=True):
            ref.apply_row(row, code)
        self.applied += len(rows)
        _, events = book.drain_events()
        want, ref.events = ref.events, []
        assert events == want
        self._account(events)
        book.check_invariants()
        assert book.last_trade_price == ref.last_trade

    def _account(self, events):
        """Share conservation from the event stream alone. Per order id a ledger
        [submitted, added by modifies, traded, cancelled]; the open size
        submitted + added - traded - cancelled must be what the book shows resting."""
        ledger, live = self.ledger, self.live
        touched = set()
        for e in events:
            etype, oid, size = e[1], e[2], e[5]
            if etype == SUBMIT:
                assert live.get(oid, 0) == 0  # (a batch may reuse an id it emptied)
                ledger[oid] = [size, 0, 0, 0]
                live[oid] = size
            elif etype == MODIFY:
                assert live[oid] > 0
                ledger[oid][1] += size - live[oid]  # a modify sets the open size
                live[oid] = size
                self.stats["modifies"] += 1
            elif etype == CANCEL:
                ledger[oid][3] += size
                live[oid] -= size
                self.stats["cancels"] += 1
            elif etype == TRADE:
                for side_oid in (oid, e[7]):  # resting (auction: sell) and aggressor (buy)
                    ledger[side_oid][2] += size
                    live[side_oid] -= size
                    touched.add(side_oid)
                self.stats["trades"] += 1
            elif etype == REJECT:
                self.stats["rejects"] += 1
                continue
            elif etype == AUCTION:
                self.stats["auctions"] += 1
            if oid != NO_ID:
                touched.add(oid)
        for oid in touched:
            submitted, added, traded, cancelled = ledger[oid]
            entry = self.book.order(oid)
            resting = entry[2] if entry else 0
            assert live[oid] >= 0, oid
            assert submitted + added == traded + cancelled + resting, oid
            assert live[oid] == resting, oid
            if resting == 0:
                del live[oid]

    def check_ledger(self):
        """submitted + added == traded + cancelled + resting for every order ever seen."""
        for oid, (submitted, added, traded, cancelled) in self.ledger.items():
            entry = self.book.order(oid)
            assert submitted + added == traded + cancelled + (entry[2] if entry else 0), oid

    def _check_fifo(self, events, pre_queues):
        """Each continuous TRADE hits the oldest order still resting at the best price."""
        queues = {p: list(q) for p, q in pre_queues.items()}
        prices = sorted(queues)
        sizes: dict[int, int] = {}
        for e in events:
            if e[1] != TRADE:
                continue
            price, rid = e[4], e[2]
            best = prices[0] if e[3] == SELL else prices[-1]  # resting sells: lowest first
            assert price == best, "traded away from the best price"
            assert queues[price][0] == rid, "not the oldest order at the level"
            if rid not in sizes:
                sizes[rid] = self.book_size_before(rid, e)
            sizes[rid] -= e[5]
            if sizes[rid] == 0:
                queues[price].pop(0)
                if not queues[price]:
                    del queues[price]
                    prices.remove(price)

    def book_size_before(self, rid, event):
        # after the operation the order is either gone (fully traded) or keeps the rest
        entry = self.book.order(rid)
        return event[5] + (entry[2] if entry else 0)

    def full_check(self):
        for side in (BUY, SELL):
            assert book_state(self.book, side) == self.ref.state(side)
        assert len(self.book) == len(self.ref.orders)
        for oid, size in self.live.items():
            assert self.book.order(oid)[2] == size
        assert set(self.live) == set(self.ref.orders)
        snap = self.book.snapshot(5)
        asks, bids = self.book.levels(SELL)[:5], self.book.levels(BUY)[:5]
        assert snap[: len(asks), :2].tolist() == [list(x) for x in asks]
        assert snap[: len(bids), 2:].tolist() == [list(x) for x in bids]
        assert not snap[len(asks) :, :2].any() and not snap[len(bids) :, 2:].any()


def random_op(rng, h: Harness, mix):
    """One random operation (name, args) given the current phase and book."""
    book = h.book
    phase = book.phase
    r = rng.random()
    # phase changes
    if phase == Phase.CONTINUOUS and r < mix["phase"]:
        r2 = rng.random()
        return ("open_call",) if r2 < 0.5 else ("halt",) if r2 < 0.85 else ("close",)
    if phase == Phase.CALL and r < 0.04:
        r2 = rng.random()
        if r2 < 0.03:
            return ("close",)
        if r2 < 0.15:
            return ("halt",)
        if r2 < 0.25:
            return ("uncross", Phase.CALL)
        return ("uncross",) if r2 < 0.7 else ("resume_trading",)
    if phase == Phase.HALTED and r < 0.08:
        return ("resume_quotes",) if rng.random() < 0.6 else ("resume_trading",)
    if phase == Phase.CLOSED and r < 0.1:
        return ("open_call",)
    live = list(h.live)
    agent = int(rng.integers(0, 8))
    side = BUY if rng.random() < 0.5 else SELL
    mid = mix["mid"]
    r = rng.random()
    # submit more while the book is below its target size, cancel more above it
    deep = len(live) >= mix["target"]
    if r < (0.35 if deep else 0.65):
        oid = h.next_id()
        kind = rng.random()
        otype = LIMIT
        if kind < mix["market"]:
            otype = MARKET
        elif kind < mix["market"] + mix["ioc"]:
            otype = IOC
        # buys centred a little below mid, sells a little above: a realistic spread
        price = int(mid - side + rng.integers(-mix["width"], mix["width"] + 1))
        if otype == MARKET and rng.random() < 0.5:
            price = 0
        size = int(rng.integers(1, mix["max_size"] + 1))
        if live and rng.random() < 0.02:
            oid = live[int(rng.integers(len(live)))]  # duplicate of a live id
        return ("submit", oid, side, price, size, agent, otype)
    if r < (0.7 if deep else 0.85):
        if not live or rng.random() < 0.05:
            return ("cancel", h.next_id() + 10**6, int(rng.integers(0, 3)), agent)
        oid = live[int(rng.integers(len(live)))]
        open_size = h.live[oid]
        size = 0 if rng.random() < 0.5 else int(rng.integers(1, open_size + 3))
        return ("cancel", oid, size, agent)
    if not live or rng.random() < 0.05:
        return (
            "modify",
            h.next_id() + 10**6,
            None if rng.random() < 0.5 else mid,
            int(rng.integers(1, 5)),
            agent,
        )
    oid = live[int(rng.integers(len(live)))]
    entry = book.order(oid)
    open_size = entry[2]
    r3 = rng.random()
    if r3 < 0.4:
        price = None
    elif r3 < 0.5:
        price = entry[1] if 0 < entry[1] < (1 << 62) else None  # same price, spelled out
    else:
        price = int(mid + rng.integers(-mix["width"], mix["width"] + 1))
    r4 = rng.random()
    size = (
        int(rng.integers(1, open_size + 1))
        if r4 < 0.5
        else open_size
        if r4 < 0.6
        else int(rng.integers(open_size + 1, open_size + 8))
    )
    return ("modify", oid, price, size, entry[3])


MIXES = {
    "balanced": dict(mid=100, width=4, max_size=10, market=0.05, ioc=0.1, phase=0.004, target=30),
    "tight_small": dict(mid=50, width=1, max_size=3, market=0.03, ioc=0.05, phase=0.003, target=20),
    "wide_deep": dict(
        mid=1000, width=12, max_size=25, market=0.08, ioc=0.15, phase=0.01, target=80
    ),
    "auction_heavy": dict(mid=100, width=3, max_size=8, market=0.1, ioc=0.1, phase=0.05, target=30),
}
OPS_PER_RUN = 25_000
RUNS = [(name, seed) for name in MIXES for seed in (1, 2)]


def run_sequence(mix_name, seed, n_ops, full_check_every=25, book_type=OrderBook):
    mix = MIXES[mix_name]
    rng = np.random.default_rng(seed)
    start = Phase.CONTINUOUS if seed % 2 else Phase.CALL
    h = Harness(phase=start, reference=mix["mid"] if seed % 2 else None, book_type=book_type)
    for i in range(n_ops):
        h.apply(*random_op(rng, h, mix))
        if i % full_check_every == 0:
            h.full_check()
    h.full_check()
    h.check_ledger()
    return h


@pytest.mark.parametrize(("mix_name", "seed"), RUNS)
def test_random_sequences_match_reference(mix_name, seed):
    h = run_sequence(mix_name, seed, OPS_PER_RUN)
    assert h.applied == OPS_PER_RUN
    s = h.stats
    # the sequence really exercised trading, auctions, cancels, modifies and rejects
    assert s["trades"] > 500 and s["cancels"] > 500 and s["modifies"] > 300
    assert s["rejects"] > 50 and s["auctions"] > 3
    assert s["continuous_ops"] > OPS_PER_RUN // 3


@pytest.mark.parametrize(("mix_name", "seed"), RUNS)
def test_compiled_book_matches_reference(mix_name, seed):
    """The simulation's compiled book, through the same sequences and checks."""
    h = run_sequence(mix_name, seed, OPS_PER_RUN, book_type=CompiledOrderBook)
    assert h.applied == OPS_PER_RUN
    assert h.stats["trades"] > 500 and h.stats["auctions"] > 3


@pytest.mark.parametrize("chunk", [None, 700])
def test_compiled_book_grows_and_sweeps_within_one_batch(chunk, monkeypatch):
    """One batch that outgrows the compiled book's arrays (1,024 orders) and then sweeps
    every order it rested: the events and the book equal the reference's, also when the
    batch goes to the compiled code in chunks (the sweep then meets earlier chunks' orders)."""
    if chunk:
        monkeypatch.setattr(compiled_book, "ROWS_PER_CALL", chunk)
    n = 3_000
    rng = np.random.default_rng(5)
    sells = [
        (i, LIMIT, i + 1, SELL, 100 + int(rng.integers(0, 50)), 1 + i % 3, i % 7) for i in range(n)
    ]
    volume = sum(row[5] for row in sells)
    rows = [
        *sells,
        (n, MARKET, n + 1, BUY, 0, volume - 5, 99),
        (n + 1, LIMIT, n + 2, BUY, 120, 9, 98),
    ]
    columns = [np.array(column) for column in zip(*rows, strict=True)]
    books = [OrderBook(Phase.CONTINUOUS, 100), CompiledOrderBook(Phase.CONTINUOUS, 100)]
    for book in books:
        book.apply_batch(columns)
    reference, compiled = (book.drain_events()[1] for book in books)
    assert len(reference) >= 2 * n and compiled == reference
    assert books[1].queues() == [
        (side, price, books[0].level_queue(side, price))
        for side in (BUY, SELL)
        for price, _ in books[0].levels(side)
    ]


def test_the_equivalence_runs_add_up_to_200000_operations():
    """Each book's parametrised runs above assert they applied OPS_PER_RUN operations; this
    fails if the runs are cut below 200,000 operations per book."""
    assert OPS_PER_RUN >= 25_000 and OPS_PER_RUN * len(RUNS) >= 200_000


# ---------------------------------------------------------------- batches with rejects
REQUESTS = ("submit", "cancel", "modify")


def as_row(t: int, op: tuple) -> tuple[int, ...]:
    """A ``random_op`` request as a batch row (time, order type, id, side, price, size, agent)."""
    name, *args = op
    if name == "submit":
        oid, side, price, size, agent, otype = args
        return (t, otype, oid, side, price, size, agent)
    if name == "cancel":
        oid, size, agent = args
        return (t, CANCEL_ORDER, oid, 0, 0, size, agent)
    oid, price, size, agent = args
    return (t, MODIFY_ORDER, oid, 0, price or 0, size, agent)


def run_batches(mix_name, seed, n_rows, book_type, reject_share=0.1):
    """Random batches (drawn from the book as it was before each) with a share of rows
    refused by the exchange; the phase changes between batches, as in a simulation."""
    mix = MIXES[mix_name]
    rng = np.random.default_rng(seed)
    start = Phase.CONTINUOUS if seed % 2 else Phase.CALL
    h = Harness(phase=start, reference=mix["mid"], book_type=book_type)
    while h.applied < n_rows:
        rows, codes = [], []
        for _ in range(int(rng.integers(1, 40))):
            op = random_op(rng, h, mix)
            if op[0] not in REQUESTS:  # a phase change ends the batch
                h.apply(*op)
                break
            h.t += 1
            rows.append(as_row(h.t, op))
            refused = rng.random() < reject_share
            codes.append(int(rng.integers(1, len(VALIDATION))) if refused else 0)
        if rows:
            h.apply_batch(rows, codes)
        h.full_check()
    h.check_ledger()
    return h


BATCH_ROWS = 25_000


@pytest.mark.parametrize("book_type", [OrderBook, CompiledOrderBook])
@pytest.mark.parametrize(("mix_name", "seed"), [("balanced", 3), ("auction_heavy", 4)])
def test_random_batches_with_rejects_match_reference(book_type, mix_name, seed):
    h = run_batches(mix_name, seed, BATCH_ROWS, book_type)
    assert h.applied >= BATCH_ROWS
    s = h.stats
    assert s["trades"] > 100 and s["cancels"] > 100 and s["modifies"] > 50
    assert s["rejects"] > BATCH_ROWS // 20 and s["auctions"] > 0


class IgnoresRejects(OrderBook):
    """Broken on purpose: applies the rows the exchange refused."""

    def apply_batch(self, columns, rejects=None):
        super().apply_batch(columns)


def test_batch_harness_catches_a_book_that_ignores_rejects():
    with pytest.raises(AssertionError):
        run_batches("balanced", 3, 500, IgnoresRejects, reject_share=0.5)


# ---------------------------------------------------------------- hypothesis


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    n_ops=st.integers(1, 80),
    mix_name=st.sampled_from(sorted(MIXES)),
    start_in_call=st.booleans(),
    book_type=st.sampled_from([OrderBook, CompiledOrderBook]),
)
def test_hypothesis_short_sequences(seed, n_ops, mix_name, start_in_call, book_type):
    mix = MIXES[mix_name]
    rng = np.random.default_rng(seed)
    start = Phase.CALL if start_in_call else Phase.CONTINUOUS
    h = Harness(phase=start, reference=mix["mid"], book_type=book_type)
    for _ in range(n_ops):
        h.apply(*random_op(rng, h, mix))
        h.full_check()
    assert h.applied == n_ops


def test_reference_model_catches_a_broken_book():
    """The harness can fail: a book that breaks time priority is detected."""
    h = Harness()
    h.apply("submit", 1, SELL, 100, 5, 1, LIMIT)
    h.apply("submit", 2, SELL, 100, 5, 2, LIMIT)
    h.book.move_to_head(2)  # corrupt the FIFO order
    with pytest.raises(AssertionError):
        h.apply("submit", 3, BUY, 100, 3, 3, LIMIT)
