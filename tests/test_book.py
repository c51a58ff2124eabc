"""Unit tests of OrderBook behaviour: exact event tuples and exact book state."""

from __future__ import annotations

import numpy as np
import pytest

from mars_ray.exchange.auction import UncrossResult
from mars_ray.exchange.book import MARKET_BUY_PRICE, OrderBook
from mars_ray.exchange.compiled_book import CompiledOrderBook
from mars_ray.schema.events import NO_ID, NO_PRICE, ROW_FIELDS, EventType, OrderType
from mars_ray.schema.phases import Phase

BUY, SELL = 1, -1
LIMIT, MARKET, IOC = int(OrderType.LIMIT), int(OrderType.MARKET), int(OrderType.IOC)

SUBMIT = int(EventType.SUBMIT)
CANCEL = int(EventType.CANCEL)
MODIFY = int(EventType.MODIFY)
TRADE = int(EventType.TRADE)
REJECT = int(EventType.REJECT)
AUCTION = int(EventType.AUCTION)
HALT = int(EventType.HALT)
RESUME = int(EventType.RESUME)
PHASE = int(EventType.PHASE)
HIDDEN = int(EventType.HIDDEN_TRADE)


def ev(t, etype, oid, side, price, size, agent=NO_ID, coid=NO_ID, cagent=NO_ID, reason=None):
    return (t, etype, oid, side, price, size, agent, coid, cagent, reason)


def trade(t, rid, rside, price, size, ragent, aid, aagent):
    """A TRADE event: order_id/side/agent of the resting (auction: sell) order."""
    return (t, TRADE, rid, rside, price, size, ragent, aid, aagent, None)


def phase_ev(t, name):
    return (t, PHASE, NO_ID, 0, NO_PRICE, 0, NO_ID, NO_ID, NO_ID, name)


def drain(book: OrderBook) -> list[tuple]:
    return book.drain_events()[1]


def make(*orders, phase=Phase.CONTINUOUS, reference=None, book_type=OrderBook):
    """A book with resting orders (oid, side, price, size, agent), events drained."""
    book = book_type(phase=phase, reference_price=reference)
    for oid, side, price, size, agent in orders:
        book.submit(0, oid, side, price, size, agent)
    drain(book)
    book.check_invariants()
    return book


def test_event_tuple_width_matches_schema():
    book = OrderBook()
    book.submit(1, 1, BUY, 100, 10, 7)
    (event,) = drain(book)
    assert len(event) == len([f for f in ROW_FIELDS if f != "seq"])


# ---------------------------------------------------------------- resting, priority


def test_default_phase_is_continuous():
    assert OrderBook().phase == Phase.CONTINUOUS


def test_limit_order_rests_and_emits_submit():
    book = OrderBook()
    book.submit(5, 1, BUY, 100, 10, 7)
    assert drain(book) == [ev(5, SUBMIT, 1, BUY, 100, 10, 7)]
    assert book.order(1) == (BUY, 100, 10, 7)
    assert 1 in book and len(book) == 1
    assert book.best_bid() == 100 and book.best_ask() is None
    assert book.levels(BUY) == [(100, 10)] and book.levels(SELL) == []
    assert book.last_trade_price is None
    book.check_invariants()


def test_non_crossing_orders_do_not_trade():
    book = make((1, SELL, 101, 5, 1))
    book.submit(2, 2, BUY, 100, 5, 2)
    assert drain(book) == [ev(2, SUBMIT, 2, BUY, 100, 5, 2)]
    assert book.best_bid() == 100 and book.best_ask() == 101
    assert book.last_trade_price is None


def test_better_price_trades_first_at_resting_price():
    book = make((1, SELL, 101, 5, 11), (2, SELL, 100, 5, 12), (3, SELL, 102, 5, 13))
    book.submit(9, 4, BUY, 101, 10, 14)
    assert drain(book) == [
        ev(9, SUBMIT, 4, BUY, 101, 10, 14),
        trade(9, 2, SELL, 100, 5, 12, 4, 14),
        trade(9, 1, SELL, 101, 5, 11, 4, 14),
    ]
    assert book.levels(SELL) == [(102, 5)]
    assert book.levels(BUY) == []
    assert 4 not in book and 1 not in book and 2 not in book
    assert book.last_trade_price == 101
    book.check_invariants()


