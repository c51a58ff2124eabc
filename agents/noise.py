"""Noise traders: the random background flow that gives a simulated book depth and trades.

Each agent wakes at Poisson times and sends a market order, a marketable limit
at the opposite touch, or (mostly) a passive limit a geometric number of ticks
from the mid. Every limit order gets an exponential lifetime; when it runs out
the agent cancels whatever is left, so the book reaches a steady size instead of
growing all day.

Resting orders are tracked population-wide in one table (a row per field, a
column per order) sorted by the order-id counter: ``new_order_ids`` hands out
an increasing counter in the low 32 bits, so appending keeps it sorted and a
fill finds its order with one ``searchsorted``. A cancelled or fully filled
order is only marked dead (its deadline set to "never"), and the table is
compacted once dead columns outnumber live ones; that keeps the per-step cost
at a scan of one row instead of copying the whole table. Filled orders are thus
never cancelled.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field, model_validator

from agents.base import (
    BEST_ASK,
    BEST_BID,
    MID,
    NO_ORDERS,
    AgentParams,
    AgentPopulation,
    Fills,
    MarketView,
)
from agents.registry import register
from mars_ray.exchange.book import Phase
from mars_ray.exchange.orders import OrderBatch
from mars_ray.schema import OrderType

_LIMIT = int(OrderType.LIMIT)
_MARKET = int(OrderType.MARKET)
_CANCEL = int(OrderType.CANCEL)
COUNTER_MASK = (1 << 32) - 1  # low bits of an order id: the population's order counter
# rows of the live-order table; a dead column has deadline _NEVER
_COUNTER, _OID, _AGENT, _DEADLINE, _REMAINING = range(5)
_FIELDS = 5
_NEVER = np.iinfo(np.int64).max


class NoiseTraderParams(AgentParams):
    rate: float = Field(default=0.1, gt=0, le=1000, description="wake-ups per agent per second")
    p_market: float = Field(default=0.1, ge=0, le=1, description="share of market orders")
    p_cross: float = Field(
        default=0.1, ge=0, le=1, description="share of marketable limits at the opposite touch"
    )
    mean_level: float = Field(
        default=5.0, ge=1, description="mean ticks from the mid of passive limits (geometric)"
    )
    max_level: int = Field(default=50, ge=1, description="cap on that distance (ticks)")
    lot_size: int = Field(default=100, gt=0, description="shares per lot")
    mean_lots: float = Field(default=2.0, ge=1, description="mean order size in lots (geometric)")
    mean_lifetime_s: float = Field(
        default=20.0, gt=0, description="mean time before an unfilled limit order is cancelled"
    )

    @model_validator(mode="after")
    def _shares(self) -> NoiseTraderParams:
        if self.p_market + self.p_cross > 1:
            raise ValueError(
                f"p_market + p_cross must be <= 1, got {self.p_market} + {self.p_cross}"
            )
        return self


@register
class NoiseTraders(AgentPopulation):
    """Random market/limit orders around the mid, with cancellation after a random lifetime.

    In ``Phase.CALL`` no market orders: that share is sent as limits at the opposite
    touch instead, so the auctions get crossing volume at bounded prices rather than
    unpriced market orders.
    """

    kind = "noise"
    params_model = NoiseTraderParams
    params: NoiseTraderParams

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._table = np.empty((_FIELDS, 1024), dtype=np.int64)  # columns [0, _used) in use
        self._used = 0
        self._dead = 0
        p = self.params
        # log(1 - u) times these: geometric(1/mean) - 1 after floor, and an exponential in ns
        self._draw_scale = np.array(
            [
                [1.0 / np.log1p(-1.0 / p.mean_level)],
                [1.0 / np.log1p(-1.0 / p.mean_lots)],
                [-p.mean_lifetime_s * 1e9],
            ]
        )

    @property
    def live_order_ids(self) -> np.ndarray:
        """Ids of the limit orders this population believes are still resting."""
        t = self._table[:, : self._used]
        return t[_OID, t[_DEADLINE] != _NEVER]

    def act(self, t0: int, t1: int, view: MarketView) -> OrderBatch:
        phase = view.phase
        if phase != Phase.CONTINUOUS and phase != Phase.CALL:
            return NO_ORDERS
        p = self.params
        rng = self.rng

        # 1. cancel orders whose lifetime ends in this step, at the deadline (now if overdue)
        table = self._table[:, : self._used]
        expired = np.flatnonzero(table[_DEADLINE] < t1)
        gone = table[:, expired]
        table[_DEADLINE, expired] = _NEVER
        nc = len(expired)
        self._dead += nc

        # 2. new orders from this step's wake-ups
        idx, times = self.wakeups(t0, t1, p.rate)
        k = len(idx)
        if k + nc == 0:
            return NO_ORDERS
        obs = self.observe(view, idx, times)
        bid, ask, mid = obs[:, BEST_BID], obs[:, BEST_ASK], obs[:, MID]
        mid = np.where(mid > 0, mid, float(self.reference_ticks))
        # all of the step's draws in one call: side, order kind, then by inversion
        # geometric level and lots (counted from 0) and an exponential lifetime
        u = rng.random((5, k))
        buy = u[0] < 0.5
        x = np.log1p(-u[2:])
        x *= self._draw_scale
        level = np.minimum(np.floor(x[0]), p.max_level - 1)  # 0, 1, ..
        size = (np.floor(x[1]).astype(np.int64) + 1) * p.lot_size
        life = x[2].astype(np.int64) + 1

        # passive: level 0 sits one tick inside a wide spread, or at the touch of a one-tick
        # spread, and never at or through the opposite touch this agent sees (0 = empty side)
        ask_or_inf = np.where(ask > 0, ask, np.inf)
        price = np.where(
            buy,
            np.minimum(np.ceil(mid - 0.5) - level, ask_or_inf - 1),
            np.maximum(np.floor(mid + 0.5) + level, bid + 1),
        )
        otype = np.full(nc + k, _LIMIT, dtype=np.int8)
        aggressive = u[1] < p.p_market + p.p_cross
        # in a call, market orders become limits at the opposite touch: still auction volume,
        # but at a bounded price
        is_market = u[1] < p.p_market if phase == Phase.CONTINUOUS else np.zeros(k, dtype=bool)
        is_cross = aggressive & ~is_market
        cross = np.where(
            buy, np.where(ask > 0, ask, np.ceil(mid)), np.where(bid > 0, bid, np.floor(mid))
        )
        price = np.where(is_cross, cross, price)
        price[is_market] = np.nan
        otype[nc:][is_market] = _MARKET
        rest = ~is_market
        np.maximum(price, 1.0, out=price)  # NaN stays NaN
        oid = self.new_order_ids(idx)

        # 3. track the new limit orders (counters ascend, so the table stays sorted)
        if rest.any():
            self._append(np.stack([oid & COUNTER_MASK, oid, idx, times + life, size])[:, rest])

        # cancels first: on a tie in arrival time they are processed before the new orders
        otype[:nc] = _CANCEL
        side = np.zeros(nc + k, dtype=np.int8)
        side[nc:] = np.where(buy, 1, -1)
        return self.orders(
            np.concatenate([gone[_AGENT], idx]),
            np.concatenate([np.maximum(gone[_DEADLINE], t0), times]),
            otype,
            side,
            np.concatenate([np.full(nc, np.nan), price]),
            np.concatenate([np.zeros(nc, dtype=np.int64), size]).astype(np.float64),
            order_id=np.concatenate([gone[_OID], oid]),
        )

    def on_fills(self, fills: Fills) -> None:
        super().on_fills(fills)
        n = self._used
        if n == 0 or len(fills.order_id) == 0:
            return
        table = self._table[:, :n]
        oid = np.asarray(fills.order_id, dtype=np.int64)
        pos = np.minimum(np.searchsorted(table[_COUNTER], oid & COUNTER_MASK), n - 1)
        # fills of market orders or of orders already cancelled are not ours to track
        hit = (table[_OID, pos] == oid) & (table[_DEADLINE, pos] != _NEVER)
        if not hit.any():
            return
        pos = pos[hit]
        np.subtract.at(table[_REMAINING], pos, np.asarray(fills.size, dtype=np.int64)[hit])
        done = np.unique(pos[table[_REMAINING, pos] <= 0])
        table[_DEADLINE, done] = _NEVER
        self._dead += len(done)

    def _append(self, new: np.ndarray) -> None:
        """Add order columns at the end, compacting or growing the table when it is full."""
        m = new.shape[1]
        if self._used + m > self._table.shape[1]:
            n = self._used
            if self._dead > n // 2:  # drop dead columns, keeping the counter order
                table = self._table[:, :n]
                live = table[:, table[_DEADLINE] != _NEVER]
                self._table[:, : live.shape[1]] = live
                self._used, self._dead = live.shape[1], 0
            if self._used + m > self._table.shape[1]:
                cap = max(2 * self._table.shape[1], self._used + m)
                grown = np.empty((_FIELDS, cap), dtype=np.int64)
                grown[:, : self._used] = self._table[:, : self._used]
                self._table = grown
        self._table[:, self._used : self._used + m] = new
        self._used += m
