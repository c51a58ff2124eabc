"""One book's drained events, read in one compiled pass each: the totals a run's summary
keeps (``BookStats``), the trades routed to the agents that own either side, and the
events of the agents with the highest ids (the RL env's learning agents).

A step drains a few dozen events per book, so ``ShardRuntime._settle``'s cost was the
per-call overhead of the two dozen numpy operations that did this, not the arithmetic.
The rows are ``EVENT_RECORD``s as int64 (``ROW_FIELDS`` order); results are the ones
those operations gave, integer for integer.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from mars_ray.schema.events import NO_ID, ROW_FIELDS, EventType

_TRADE, _REJECT = int(EventType.TRADE), int(EventType.REJECT)
_TYPE, _OID, _SIDE, _PRICE, _SIZE, _AGENT, _CONTRA_OID, _CONTRA_AGENT = (
    ROW_FIELDS.index(name)
    for name in (
        "event_type",
        "order_id",
        "side",
        "price",
        "size",
        "agent_id",
        "contra_order_id",
        "contra_agent_id",
    )
)


def event_rows(records: np.ndarray) -> np.ndarray:
    """An ``EVENT_RECORD`` array as (n, fields) int64, without a copy."""
    return records.view(np.int64).reshape(len(records), len(ROW_FIELDS))


@njit(cache=True)
def book_totals(rows: np.ndarray) -> tuple[int, int, int, int, int]:
    """(rejects, trades, traded shares, notional in ticks x shares, last trade price or -1)."""
    rejects = trades = volume = notional = 0
    last = -1
    for i in range(rows.shape[0]):
        kind = rows[i, _TYPE]
        if kind == _REJECT:
            rejects += 1
        elif kind == _TRADE:
            trades += 1
            volume += rows[i, _SIZE]
            notional += rows[i, _PRICE] * rows[i, _SIZE]
            last = rows[i, _PRICE]
    return rejects, trades, volume, notional, last


@njit(cache=True)
def route_fills(rows: np.ndarray, trades: int, first_ids: np.ndarray, ends: np.ndarray):
    """Each trade once per side, grouped by the receiver whose ids [first_ids[r], ends[r])
    hold its owner: the resting orders' owners first, then the aggressors', trade order
    within each (a stable grouping). Returns (rows per receiver, agent id, order id, side
    of that agent's order, price, size); rows of no receiver are left out."""
    m = len(first_ids)
    group = np.empty(2 * trades, np.int64)
    source = np.empty(2 * trades, np.int64)  # row of the event
    counts = np.zeros(m, np.int64)
    k = 0
    for contra in range(2):
        column = _CONTRA_AGENT if contra else _AGENT
        for i in range(rows.shape[0]):
            if rows[i, _TYPE] != _TRADE:
                continue
            agent = rows[i, column]
            r = np.searchsorted(first_ids, agent, side="right") - 1
            if agent == NO_ID or r < 0 or agent >= ends[r]:
                r = m
            else:
                counts[r] += 1
            group[k], source[k] = r, i
            k += 1
    start = np.zeros(m, np.int64)
    for r in range(1, m):
        start[r] = start[r - 1] + counts[r - 1]
    n = start[m - 1] + counts[m - 1] if m else 0
    agent_id = np.empty(n, np.int64)
    order_id = np.empty(n, np.int64)
    side = np.empty(n, np.int64)
    price = np.empty(n, np.int64)
    size = np.empty(n, np.int64)
    for k in range(2 * trades):
        r = group[k]
        if r == m:
            continue
        i = source[k]
        j = start[r]
        start[r] += 1
        if k < trades:
            agent_id[j], order_id[j], side[j] = rows[i, _AGENT], rows[i, _OID], rows[i, _SIDE]
        else:
            agent_id[j], order_id[j] = rows[i, _CONTRA_AGENT], rows[i, _CONTRA_OID]
            side[j] = -rows[i, _SIDE]
        price[j], size[j] = rows[i, _PRICE], rows[i, _SIZE]
    return counts, agent_id, order_id, side, price, size


@njit(cache=True)
def rows_of_agents_from(rows: np.ndarray, first_id: int) -> np.ndarray:
    """Indices of the events whose agent or contra agent has an id from ``first_id`` on."""
    keep = np.empty(rows.shape[0], np.int64)
    k = 0
    for i in range(rows.shape[0]):
        if max(rows[i, _AGENT], rows[i, _CONTRA_AGENT]) >= first_id:
            keep[k] = i
            k += 1
    return keep[:k]


def warm_up() -> None:
    """Compile these into numba's on-disk cache (the set-up script runs it)."""
    rows = np.zeros((2, len(ROW_FIELDS)), np.int64)
    rows[:, _TYPE] = _TRADE
    rows[:, _AGENT] = rows[:, _CONTRA_AGENT] = 1
    book_totals(rows)
    route_fills(rows, 2, np.array([1]), np.array([2]))
    rows_of_agents_from(rows, 1)