def test_better_bid_trades_first_for_sell_aggressor():
    book = make((1, BUY, 99, 5, 11), (2, BUY, 100, 5, 12))
    book.submit(3, 3, SELL, 99, 7, 13)
    assert drain(book) == [
        ev(3, SUBMIT, 3, SELL, 99, 7, 13),
        trade(3, 2, BUY, 100, 5, 12, 3, 13),
        trade(3, 1, BUY, 99, 2, 11, 3, 13),
    ]
    assert book.order(1) == (BUY, 99, 3, 11)
    assert 3 not in book
    assert book.last_trade_price == 99


def test_fifo_within_a_level():
    book = make((1, SELL, 100, 3, 11), (2, SELL, 100, 4, 12), (3, SELL, 100, 5, 13))
    book.submit(1, 4, BUY, 100, 8, 14)
    assert drain(book) == [
        ev(1, SUBMIT, 4, BUY, 100, 8, 14),
        trade(1, 1, SELL, 100, 3, 11, 4, 14),
        trade(1, 2, SELL, 100, 4, 12, 4, 14),
        trade(1, 3, SELL, 100, 1, 13, 4, 14),
    ]
    assert book.level_queue(SELL, 100) == [(3, 4)]
    assert book.depth_at(SELL, 100) == 4
    book.check_invariants()


def test_partially_filled_resting_order_keeps_head_of_queue():
    book = make((1, BUY, 100, 10, 11), (2, BUY, 100, 10, 12))
    book.submit(1, 3, SELL, 100, 4, 13)
    assert drain(book)[1:] == [trade(1, 1, BUY, 100, 4, 11, 3, 13)]
    assert book.level_queue(BUY, 100) == [(1, 6), (2, 10)]
    book.submit(2, 4, SELL, 100, 7, 14)
    assert drain(book)[1:] == [
        trade(2, 1, BUY, 100, 6, 11, 4, 14),
        trade(2, 2, BUY, 100, 1, 12, 4, 14),
    ]
    assert book.level_queue(BUY, 100) == [(2, 9)]


def test_partially_filled_aggressor_rests_remainder_at_its_limit():
    book = make((1, SELL, 100, 5, 11))
    book.submit(1, 2, BUY, 101, 8, 12)
    assert drain(book) == [
        ev(1, SUBMIT, 2, BUY, 101, 8, 12),
        trade(1, 1, SELL, 100, 5, 11, 2, 12),
    ]
    assert book.order(2) == (BUY, 101, 3, 12)
    assert book.best_bid() == 101 and book.best_ask() is None
    book.check_invariants()


def test_aggressor_stops_at_its_limit():
    book = make((1, SELL, 100, 5, 11), (2, SELL, 102, 5, 12))
    book.submit(1, 3, BUY, 101, 8, 13)
    assert drain(book)[1:] == [trade(1, 1, SELL, 100, 5, 11, 3, 13)]
    assert book.levels(BUY) == [(101, 3)]
    assert book.levels(SELL) == [(102, 5)]


# ---------------------------------------------------------------- market and IOC


def test_market_buy_sweeps_levels_and_cancels_rest():
    book = make((1, SELL, 100, 2, 11), (2, SELL, 101, 3, 12))
    book.submit(4, 3, BUY, 55, 10, 13, MARKET)  # the price of a market order is ignored
    assert drain(book) == [
        ev(4, SUBMIT, 3, BUY, NO_PRICE, 10, 13),
        trade(4, 1, SELL, 100, 2, 11, 3, 13),
        trade(4, 2, SELL, 101, 3, 12, 3, 13),
        ev(4, CANCEL, 3, BUY, NO_PRICE, 5, 13, reason="market_unfilled"),
    ]
    assert len(book) == 0 and 3 not in book
    assert book.last_trade_price == 101
    book.check_invariants()


def test_market_sell_fully_filled_has_no_cancel():
    book = make((1, BUY, 100, 2, 11), (2, BUY, 90, 30, 12))
    book.submit(4, 3, SELL, 0, 10, 13, MARKET)
    assert drain(book) == [
        ev(4, SUBMIT, 3, SELL, NO_PRICE, 10, 13),
        trade(4, 1, BUY, 100, 2, 11, 3, 13),
        trade(4, 2, BUY, 90, 8, 12, 3, 13),
    ]
    assert book.order(2) == (BUY, 90, 22, 12)
    assert 3 not in book


