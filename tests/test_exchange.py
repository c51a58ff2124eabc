"""Exchange-level validation: bad orders become reject events; the rest goes on."""

from __future__ import annotations

import numpy as np
import pyarrow.compute as pc
import pytest

from mars_ray.exchange.exchange import Exchange, InstrumentSpec
from mars_ray.exchange.orders import ORDER_SCHEMA, OrderBatch
from mars_ray.schema.events import NO_PRICE, EventType, OrderType
from mars_ray.schema.quantities import MAX_SHARES, MAX_TICKS

LIMIT, MARKET, IOC, CANCEL, MODIFY = (int(t) for t in OrderType)


SPECS = [InstrumentSpec("AAA", 0.01, 10_000), InstrumentSpec("BBB", 0.05, 2_000)]


@pytest.fixture(params=["compiled", "python"])
def exchange(request: pytest.FixtureRequest) -> Exchange:
    return Exchange(SPECS, local_instruments=[0, 1], trajectories=[0, 1], book=request.param)


def test_an_unknown_book_engine_is_named():
    with pytest.raises(ValueError, match=r"book must be one of .*'rust'"):
        Exchange(SPECS, local_instruments=[0], trajectories=[0], book="rust")


def one(
    inst=0, ot=LIMIT, oid=1, side=1, price=100.0, size=10.0, t=0, traj=0, agent=7
) -> OrderBatch:
    return OrderBatch.build(
        time_ns=[t],
        instrument=[inst],
        order_type=[ot],
        order_id=[oid],
        side=[side],
        price=[price],
        size=[size],
        agent_id=[agent],
        trajectory_id=[traj],
    )


@pytest.mark.parametrize(
    ("order", "reason"),
    [
        (dict(inst=9), "unknown_instrument"),
        (dict(inst=-1), "unknown_instrument"),
        (dict(ot=17), "invalid_order_type"),
        (dict(side=0), "invalid_side"),
        (dict(size=np.nan), "nan_size"),
        (dict(size=0.0), "invalid_size"),
        (dict(size=-5.0), "invalid_size"),
        (dict(size=np.inf), "invalid_size"),
        (dict(size=2.5), "fractional_size"),
        (dict(size=MAX_SHARES + 1.0), "invalid_size"),
        (dict(size=1e300), "invalid_size"),
        (dict(ot=CANCEL, oid=42, size=1e300), "invalid_size"),
        (dict(price=np.nan), "nan_price"),
        (dict(price=-1.0), "invalid_price"),
        (dict(price=0.0), "invalid_price"),
        (dict(price=np.inf), "invalid_price"),
        (dict(price=1e300), "invalid_price"),  # 1e302 ticks: int64 would wrap it
        (dict(price=(MAX_TICKS + 1) * 0.01), "invalid_price"),
        (dict(price=1e-300), "invalid_price"),  # within 1e-6 of the grid, but 0 ticks
        (dict(ot=MODIFY, oid=42, price=1e300, size=5.0), "invalid_price"),
        (dict(price=100.005), "off_tick"),
        (dict(inst=1, price=100.01), "off_tick"),  # BBB ticks are 0.05
        (dict(ot=IOC, price=np.nan), "nan_price"),
        (dict(ot=CANCEL, oid=42, size=0.0), "unknown_order"),
        (dict(ot=MODIFY, oid=42, size=5.0), "unknown_order"),
    ],
)
def test_bad_orders_are_rejected_with_a_reason(exchange, order, reason):
    exchange.process(one(**order))
    events = exchange.drain()
    assert events["event_type"].to_pylist() == [int(EventType.REJECT)]
    assert events["reason"].to_pylist() == [reason]


@pytest.mark.parametrize(
    ("price", "size", "shown"),
    [
        (1e300, 10.0, (NO_PRICE, 10)),
        (-1e300, 10.0, (NO_PRICE, 10)),
        (100.0, 1e300, (10_000, 0)),
        (100.0, -np.inf, (10_000, 0)),
        (-1.0, -5.0, (-100, -5)),  # what int64 holds is shown as sent
    ],
)
def test_a_reject_never_shows_a_wrapped_integer(exchange, price, size, shown):
    exchange.process(one(price=price, size=size))
    events = exchange.drain()
    assert events["event_type"].to_pylist() == [int(EventType.REJECT)]
    assert (events["price"][0].as_py(), events["size"][0].as_py()) == shown


