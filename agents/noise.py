"""Noise traders: the random background flow that gives a simulated book depth and trades.

Each agent wakes at Poisson times and sends a market order, a marketable limit
at the opposite touch, or (mostly) a passive limit a geometric number of ticks
from the mid. Every limit order gets an exponential lifetime; when it runs out
the agent cancels whatever is left, so the book reaches a steady size instead of
growing all day.

Resting orders are tracked population-wide in one table (a row per field, a
column per order) sorted by the order-id counter: order ids carry an increasing
counter in their low 32 bits, so appending keeps it sorted and a fill finds its
order with one binary search. A cancelled or fully filled order is only marked
dead (its deadline set to "never"), and the table is compacted once dead columns
outnumber live ones; that keeps the per-step cost at a scan of one row instead of
copying the whole table. Filled orders are thus never cancelled.

The step and the fill bookkeeping run in numba (``agents/kernels.py``); this
class keeps the state, draws the random numbers and sizes the table.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field, model_validator

from agents.base import NO_ORDERS, AgentParams, AgentPopulation
from agents.kernels import (
    DEADLINE,
    NEVER,
    NOISE_PARAMS,
    OID,
    TABLE_FIELDS,
    as_int64,
    noise_fills,
    noise_step,
    to_batch,
)
from agents.view import Fills, MarketView
from mars_ray.exchange.orders import OrderBatch
from mars_ray.schema.phases import Phase
from mars_ray.schema.quantities import MAX_SHARES, Shares, TickCount, Ticks


class NoiseTraderParams(AgentParams):
    rate: float = Field(default=0.1, gt=0, le=1000, description="wake-ups per agent per second")
    p_market: float = Field(default=0.1, ge=0, le=1, description="share of market orders")
    p_cross: float = Field(
        default=0.1, ge=0, le=1, description="share of marketable limits at the opposite touch"
    )
    mean_level: Ticks = Field(
        default=5.0, ge=1, description="mean ticks from the mid of passive limits (geometric)"
    )
    max_level: TickCount = Field(default=50, ge=1, description="cap on that distance (ticks)")
    lot_size: Shares = Field(default=100, description="shares per lot")
    mean_lots: float = Field(
        default=2.0, ge=1, le=MAX_SHARES, description="mean order size in lots (geometric)"
    )
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
        self._table = np.empty((TABLE_FIELDS, 1024), dtype=np.int64)  # columns [0, _used)
        self._used = 0
        self._dead = 0
        p = self.params
        # the kernel's parameters, indexed by "in continuous trading" (no market orders in a
        # call); log(1 - u) times the scales gives geometric(1/mean) - 1 after the floor, and
        # an exponential lifetime in ns
        self._params = [
            np.array([values[name] for name in NOISE_PARAMS], dtype=np.float64)
            for values in (
                {
                    "market_share": market_share,
                    "aggressive_share": p.p_market + p.p_cross,
                    "level_scale": 1.0 / np.log1p(-1.0 / p.mean_level),
                    "lots_scale": 1.0 / np.log1p(-1.0 / p.mean_lots),
                    "life_scale": -p.mean_lifetime_s * 1e9,
                    "max_level": p.max_level,
                    "lot_size": p.lot_size,
                    "reference": self.reference_ticks,
                    "tick_size": self.tick_size,
                }
                for market_share in (0.0, p.p_market)
            )
        ]

    @property
    def live_order_ids(self) -> np.ndarray:
        """Ids of the limit orders this population believes are still resting."""
        t = self._table[:, : self._used]
        return t[OID, t[DEADLINE] != NEVER]

    def act(self, t0: int, t1: int, view: MarketView) -> OrderBatch:
        phase = view.phase
        if phase != Phase.CONTINUOUS and phase != Phase.CALL:
            return NO_ORDERS
        # this step's wake-ups and all their draws: side, order kind, then by inversion a
        # geometric level and lots and an exponential lifetime
        idx, times = self.wakeups(t0, t1, self.params.rate)
        u = self.rng.random((5, len(idx)))
        self._reserve(len(idx))
        params = self._params[phase == Phase.CONTINUOUS]
        columns, self._used, expired, self._order_counter = noise_step(
            self._table,
            self._used,
            t0,
            t1,
            idx,
            times,
            u,
            view.history,
            view.times,
            self.data_latency_ns,
            self.order_latency_ns,
            self.agent_ids,
            self._order_counter,
            params,
        )
        self._dead += expired
        if not len(columns[0]):
            return NO_ORDERS
        return to_batch(columns, self.trajectory, self.instrument)

    def on_fills(self, fills: Fills) -> None:
        super().on_fills(fills)
        self._dead += noise_fills(
            self._table, self._used, as_int64(fills.order_id), as_int64(fills.size)
        )

    def _reserve(self, m: int) -> None:
        """Room for ``m`` more orders: compact the table (dropping dead columns, keeping the
        counter order) when dead ones are most of it, else grow it."""
        if self._used + m <= self._table.shape[1]:
            return
        n = self._used
        if self._dead > n // 2:
            table = self._table[:, :n]
            live = table[:, table[DEADLINE] != NEVER]
            self._table[:, : live.shape[1]] = live
            self._used, self._dead = live.shape[1], 0
        if self._used + m > self._table.shape[1]:
            cap = max(2 * self._table.shape[1], self._used + m)
            grown = np.empty((TABLE_FIELDS, cap), dtype=np.int64)
            grown[:, : self._used] = self._table[:, : self._used]
            self._table = grown