def test_market_order_on_empty_side_is_cancelled_whole():
    book = make((1, BUY, 100, 2, 11))
    book.submit(4, 3, BUY, 0, 6, 13, MARKET)
    assert drain(book) == [
        ev(4, SUBMIT, 3, BUY, NO_PRICE, 6, 13),
        ev(4, CANCEL, 3, BUY, NO_PRICE, 6, 13, reason="market_unfilled"),
    ]
    assert book.levels(BUY) == [(100, 2)]


def test_ioc_partial_fill_cancels_rest():
    book = make((1, SELL, 100, 4, 11), (2, SELL, 101, 4, 12))
    book.submit(3, 3, BUY, 100, 6, 13, IOC)
    assert drain(book) == [
        ev(3, SUBMIT, 3, BUY, 100, 6, 13),
        trade(3, 1, SELL, 100, 4, 11, 3, 13),
        ev(3, CANCEL, 3, BUY, 100, 2, 13, reason="ioc_unfilled"),
    ]
    assert 3 not in book
    assert book.levels(SELL) == [(101, 4)] and book.levels(BUY) == []


def test_ioc_not_crossing_is_cancelled_whole():
    book = make((1, BUY, 100, 4, 11))
    book.submit(3, 3, SELL, 101, 6, 13, IOC)
    assert drain(book) == [
        ev(3, SUBMIT, 3, SELL, 101, 6, 13),
        ev(3, CANCEL, 3, SELL, 101, 6, 13, reason="ioc_unfilled"),
    ]
    assert book.levels(SELL) == [] and book.levels(BUY) == [(100, 4)]


def test_ioc_fully_filled_has_no_cancel():
    book = make((1, BUY, 100, 4, 11))
    book.submit(3, 3, SELL, 100, 3, 13, IOC)
    assert drain(book) == [
        ev(3, SUBMIT, 3, SELL, 100, 3, 13),
        trade(3, 1, BUY, 100, 3, 11, 3, 13),
    ]
    assert book.order(1) == (BUY, 100, 1, 11)


# ---------------------------------------------------------------- cancel, duplicates


def test_full_cancel():
    book = make((1, BUY, 100, 4, 11), (2, BUY, 100, 6, 12))
    book.cancel(7, 1)
    assert drain(book) == [ev(7, CANCEL, 1, BUY, 100, 4, 11)]
    assert 1 not in book
    assert book.level_queue(BUY, 100) == [(2, 6)]
    assert book.depth_at(BUY, 100) == 6
    book.cancel(8, 2, 0)
    assert drain(book) == [ev(8, CANCEL, 2, BUY, 100, 6, 12)]
    assert len(book) == 0 and book.levels(BUY) == [] and book.best_bid() is None
    book.check_invariants()


def test_partial_cancel_keeps_queue_position():
    book = make((1, SELL, 100, 10, 11), (2, SELL, 100, 5, 12))
    book.cancel(7, 1, 4, agent=11)
    assert drain(book) == [ev(7, CANCEL, 1, SELL, 100, 4, 11)]
    assert book.level_queue(SELL, 100) == [(1, 6), (2, 5)]
    assert book.depth_at(SELL, 100) == 11
    book.check_invariants()


def test_cancel_of_at_least_the_resting_size_cancels_all():
    book = make((1, SELL, 100, 10, 11))
    book.cancel(7, 1, 25)
    assert drain(book) == [ev(7, CANCEL, 1, SELL, 100, 10, 11)]
    assert len(book) == 0


def test_cancel_of_exactly_the_resting_size_removes_the_order():
    book = make((1, SELL, 100, 10, 11), (2, SELL, 100, 3, 12))
    book.cancel(7, 1, 10)
    assert drain(book) == [ev(7, CANCEL, 1, SELL, 100, 10, 11)]
    assert 1 not in book
    assert book.level_queue(SELL, 100) == [(2, 3)]
    book.check_invariants()


def test_cancel_event_names_the_owner():
    book = make((1, SELL, 100, 10, 11))
    book.cancel(7, 1, 0, agent=99)
    assert drain(book) == [ev(7, CANCEL, 1, SELL, 100, 10, 11)]


