"""Call-auction price determination, rule by rule, plus a brute-force cross-check."""

from __future__ import annotations

import numpy as np
import pytest

from mars_ray.exchange.auction import UncrossResult, find_uncross_price
from mars_ray.exchange.book import MARKET_BUY_PRICE, MARKET_SELL_PRICE, OrderBook
from mars_ray.schema.events import NO_ID, EventType, OrderType
from mars_ray.schema.phases import Phase

BUY, SELL = 1, -1
MB, MS = MARKET_BUY_PRICE, MARKET_SELL_PRICE
TRADE = int(EventType.TRADE)
AUCTION = int(EventType.AUCTION)
PHASE = int(EventType.PHASE)
MARKET = int(OrderType.MARKET)


def uncross(buys, sells, reference=None):
    """buys/sells as (price, size) in any order; sorted here the way the book passes them."""
    buys = sorted(buys, key=lambda x: -x[0])
    sells = sorted(sells, key=lambda x: x[0])
    return find_uncross_price(buys, sells, reference, MB, MS)


# ---------------------------------------------------------------- the rules one by one


def test_rule1_maximum_volume():
    buys = [(102, 10), (101, 10), (100, 10)]
    sells = [(99, 5), (100, 10), (101, 10)]
    # volume: 99 -> 5, 100 -> 15, 101 -> 20, 102 -> 10
    assert uncross(buys, sells) == UncrossResult(101, 20, -5)


def test_rule2_minimum_surplus_breaks_volume_ties():
    # volume 10 at 100 (surplus +5) and at 101 (surplus 0); the reference (50) would pick 100
    buys = [(100, 5), (101, 10)]
    sells = [(100, 10)]
    assert uncross(buys, sells, reference=50) == UncrossResult(101, 10, 0)
    # mirrored: volume 10 at 100 (surplus 0) and 101 (surplus -5); reference 200 would pick 101
    assert uncross([(101, 10)], [(100, 10), (101, 5)], reference=200) == UncrossResult(100, 10, 0)


def test_rule3_buy_pressure_takes_highest_price():
    # volume 10, surplus +10 at both 100 and 102; the reference 100 must not matter
    assert uncross([(102, 20)], [(100, 10)], reference=100) == UncrossResult(102, 10, 10)
    assert uncross([(102, 20)], [(100, 10)]) == UncrossResult(102, 10, 10)


def test_rule3_sell_pressure_takes_lowest_price():
    assert uncross([(102, 10)], [(100, 20)], reference=102) == UncrossResult(100, 10, -10)
    assert uncross([(102, 10)], [(100, 20)]) == UncrossResult(100, 10, -10)


def test_rule4_reference_price_closest_candidate():
    # volume 10, surplus 0 at every price from 100 to 103
    buys, sells = [(103, 10)], [(100, 10)]
    assert uncross(buys, sells, reference=110) == UncrossResult(103, 10, 0)
    assert uncross(buys, sells, reference=90) == UncrossResult(100, 10, 0)
    # the reference price is itself a candidate
    assert uncross(buys, sells, reference=102) == UncrossResult(102, 10, 0)
    assert uncross(buys, sells, reference=101) == UncrossResult(101, 10, 0)


def test_rule4_reference_with_mixed_surplus_signs():
    # candidates 100, 101 (surplus +5), 103, 105 (surplus -5); volume 10 everywhere
    buys, sells = [(105, 10), (101, 5)], [(100, 10), (103, 5)]
    assert uncross(buys, sells, reference=101) == UncrossResult(101, 10, 5)
    assert uncross(buys, sells, reference=104) == UncrossResult(104, 10, -5)
    assert uncross(buys, sells, reference=200) == UncrossResult(105, 10, -5)
    assert uncross(buys, sells, reference=1) == UncrossResult(100, 10, 5)


def test_rule4_without_reference_takes_candidate_closest_to_midpoint():
    buys, sells = [(105, 10), (101, 5)], [(100, 10), (103, 5)]
    # midpoint of 100..105 is 102.5: 103 (0.5) beats 101 (1.5)
    assert uncross(buys, sells) == UncrossResult(103, 10, -5)
    # a non-positive reference counts as none
    assert uncross(buys, sells, reference=0) == UncrossResult(103, 10, -5)


def test_rule4_exact_midpoint_tie_takes_lower_price():
    assert uncross([(101, 10)], [(100, 10)]) == UncrossResult(100, 10, 0)
    assert uncross([(103, 10)], [(100, 10)]) == UncrossResult(100, 10, 0)
    # 100, 101 (+5), 103, 104 (-5): midpoint 102, 101 and 103 tie
    buys, sells = [(104, 10), (101, 5)], [(100, 10), (103, 5)]
    assert uncross(buys, sells) == UncrossResult(101, 10, 5)


