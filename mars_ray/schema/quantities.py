"""What a price, a size and a tick size may be, wherever one enters: config files, HTTP
bodies, injected orders, RL actions.

Books hold prices as int64 ticks and sizes as int64 shares, and an ``OrderBatch`` carries
both as float64 on the way there. A value out of range would not fail on that way: it
would wrap (``int64(1e300 / 0.01)`` is -9,223,372,036,854,775,808) or round. So every
entrance checks against the bounds here and names the value it refuses:

- a **tick size** is a finite number of currency units in [``MIN_TICK_SIZE``,
  ``MAX_TICK_SIZE``] = [1e-9, 1e6];
- a **price** is a finite number > 0 on its tick grid, from 1 to ``MAX_TICKS`` ticks;
- a **size** is a whole number of shares from 1 to ``MAX_SHARES``.

Why 10**9 ticks and 10**9 shares: both are below 2**53, so float64 holds every price in
ticks and every size exactly; one price times one size (10**18) still fits int64
(9.2 * 10**18), and int64 sums of sizes overflow only after nine billion maximal orders,
more than a run can hold. Real markets sit far inside: a $700,000 share is 7 * 10**7
ticks of a cent; the largest block trades are some 10**8 shares.

The pydantic types (``Price``, ``Shares``, ``TickSize``, ``Ticks``, ``TickCount``) carry
the bounds into models, so a bad value is a field error (a 422 at the API); the functions
check what needs the tick size too, one value (``price_ticks``, ``price_problem``) or a
column (``ticks_in_range``, ``on_grid``, as the exchange's batch validation does).
"""

from __future__ import annotations

import math
from typing import Annotated

import numpy as np
from pydantic import Field

MAX_TICKS = 10**9
MAX_SHARES = 10**9
MIN_TICK_SIZE = 1e-9
MAX_TICK_SIZE = 1e6
MAX_PRICE = MAX_TICKS * MAX_TICK_SIZE  # currency units: the largest price any grid allows
GRID_TOLERANCE = 1e-6  # in ticks: float prices like 100.07 land within 1e-12 of the grid

TickSize = Annotated[float, Field(ge=MIN_TICK_SIZE, le=MAX_TICK_SIZE, allow_inf_nan=False)]
# currency units; on the grid and within MAX_TICKS is checked where the tick size is known
Price = Annotated[float, Field(gt=0, le=MAX_PRICE, allow_inf_nan=False)]
Shares = Annotated[int, Field(ge=1, le=MAX_SHARES)]
# a number of ticks in an agent's params (a spread, a threshold, a level): no more than a
# price may hold. Each field states its own lower bound (pydantic does not let a field's
# ``ge`` override one given here: both would be kept, or the first)
Ticks = Annotated[float, Field(le=MAX_TICKS, allow_inf_nan=False)]
TickCount = Annotated[int, Field(le=MAX_TICKS)]


def ticks_in_range(ticks: np.ndarray | float) -> np.ndarray | bool:
    """Whether prices in (float) ticks round to a price a book may hold: 1 to MAX_TICKS.

    NaN and infinities are out of range."""
    return (ticks > 0.5) & (ticks < MAX_TICKS + 0.5)


def on_grid(ticks: np.ndarray | float) -> np.ndarray | bool:
    """Whether prices in (float) ticks are whole ticks, to GRID_TOLERANCE."""
    return np.abs(ticks - np.rint(ticks)) <= GRID_TOLERANCE


def price_problem(price: float, tick_size: float) -> str | None:
    """Why ``price`` cannot be a price on a grid of ``tick_size`` (None: it can), worded to
    follow the value or the field it names."""
    if not math.isfinite(price) or price <= 0:
        return "must be a finite number > 0"
    ticks = price / tick_size
    if not ticks_in_range(ticks):
        return f"is {ticks:.3g} ticks of {tick_size!r}; a price is 1 to {MAX_TICKS:,} ticks"
    if not on_grid(ticks):
        return f"is not a multiple of tick_size {tick_size!r}"
    return None


def price_ticks(price: float, tick_size: float) -> int:
    """``price`` in whole ticks of ``tick_size``; ValueError (saying why) if it is no price."""
    problem = price_problem(price, tick_size)
    if problem is not None:
        raise ValueError(f"price {price!r} {problem}")
    return round(price / tick_size)


def size_problem(size: float) -> str | None:
    """Why ``size`` cannot be an order's size in shares (None: it can)."""
    if not (isinstance(size, int | float | np.integer | np.floating) and 1 <= size <= MAX_SHARES):
        return f"must be 1 to {MAX_SHARES:,} shares"
    if size != round(size):
        return "must be a whole number of shares"
    return None


def shares(size: float) -> int:
    """``size`` as whole shares; ValueError (saying why) if it is no order size."""
    problem = size_problem(size)
    if problem is not None:
        raise ValueError(f"size {size!r} {problem}")
    return round(size)