def test_cancel_unknown_order_is_rejected():
    book = make((1, SELL, 100, 10, 11))
    book.cancel(7, 42, 3, agent=5)
    assert drain(book) == [ev(7, REJECT, 42, 0, NO_PRICE, 3, 5, reason="unknown_order")]
    book.cancel(8, 1)
    book.cancel(9, 1)  # already gone
    assert drain(book) == [
        ev(8, CANCEL, 1, SELL, 100, 10, 11),
        ev(9, REJECT, 1, 0, NO_PRICE, 0, NO_ID, reason="unknown_order"),
    ]


def test_duplicate_live_order_id_is_rejected():
    book = make((1, SELL, 100, 10, 11))
    book.submit(3, 1, BUY, 100, 4, 12)
    assert drain(book) == [ev(3, REJECT, 1, BUY, 100, 4, 12, reason="duplicate_order_id")]
    assert book.order(1) == (SELL, 100, 10, 11)
    assert book.levels(BUY) == []


# ---------------------------------------------------------------- modify


def test_modify_size_down_keeps_queue_position():
    book = make((1, SELL, 100, 5, 11), (2, SELL, 100, 5, 12))
    book.modify(3, 1, None, 3, agent=11)
    assert drain(book) == [ev(3, MODIFY, 1, SELL, 100, 3, 11)]
    assert book.level_queue(SELL, 100) == [(1, 3), (2, 5)]
    assert book.depth_at(SELL, 100) == 8
    book.check_invariants()
    book.submit(4, 3, BUY, 100, 4, 13)
    assert drain(book)[1:] == [
        trade(4, 1, SELL, 100, 3, 11, 3, 13),
        trade(4, 2, SELL, 100, 1, 12, 3, 13),
    ]


def test_modify_same_price_given_explicitly_and_same_size_keeps_position():
    book = make((1, BUY, 100, 5, 11), (2, BUY, 100, 5, 12))
    book.modify(3, 1, 100, 5)
    book.modify(4, 1, 100, 2)
    assert drain(book) == [
        ev(3, MODIFY, 1, BUY, 100, 5, 11),
        ev(4, MODIFY, 1, BUY, 100, 2, 11),
    ]
    assert book.level_queue(BUY, 100) == [(1, 2), (2, 5)]


def test_modify_size_up_loses_queue_position():
    book = make((1, SELL, 100, 5, 11), (2, SELL, 100, 5, 12))
    book.modify(3, 1, None, 8)
    assert drain(book) == [ev(3, MODIFY, 1, SELL, 100, 8, 11)]
    assert book.level_queue(SELL, 100) == [(2, 5), (1, 8)]
    assert book.depth_at(SELL, 100) == 13
    book.check_invariants()
    book.submit(4, 3, BUY, 100, 6, 13)
    assert drain(book)[1:] == [
        trade(4, 2, SELL, 100, 5, 12, 3, 13),
        trade(4, 1, SELL, 100, 1, 11, 3, 13),
    ]


def test_modify_price_loses_queue_position():
    book = make((1, SELL, 100, 5, 11), (2, SELL, 101, 5, 12))
    book.modify(3, 1, 101, 5)
    assert drain(book) == [ev(3, MODIFY, 1, SELL, 101, 5, 11)]
    assert book.level_queue(SELL, 101) == [(2, 5), (1, 5)]
    assert book.levels(SELL) == [(101, 10)]
    assert book.order(1) == (SELL, 101, 5, 11)
    book.check_invariants()


def test_modify_price_and_back_still_loses_position():
    book = make((1, BUY, 100, 5, 11), (2, BUY, 100, 5, 12))
    book.modify(3, 1, 99, 5)
    book.modify(4, 1, 100, 5)
    drain(book)
    assert book.level_queue(BUY, 100) == [(2, 5), (1, 5)]


def test_modify_to_crossing_price_trades_at_once():
    book = make((1, BUY, 99, 5, 11), (2, SELL, 101, 8, 12))
    book.modify(3, 2, 99, 8, agent=12)
    assert drain(book) == [
        ev(3, MODIFY, 2, SELL, 99, 8, 12),
        trade(3, 1, BUY, 99, 5, 11, 2, 12),
    ]
    assert book.order(2) == (SELL, 99, 3, 12)
    assert book.levels(BUY) == [] and book.levels(SELL) == [(99, 3)]
    assert book.last_trade_price == 99
    book.check_invariants()