def test_the_largest_price_and_size_are_accepted_exactly(exchange):
    exchange.process(one(price=MAX_TICKS * 0.01, size=float(MAX_SHARES)))
    events = exchange.drain()
    assert events["event_type"].to_pylist() == [int(EventType.SUBMIT)]
    assert events["price"].to_pylist() == [MAX_TICKS]
    assert events["size"].to_pylist() == [MAX_SHARES]


def test_rejects_do_not_disturb_accepted_orders(exchange):
    good = one(oid=1, price=100.0, size=10.0)
    bad = one(oid=2, price=np.nan, t=1)
    dup = one(oid=1, price=99.0, t=2)
    cross = one(oid=3, side=-1, price=100.0, size=4.0, t=3)
    exchange.process(OrderBatch.concat([good, bad, dup, cross]))
    events = exchange.drain()
    types = [EventType(e).name for e in events["event_type"].to_pylist()]
    assert types == ["SUBMIT", "REJECT", "REJECT", "SUBMIT", "TRADE"]
    assert events["reason"].to_pylist()[1:3] == ["nan_price", "duplicate_order_id"]
    book = exchange.books[(0, 0)]
    assert book.order(1) == (1, 10_000, 6, 7)  # 10 - 4 traded, still at 100.00


def test_market_orders_need_no_price_and_prices_convert_to_ticks(exchange):
    exchange.process(
        OrderBatch.concat(
            [
                one(inst=1, oid=1, side=-1, price=20.05, size=3),
                one(inst=1, oid=2, side=1, ot=MARKET, price=np.nan, size=5, t=1),
            ]
        )
    )
    events = exchange.drain()
    trade = events.filter(pc.equal(events["event_type"], int(EventType.TRADE)))
    assert trade["price"].to_pylist() == [401]  # 20.05 / 0.05
    cancel = events.filter(pc.equal(events["event_type"], int(EventType.CANCEL)))
    assert cancel["size"].to_pylist() == [2] and cancel["reason"].to_pylist() == ["market_unfilled"]


def test_trajectories_have_separate_books(exchange):
    exchange.process(
        OrderBatch.concat([one(traj=0, oid=1), one(traj=1, oid=1, side=-1, price=100.0)])
    )
    events = exchange.drain()
    assert [EventType(e).name for e in events["event_type"].to_pylist()] == ["SUBMIT", "SUBMIT"]
    assert sorted(events["trajectory_id"].to_pylist()) == [0, 1]


def test_order_batch_rejects_ragged_columns():
    with pytest.raises(ValueError, match=r"OrderBatch\.order_type has 2 rows"):
        OrderBatch(
            time_ns=[0],
            trajectory_id=[0],
            instrument=[0],
            order_type=[0, 0],
            order_id=[1],
            side=[1],
            price=[1.0],
            size=[1.0],
            agent_id=[1],
        )


@pytest.mark.parametrize("n", [0, 1, 5, 64, 65, 300])
def test_sorted_split_is_sorted_then_split(n: int) -> None:
    """The kernel's compiled sort and split gives ``sorted().split_before(t)``, row for row,
    with many ties in time and agent (the order among ties is the batch order): both the
    insertion sort of small batches and the merge sorts of large ones."""
    rng = np.random.default_rng(n)
    batch = OrderBatch.build(
        time_ns=rng.integers(0, 6, n),
        instrument=0,
        order_type=int(OrderType.LIMIT),
        order_id=np.arange(n),
        side=rng.choice([-1, 1], n),
        price=rng.integers(1, 9, n) * 1.0,
        size=rng.integers(1, 9, n) * 100.0,
        agent_id=rng.integers(0, 4, n),
    )
    for t in (0, 3, 6):
        got = batch.sorted_split(t)
        expected = batch.sorted().split_before(t)
        for mine, theirs in zip(got, expected, strict=True):
            assert mine.to_arrow().equals(theirs.to_arrow())


def test_of_columns_puts_each_column_in_its_field() -> None:
    """``of_columns`` sets the fields in ORDER_SCHEMA's order, each to its own array."""
    columns = [np.zeros(2, dtype=f.type.to_pandas_dtype()) for f in ORDER_SCHEMA]
    batch = OrderBatch.of_columns(columns)
    assert [name for name in vars(batch)] == ORDER_SCHEMA.names
    assert all(vars(batch)[f.name] is c for f, c in zip(ORDER_SCHEMA, columns, strict=True))