def test_nothing_crosses_gives_zero_volume():
    assert uncross([(99, 10)], [(100, 10)]) == UncrossResult(0, 0, 0)
    assert uncross([(99, 10)], [(100, 10)], reference=99) == UncrossResult(0, 0, 0)
    assert uncross([], [(100, 10)]) == UncrossResult(0, 0, 0)
    assert uncross([(100, 10)], []) == UncrossResult(0, 0, 0)
    assert uncross([], []) == UncrossResult(0, 0, 0)


def test_market_orders_count_at_every_price():
    # D = 10 everywhere; S(100) = 10, S(101) = 20
    assert uncross([(MB, 10)], [(100, 10), (101, 10)]) == UncrossResult(100, 10, 0)
    assert uncross([(100, 3)], [(MS, 10)]) == UncrossResult(100, 3, -7)


def test_only_market_orders_need_a_reference():
    assert uncross([(MB, 10)], [(MS, 7)]) == UncrossResult(0, 0, 0)
    assert uncross([(MB, 10)], [(MS, 7)], reference=100) == UncrossResult(100, 7, 3)


# ---------------------------------------------------------------- execution in the book


def call_book(orders, reference=None):
    book = OrderBook(phase=Phase.CALL, reference_price=reference)
    for oid, side, price, size, agent in orders:
        book.submit(0, oid, side, price, size, agent, MARKET if price is None else 0)
    book.drain_events()
    return book


def test_uncross_executes_at_one_price_in_price_time_priority():
    book = call_book(
        [
            (1, SELL, 100, 5, 11),
            (2, SELL, 100, 5, 12),
            (3, SELL, 101, 10, 13),
            (4, BUY, 102, 8, 14),
            (5, BUY, 101, 4, 15),
            (6, BUY, 100, 6, 16),
        ]
    )
    # D(100)=18 S=10 -> 10; D(101)=12 S=20 -> 12; D(102)=8 -> 8
    assert book.indicative_uncross() == UncrossResult(101, 12, -8)
    assert book.uncross(7) == UncrossResult(101, 12, -8)
    _, events = book.drain_events()
    assert events == [
        (7, AUCTION, NO_ID, 0, 101, 12, NO_ID, NO_ID, NO_ID, None),
        (7, TRADE, 1, SELL, 101, 5, 11, 4, 14, None),
        (7, TRADE, 2, SELL, 101, 3, 12, 4, 14, None),
        (7, TRADE, 2, SELL, 101, 2, 12, 5, 15, None),
        (7, TRADE, 3, SELL, 101, 2, 13, 5, 15, None),
        (7, PHASE, NO_ID, 0, 0, 0, NO_ID, NO_ID, NO_ID, "continuous"),
    ]
    assert book.levels(SELL) == [(101, 8)] and book.levels(BUY) == [(100, 6)]
    assert book.last_trade_price == 101
    assert book.phase == Phase.CONTINUOUS
    book.check_invariants()


def test_uncross_fifo_within_a_level_and_partial_fill_stays():
    book = call_book(
        [
            (1, BUY, 100, 4, 11),
            (2, BUY, 100, 4, 12),
            (3, BUY, 100, 4, 13),
            (4, SELL, 100, 6, 14),
        ]
    )
    assert book.uncross(1, Phase.CALL) == UncrossResult(100, 6, 6)
    _, events = book.drain_events()
    assert events[1:3] == [
        (1, TRADE, 4, SELL, 100, 4, 14, 1, 11, None),
        (1, TRADE, 4, SELL, 100, 2, 14, 2, 12, None),
    ]
    assert book.level_queue(BUY, 100) == [(2, 2), (3, 4)]
    assert book.phase == Phase.CALL


def test_last_trade_price_is_the_next_reference():
    book = call_book([(1, BUY, 105, 10, 1), (2, SELL, 100, 10, 2)], reference=50)
    assert book.uncross(1).price == 100  # closest to 50
    book.open_call(2)
    for oid, side, price in [(3, BUY, 105), (4, SELL, 100)]:
        book.submit(3, oid, side, price, 10, 1)
    assert book.uncross(4).price == 100  # last trade 100 beats reference 50
    book.open_call(5)
    book.last_trade_price = 103
    for oid, side, price in [(5, BUY, 105), (6, SELL, 100)]:
        book.submit(6, oid, side, price, 10, 1)
    assert book.uncross(7).price == 103