def test_modify_to_crossing_price_fully_filled_leaves_book():
    book = make((1, BUY, 100, 5, 11), (2, SELL, 101, 3, 12))
    book.modify(3, 2, 98, 3)
    assert drain(book) == [
        ev(3, MODIFY, 2, SELL, 98, 3, 12),
        trade(3, 1, BUY, 100, 3, 11, 2, 12),
    ]
    assert 2 not in book
    assert book.order(1) == (BUY, 100, 2, 11)


def test_modify_unknown_order_is_rejected():
    book = make((1, BUY, 100, 5, 11))
    book.modify(3, 42, 100, 5, agent=7)
    book.modify(4, 43, None, 6, agent=7)
    assert drain(book) == [
        ev(3, REJECT, 42, 0, 100, 5, 7, reason="unknown_order"),
        ev(4, REJECT, 43, 0, NO_PRICE, 6, 7, reason="unknown_order"),
    ]


def test_modify_in_call_phase_does_not_trade():
    book = make((1, BUY, 99, 5, 11), (2, SELL, 101, 5, 12), phase=Phase.CALL)
    book.modify(3, 2, 98, 5)
    assert drain(book) == [ev(3, MODIFY, 2, SELL, 98, 5, 12)]
    assert book.best_bid() == 99 and book.best_ask() == 98
    book.check_invariants()


# ---------------------------------------------------------------- phases


def test_closed_book_rejects_orders_and_modifies():
    book = make((1, BUY, 100, 5, 11))
    book.close(2)
    book.submit(3, 2, SELL, 100, 5, 12)
    book.submit(4, 3, SELL, 0, 5, 12, MARKET)
    book.modify(5, 1, 101, 5, agent=11)
    assert drain(book) == [
        phase_ev(2, "closed"),
        ev(3, REJECT, 2, SELL, 100, 5, 12, reason="market_closed"),
        ev(4, REJECT, 3, SELL, 0, 5, 12, reason="market_closed"),
        ev(5, REJECT, 1, BUY, 100, 5, 11, reason="market_closed"),
    ]
    assert book.phase == Phase.CLOSED
    assert book.order(1) == (BUY, 100, 5, 11)
    assert OrderBook(phase=Phase.CLOSED).phase == Phase.CLOSED


def test_halt_rejects_submits_and_modifies_but_lets_cancels_through():
    book = make((1, BUY, 99, 5, 11), (2, SELL, 101, 5, 12), (3, BUY, 98, 5, 13))
    book.halt(10)
    assert book.phase == Phase.HALTED
    book.submit(11, 4, BUY, 101, 5, 14)
    book.modify(12, 3, 101, 5, agent=13)
    book.cancel(13, 1)
    assert drain(book) == [
        (10, HALT, NO_ID, 0, NO_PRICE, 0, NO_ID, NO_ID, NO_ID, None),
        ev(11, REJECT, 4, BUY, 101, 5, 14, reason="halted"),
        ev(12, REJECT, 3, BUY, 98, 5, 13, reason="halted"),
        ev(13, CANCEL, 1, BUY, 99, 5, 11),
    ]
    assert 4 not in book and 1 not in book
    assert book.order(3) == (BUY, 98, 5, 13)


def test_halt_resume_quotes_then_resume_trading_uncrosses():
    book = make((1, BUY, 99, 5, 11), (2, SELL, 101, 5, 12))
    book.halt(10)
    book.cancel(11, 1)
    book.resume_quotes(12)
    assert book.phase == Phase.CALL
    book.submit(13, 3, BUY, 102, 4, 13)  # crosses, but only rests in the call
    assert book.best_bid() == 102 and book.best_ask() == 101
    book.check_invariants()
    assert book.indicative_uncross() == UncrossResult(101, 4, -1)
    result = book.resume_trading(14)
    assert result == UncrossResult(101, 4, -1)
    assert drain(book) == [
        (10, HALT, NO_ID, 0, NO_PRICE, 0, NO_ID, NO_ID, NO_ID, None),
        ev(11, CANCEL, 1, BUY, 99, 5, 11),
        (12, RESUME, NO_ID, 0, NO_PRICE, 0, NO_ID, NO_ID, NO_ID, "quote"),
        ev(13, SUBMIT, 3, BUY, 102, 4, 13),
        (14, RESUME, NO_ID, 0, NO_PRICE, 0, NO_ID, NO_ID, NO_ID, "trade"),
        (14, AUCTION, NO_ID, 0, 101, 4, NO_ID, NO_ID, NO_ID, None),
        trade(14, 2, SELL, 101, 4, 12, 3, 13),
        phase_ev(14, "continuous"),
    ]
    assert book.phase == Phase.CONTINUOUS
    assert book.order(2) == (SELL, 101, 1, 12)
    assert 3 not in book
    assert book.last_trade_price == 101
    book.check_invariants()


