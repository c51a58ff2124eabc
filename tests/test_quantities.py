"""What a price and a size may be (``schema.quantities``): exact round trips inside the
bounds, a named refusal outside them, and one definition that the exchange's batch
validation agrees with, value for value."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mars_ray.exchange.exchange import Exchange, InstrumentSpec
from mars_ray.exchange.orders import OrderBatch
from mars_ray.schema.events import OrderType
from mars_ray.schema.quantities import (
    MAX_SHARES,
    MAX_TICK_SIZE,
    MAX_TICKS,
    MIN_TICK_SIZE,
    price_problem,
    price_ticks,
    shares,
    size_problem,
)

TICK_SIZES = st.floats(MIN_TICK_SIZE, MAX_TICK_SIZE) | st.sampled_from([0.01, 0.05, 1e-4, 0.25])
# every kind of number a user or an agent might send
NUMBERS = (
    st.floats(allow_nan=True, allow_infinity=True)
    | st.integers(-(2**70), 2**70).map(float)
    | st.sampled_from([0.0, -0.0, 0.5, 1e-300, 1e300, MAX_TICKS + 1.0, MAX_SHARES + 1.0])
)


@settings(max_examples=300, deadline=None)
@given(ticks=st.integers(1, MAX_TICKS), tick_size=TICK_SIZES)
def test_every_price_inside_the_bounds_round_trips_exactly(ticks: int, tick_size: float) -> None:
    assert price_ticks(ticks * tick_size, tick_size) == ticks


@pytest.mark.parametrize(
    ("price", "why"),
    [
        (math.nan, "must be a finite number > 0"),
        (math.inf, "must be a finite number > 0"),
        (-1.0, "must be a finite number > 0"),
        (0.0, "must be a finite number > 0"),
        (1e300, "is 1e+302 ticks of 0.01; a price is 1 to 1,000,000,000 ticks"),
        (1e-300, "is 1e-298 ticks of 0.01"),
        (0.004, "is 0.4 ticks of 0.01"),
        ((MAX_TICKS + 1) * 0.01, "is 1e+09 ticks of 0.01"),
        (100.005, "is not a multiple of tick_size 0.01"),
    ],
)
def test_a_price_outside_the_bounds_is_refused_by_name(price: float, why: str) -> None:
    with pytest.raises(ValueError, match="price") as info:
        price_ticks(price, 0.01)
    assert f"price {price!r} {why}" in str(info.value)


@pytest.mark.parametrize("size", [0, -1, 1.5, math.nan, math.inf, MAX_SHARES + 1, 1e300, "7"])
def test_a_size_outside_the_bounds_is_refused_by_name(size: object) -> None:
    with pytest.raises(ValueError, match=re.escape(f"size {size!r} must be")):
        shares(size)  # type: ignore[arg-type]


def test_the_largest_size_is_exact() -> None:
    assert shares(float(MAX_SHARES)) == MAX_SHARES == shares(MAX_SHARES)


def _exchange_accepts(price: float, size: float, tick_size: float) -> bool:
    exchange = Exchange([InstrumentSpec("AAA", tick_size, 1)], [0], [0])
    batch = OrderBatch.build(0, 0, int(OrderType.LIMIT), 1, 1, [price], [size], 7)
    return exchange.validate(batch)[0] == 0


@settings(max_examples=300, deadline=None)
@given(price=NUMBERS, size=NUMBERS, tick_size=TICK_SIZES, ticks=st.integers(1, MAX_TICKS))
def test_the_exchange_accepts_exactly_what_the_definition_allows(
    price: float, size: float, tick_size: float, ticks: int
) -> None:
    """An injected or generated order passes batch validation iff its price and size pass
    the same checks as a config or a request; half the prices are drawn on the grid."""
    if np.isfinite(price) and int(price) % 2:
        price = ticks * tick_size
    allowed = price_problem(price, tick_size) is None and size_problem(size) is None
    assert _exchange_accepts(price, size, tick_size) == allowed
