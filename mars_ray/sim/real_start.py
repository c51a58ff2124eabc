"""A simulation that starts from a real state: a LOBSTER day's book at a time of day.

``start: {lobster: {message, orderbook, at}}`` in a config. The book after the last message
before ``at`` is rebuilt by the consistency check's rules (``lobster_check.rebuild``), so it
shows the file's row there; only the levels that row shows are laid, since what lies
beyond the file's depth is unknown to any replay. Each level is laid queue by queue as the
messages tell it (real order sizes, in time priority); liquidity the messages cannot
account for (resting before the file, levels taken from the file) is cut into round lots,
so that a cancel takes a lot, not a whole level.

The orders before ``at`` (``derive_orders``, the corpus's rules, the last ``CONTEXT_ORDERS``)
are the LMM agents' context: their model continues the real flow rather than starting cold.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from mars_ray.data.lobster import LobsterFormatError, book_before_first, read_pair
from mars_ray.data.lobster_check import rebuild
from mars_ray.lmm.corpus import UnitOrders, derive_orders
from mars_ray.schema.clock import format_clock
from mars_ray.schema.validation import ConfigError
from mars_ray.sim.config import LobsterStartConfig

CONTEXT_ORDERS = 1024  # real orders kept as context (an agent uses its model's window of them)
LOT = 100  # shares per laid order where the messages do not tell a level's queue


@dataclass(frozen=True)
class RealStart:
    """One book's real start: resting orders (side, price ticks, shares) best level first and
    head of queue first, the file's row they make (``levels`` deep), and the orders before."""

    at: int
    orders: list[tuple[int, int, int]]
    row: np.ndarray
    levels: int
    context: UnitOrders
    message_index: int  # the first message at or after ``at``


def real_start(config: LobsterStartConfig) -> RealStart:
    """The real start a config names; ConfigError naming ``start.lobster`` and the value."""
    return _cached(Path(config.message).resolve(), Path(config.orderbook).resolve(), config.at)


@lru_cache(maxsize=8)
def _cached(message: Path, orderbook: Path, at: int) -> RealStart:
    try:
        msgs, rows = read_pair(message, orderbook)
    except LobsterFormatError as exc:
        raise ConfigError(f"start.lobster: {exc}") from None
    index = int(np.searchsorted(msgs.time_ns, at, side="left"))
    if index < 1 or index >= len(msgs):
        first, last = format_clock(int(msgs.time_ns[0])), format_clock(int(msgs.time_ns[-1]))
        raise ConfigError(
            f"start.lobster.at: {format_clock(at)} is not inside the file's messages "
            f"({first} to {last}, {str(message)!r}): the state needs messages before and after it"
        )
    replay = rebuild(msgs, rows, index)
    row = rows[index - 1]
    levels = rows.shape[1] // 4
    book = replay.book
    orders: list[tuple[int, int, int]] = []
    view = row.reshape(levels, 4)
    for k in range(levels):
        for side, col in ((1, 2), (-1, 0)):
            price, size = int(view[k, col]), int(view[k, col + 1])
            if price <= 0 or size <= 0:
                continue
            queue = book.level_queue(side, price)
            if sum(s for _, s in queue) != size:  # the rebuild shows the row: a bug if not
                raise AssertionError(f"rebuilt level {price} holds {queue}, the file {size}")
            for oid, resting in queue:
                orders += lots(side, price, resting) if oid < 0 else [(side, price, resting)]
    initial = book_before_first(rows, msgs)
    every = derive_orders(msgs, rows, initial, int(msgs.price[0]), window=(0, at))
    context = every.last(CONTEXT_ORDERS)
    return RealStart(at, orders, row.copy(), levels, context, index)


def lots(side: int, price: int, size: int, lot: int = LOT) -> list[tuple[int, int, int]]:
    """``size`` shares as orders of ``lot`` (the last one the remainder)."""
    whole, rest = divmod(size, lot)
    return [(side, price, lot)] * whole + ([(side, price, rest)] if rest else [])