def test_resume_trading_with_nothing_crossed_only_changes_phase():
    book = make((1, BUY, 99, 5, 11), (2, SELL, 101, 5, 12))
    book.halt(1)
    result = book.resume_trading(2)
    assert result == UncrossResult(0, 0, 0)
    assert drain(book)[1:] == [
        (2, RESUME, NO_ID, 0, NO_PRICE, 0, NO_ID, NO_ID, NO_ID, "trade"),
        phase_ev(2, "continuous"),
    ]
    assert book.phase == Phase.CONTINUOUS
    assert book.levels(BUY) == [(99, 5)] and book.levels(SELL) == [(101, 5)]


def test_call_phase_orders_rest_without_matching():
    book = OrderBook()
    book.open_call(1)
    assert book.phase == Phase.CALL
    book.submit(2, 1, SELL, 99, 5, 11)
    book.submit(3, 2, BUY, 101, 5, 12)
    assert drain(book) == [
        phase_ev(1, "call"),
        ev(2, SUBMIT, 1, SELL, 99, 5, 11),
        ev(3, SUBMIT, 2, BUY, 101, 5, 12),
    ]
    assert book.best_bid() == 101 and book.best_ask() == 99
    assert book.last_trade_price is None
    book.check_invariants()


def test_ioc_during_call_is_rejected():
    book = make((1, SELL, 100, 5, 11), phase=Phase.CALL)
    book.submit(2, 2, BUY, 100, 5, 12, IOC)
    assert drain(book) == [ev(2, REJECT, 2, BUY, 100, 5, 12, reason="ioc_during_call")]
    assert 2 not in book


def test_market_orders_take_part_in_the_uncross_and_rest_is_cancelled():
    book = OrderBook(phase=Phase.CALL)
    book.submit(1, 1, BUY, 0, 10, 11, MARKET)
    book.submit(2, 2, SELL, 100, 3, 12)
    book.submit(3, 3, SELL, 101, 2, 13)
    book.submit(4, 4, SELL, 103, 2, 14)
    assert drain(book)[0] == ev(1, SUBMIT, 1, BUY, NO_PRICE, 10, 11)
    assert book.best_bid() is None  # the market order is not a visible level
    assert book.levels(BUY) == []
    assert book.order(1) == (BUY, MARKET_BUY_PRICE, 10, 11)
    # D = 10 at every price; S(100)=3, S(101)=5, S(103)=7 -> 103
    result = book.uncross(5)
    assert result == UncrossResult(103, 7, 3)
    assert drain(book) == [
        (5, AUCTION, NO_ID, 0, 103, 7, NO_ID, NO_ID, NO_ID, None),
        trade(5, 2, SELL, 103, 3, 12, 1, 11),
        trade(5, 3, SELL, 103, 2, 13, 1, 11),
        trade(5, 4, SELL, 103, 2, 14, 1, 11),
        ev(5, CANCEL, 1, BUY, NO_PRICE, 3, 11, reason="auction_market_unfilled"),
        phase_ev(5, "continuous"),
    ]
    assert len(book) == 0
    book.check_invariants()


def test_market_sell_in_call_fills_first_and_rest_is_cancelled():
    book = OrderBook(phase=Phase.CALL)
    book.submit(1, 1, BUY, 100, 2, 11)
    book.submit(2, 2, SELL, 0, 5, 12, MARKET)
    book.submit(3, 3, SELL, 99, 1, 13)
    drain(book)
    # D(99)=D(100)=2, S=6 at both: sell pressure -> lowest price 99
    assert book.uncross(4) == UncrossResult(99, 2, -4)
    assert drain(book) == [
        (4, AUCTION, NO_ID, 0, 99, 2, NO_ID, NO_ID, NO_ID, None),
        trade(4, 2, SELL, 99, 2, 12, 1, 11),
        ev(4, CANCEL, 2, SELL, NO_PRICE, 3, 12, reason="auction_market_unfilled"),
        phase_ev(4, "continuous"),
    ]
    assert book.levels(SELL) == [(99, 1)] and book.levels(BUY) == []