def naive_uncross(orders, reference):
    """The four documented rules, applied literally. orders: (side, price|None, size)."""

    def demand(p):
        return sum(s for side, q, s in orders if side == BUY and (q is None or q >= p))

    def supply(p):
        return sum(s for side, q, s in orders if side == SELL and (q is None or q <= p))

    cands = {q for _, q, _ in orders if q is not None}
    if reference is not None and reference > 0:
        cands.add(reference)
    if not any(o[0] == BUY for o in orders) or not any(o[0] == SELL for o in orders):
        return UncrossResult(0, 0, 0)
    rows = [(p, min(demand(p), supply(p)), demand(p) - supply(p)) for p in sorted(cands)]
    if not rows or max(r[1] for r in rows) == 0:
        return UncrossResult(0, 0, 0)
    best_vol = max(r[1] for r in rows)
    rows = [r for r in rows if r[1] == best_vol]  # rule 1
    min_abs = min(abs(r[2]) for r in rows)
    rows = [r for r in rows if abs(r[2]) == min_abs]  # rule 2
    if all(r[2] > 0 for r in rows):  # rule 3
        chosen = max(rows)
    elif all(r[2] < 0 for r in rows):
        chosen = min(rows)
    else:  # rule 4
        if reference is not None and reference > 0:
            target2 = 2 * reference
        else:
            target2 = rows[0][0] + rows[-1][0]  # twice the midpoint, in exact integers
        chosen = min(rows, key=lambda r: (abs(2 * r[0] - target2), r[0]))
    return UncrossResult(chosen[0], best_vol, chosen[2])


def random_orders(rng):
    n = int(rng.integers(0, 9))
    orders = []
    lo = int(rng.integers(90, 100))
    width = int(rng.integers(1, 12))
    for _ in range(n):
        side = BUY if rng.random() < 0.5 else SELL
        price = None if rng.random() < 0.1 else int(rng.integers(lo, lo + width))
        orders.append((side, price, int(rng.integers(1, 8))))
    return orders


def to_levels(orders):
    """Aggregate into the (price, size) lists the book passes, best first."""
    agg: dict[tuple[int, int], int] = {}
    for side, price, size in orders:
        p = (MB if side == BUY else MS) if price is None else price
        agg[(side, p)] = agg.get((side, p), 0) + size
    buys = sorted(((p, s) for (side, p), s in agg.items() if side == BUY), reverse=True)
    sells = sorted((p, s) for (side, p), s in agg.items() if side == SELL)
    return buys, sells


@pytest.mark.parametrize("seed", range(4))
def test_brute_force_cross_check(seed):
    rng = np.random.default_rng(seed)
    checked = traded = ties = 0
    for _ in range(3000):
        orders = random_orders(rng)
        r = rng.random()
        reference = None if r < 0.4 else (0 if r < 0.45 else int(rng.integers(88, 112)))
        buys, sells = to_levels(orders)
        got = find_uncross_price(buys, sells, reference, MB, MS)
        want = naive_uncross(orders, reference)
        assert got == want, (orders, reference)
        checked += 1
        traded += got.volume > 0
        ties += got.volume > 0 and got.surplus == 0
    assert checked == 3000
    assert traded > 1000 and ties > 100  # the generator really exercises the rules


def priority_key(orders, oid):
    """Sort key of an order in the auction: best price first, then arrival (= oid)."""
    side, price, _ = orders[oid]
    p = (MB if side == BUY else MS) if price is None else price
    return (p if side == SELL else -p, oid)


@pytest.mark.parametrize("seed", range(3))
def test_random_book_uncross_executes_correctly(seed):
    """Random call books through the book: fills sum to the volume, all at the price,
    priority respected, and the book is not crossed afterwards."""
    rng = np.random.default_rng(100 + seed)
    for _ in range(300):
        orders = random_orders(rng)
        reference = None if rng.random() < 0.5 else int(rng.integers(88, 112))
        book = OrderBook(phase=Phase.CALL, reference_price=reference)
        for oid, (side, price, size) in enumerate(orders):
            book.submit(0, oid, side, price or 0, size, 100 + oid, MARKET if price is None else 0)
        book.drain_events()
        want = naive_uncross(orders, reference)
        result = book.uncross(1)
        assert result == want
        _, events = book.drain_events()
        assert events[-1][1] == PHASE
        if want.volume == 0:
            assert AUCTION not in [e[1] for e in events]
            assert TRADE not in [e[1] for e in events]
        else:
            assert events[0] == (
                1,
                AUCTION,
                NO_ID,
                0,
                want.price,
                want.volume,
                NO_ID,
                NO_ID,
                NO_ID,
                None,
            )
            fills = [e for e in events if e[1] == TRADE]
            assert events[1 : 1 + len(fills)] == fills
            assert sum(e[5] for e in fills) == want.volume
            assert all(e[4] == want.price and e[3] == SELL for e in fills)
            # priority: sells filled lowest price first, FIFO (oid order) within a price
            sell_keys = [priority_key(orders, e[2]) for e in fills]
            buy_keys = [priority_key(orders, e[7]) for e in fills]
            assert sell_keys == sorted(sell_keys) and buy_keys == sorted(buy_keys)
            # the volume is min(demand, supply): one side is used up at the price
            left = [book.order(oid) for oid in range(len(orders)) if oid in book]
            assert not any(o[0] == BUY and o[1] >= want.price for o in left) or not any(
                o[0] == SELL and o[1] <= want.price for o in left
            )
        book.check_invariants()
        bid, ask = book.best_bid(), book.best_ask()
        assert bid is None or ask is None or bid < ask
        assert book.phase == Phase.CONTINUOUS