def test_only_market_orders_without_reference_do_not_trade_and_are_cancelled():
    book = OrderBook(phase=Phase.CALL)
    book.submit(1, 1, SELL, 0, 5, 12, MARKET)
    book.submit(2, 2, BUY, 0, 4, 11, MARKET)
    drain(book)
    assert book.uncross(3, Phase.CALL) == UncrossResult(0, 0, 0)
    assert drain(book) == [
        ev(3, CANCEL, 2, BUY, NO_PRICE, 4, 11, reason="auction_market_unfilled"),
        ev(3, CANCEL, 1, SELL, NO_PRICE, 5, 12, reason="auction_market_unfilled"),
        phase_ev(3, "call"),
    ]
    assert book.phase == Phase.CALL and len(book) == 0


def test_only_market_orders_trade_at_the_reference_price():
    book = OrderBook(phase=Phase.CALL, reference_price=100)
    book.submit(1, 1, SELL, 0, 5, 12, MARKET)
    book.submit(2, 2, BUY, 0, 4, 11, MARKET)
    drain(book)
    assert book.uncross(3) == UncrossResult(100, 4, -1)
    assert drain(book) == [
        (3, AUCTION, NO_ID, 0, 100, 4, NO_ID, NO_ID, NO_ID, None),
        trade(3, 1, SELL, 100, 4, 12, 2, 11),
        ev(3, CANCEL, 1, SELL, NO_PRICE, 1, 12, reason="auction_market_unfilled"),
        phase_ev(3, "continuous"),
    ]


def test_cancel_and_modify_of_market_order_in_call_show_no_price():
    book = OrderBook(phase=Phase.CALL)
    book.submit(1, 1, BUY, 0, 5, 11, MARKET)
    book.submit(2, 2, BUY, 0, 5, 11, MARKET)
    book.modify(3, 1, None, 3)
    book.cancel(4, 2, 2)
    assert drain(book)[2:] == [
        ev(3, MODIFY, 1, BUY, NO_PRICE, 3, 11),
        ev(4, CANCEL, 2, BUY, NO_PRICE, 2, 11),
    ]
    assert book.level_queue(BUY, MARKET_BUY_PRICE) == [(1, 3), (2, 3)]


def test_reject_of_modify_of_market_order_while_halted_shows_no_price():
    book = OrderBook(phase=Phase.CALL)
    book.submit(1, 1, BUY, 0, 5, 11, MARKET)
    book.halt(2)
    book.modify(3, 1, None, 3, agent=11)
    assert drain(book)[-1] == ev(3, REJECT, 1, BUY, NO_PRICE, 3, 11, reason="halted")


# ---------------------------------------------------------------- snapshot


def test_snapshot_layout_and_empty_levels():
    book = make(
        (1, SELL, 101, 2, 1),
        (2, SELL, 101, 3, 1),
        (3, SELL, 102, 4, 1),
        (4, BUY, 100, 6, 1),
        (5, BUY, 98, 1, 1),
        (6, BUY, 97, 2, 1),
    )
    snap = book.snapshot(2)
    assert snap.dtype == np.int64 and snap.shape == (2, 4)
    assert snap.tolist() == [[101, 5, 100, 6], [102, 4, 98, 1]]
    assert book.snapshot(4).tolist() == [
        [101, 5, 100, 6],
        [102, 4, 98, 1],
        [0, 0, 97, 2],
        [0, 0, 0, 0],
    ]
    assert book.snapshot(0).shape == (0, 4)
    assert OrderBook().snapshot(3).tolist() == [[0, 0, 0, 0]] * 3


def test_snapshot_hides_market_order_sentinels():
    book = OrderBook(phase=Phase.CALL)
    book.submit(1, 1, BUY, 0, 9, 1, MARKET)
    book.submit(2, 2, SELL, 0, 9, 1, MARKET)
    for oid, (side, price) in enumerate([(BUY, 100), (BUY, 99), (SELL, 101), (SELL, 102)], 3):
        book.submit(1, oid, side, price, oid, 1)
    assert book.snapshot(2).tolist() == [[101, 5, 100, 3], [102, 6, 99, 4]]
    assert book.snapshot(3).tolist() == [[101, 5, 100, 3], [102, 6, 99, 4], [0, 0, 0, 0]]
    assert book.snapshot(1).tolist() == [[101, 5, 100, 3]]
    assert book.best_bid() == 100 and book.best_ask() == 101
    assert book.levels(BUY) == [(100, 3), (99, 4)]
    assert book.levels(SELL) == [(101, 5), (102, 6)]


# ---------------------------------------------------------------- events, misc


def test_drain_events_sequencing():
    book = OrderBook()
    assert book.drain_events() == (0, [])
    book.submit(1, 1, BUY, 100, 1, 1)
    book.submit(2, 2, BUY, 99, 1, 1)
    base, events = book.drain_events()
    assert base == 0 and len(events) == 2
    assert book.events == []
    book.submit(3, 3, SELL, 100, 2, 1)  # SUBMIT + TRADE
    book.cancel(4, 99)  # REJECT
    base, events = book.drain_events()
    assert base == 2
    assert [e[1] for e in events] == [SUBMIT, TRADE, REJECT]
    assert book.drain_events() == (5, [])
    book.halt(5)
    assert book.drain_events() == (5, [(5, HALT, NO_ID, 0, NO_PRICE, 0, NO_ID, NO_ID, NO_ID, None)])
    assert book.drain_events() == (6, [])


def test_drained_list_is_not_appended_to_afterwards():
    book = OrderBook()
    book.submit(1, 1, BUY, 100, 1, 1)
    _, first = book.drain_events()
    book.submit(2, 2, BUY, 100, 1, 1)
    assert len(first) == 1
    assert len(book.drain_events()[1]) == 1


@pytest.mark.parametrize("book_type", [OrderBook, CompiledOrderBook])
def test_execute_resting_and_hidden_trade(book_type):
    book = make((1, SELL, 100, 5, 11), book_type=book_type)
    assert book.execute_resting(2, 1, 3, contra_agent=9)
    assert book.order(1) == (SELL, 100, 2, 11)
    assert book.execute_resting(3, 1, 10)
    assert not book.execute_resting(4, 1, 1)
    book.record_hidden_trade(5, 77, BUY, 102, 4)
    assert drain(book) == [
        (2, TRADE, 1, SELL, 100, 3, 11, NO_ID, 9, None),
        (3, TRADE, 1, SELL, 100, 2, 11, NO_ID, NO_ID, None),
        (5, HIDDEN, 77, BUY, 102, 4, NO_ID, NO_ID, NO_ID, None),
    ]
    assert len(book) == 0 and book.last_trade_price == 102


@pytest.mark.parametrize("book_type", [OrderBook, CompiledOrderBook])
def test_a_reported_cross_and_a_move_to_the_head(book_type):
    book = make((1, BUY, 99, 5, 11), (2, BUY, 99, 3, 12), (3, BUY, 99, 4, 13), book_type=book_type)
    book.record_cross(4, 0, BUY, 100, 250)
    assert drain(book) == [(4, AUCTION, 0, BUY, 100, 250, NO_ID, NO_ID, NO_ID, None)]
    assert book.last_trade_price == 100 and len(book) == 3  # the book is unchanged
    book.move_to_head(3)
    assert book.level_queue(BUY, 99) == [(3, 4), (1, 5), (2, 3)]
    book.move_to_head(3)  # already the head
    book.move_to_head(2)  # from the tail
    assert book.level_queue(BUY, 99) == [(2, 3), (3, 4), (1, 5)]
    book.cancel(5, 3)
    assert book.level_queue(BUY, 99) == [(2, 3), (1, 5)]
    book.check_invariants()


def test_check_invariants_detects_corruption():
    book = make((1, BUY, 100, 5, 11), (2, SELL, 101, 5, 12))
    book._depth[BUY][100] += 1
    with pytest.raises(AssertionError, match="depth mismatch"):
        book.check_invariants()


def test_check_invariants_detects_crossed_continuous_book():
    book = make((1, BUY, 101, 5, 11), (2, SELL, 100, 5, 12), phase=Phase.CALL)
    book.check_invariants()  # crossed is fine in a call
    book.phase = Phase.CONTINUOUS
    with pytest.raises(AssertionError, match="crossed"):
        book.check_invariants()
