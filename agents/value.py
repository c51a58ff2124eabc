"""Value traders: trade the book towards a private estimate of the fundamental value.

The book has one fundamental, a Gaussian random walk in ticks started at the
reference price (``volatility`` ticks per sqrt(second), one draw per step from
the population's rng). Each agent adds a fixed private offset (``private_sd``)
so that opinions differ. On waking, an agent buys with an IOC at (or
``through_ticks`` through) the ask it sees when ``ask < value - threshold``,
and sells at the bid when ``bid > value + threshold``, within its inventory
cap. IOC rather than a resting limit: a value trader takes mispricing, it does
not leave stale orders behind. Only in continuous trading.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from pydantic import Field

from agents.base import NO_ORDERS, AgentParams, AgentPopulation
from agents.kernels import value_step
from agents.view import MarketView
from mars_ray.exchange.orders import OrderBatch
from mars_ray.schema.events import OrderType
from mars_ray.schema.phases import Phase
from mars_ray.schema.quantities import Shares, TickCount, Ticks


class ValueTraderParams(AgentParams):
    rate: float = Field(default=0.1, gt=0, le=1000, description="wake-ups per agent per second")
    volatility: Ticks = Field(
        default=0.2, ge=0, description="ticks per sqrt(second) of the common fundamental"
    )
    private_sd: Ticks = Field(
        default=2.0, ge=0, description="ticks: spread of the agents' private offsets"
    )
    threshold: Ticks = Field(default=2.0, ge=0, description="ticks of mispricing needed to trade")
    order_size: Shares = Field(default=100, description="shares per order")
    max_inventory: Shares = Field(default=1000, description="|inventory| cap in shares")
    through_ticks: TickCount = Field(
        default=0, ge=0, description="IOC limit: ticks through the touch"
    )


class ValueTraders(AgentPopulation):
    """Fundamental traders with heterogeneous private values, vectorised over agents."""

    kind = "value"
    params_model = ValueTraderParams
    params: ValueTraderParams

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fundamental = float(self.reference_ticks)  # ticks, common to the book
        self.offset = self.rng.normal(0.0, self.params.private_sd, size=self.n)
        self._pending = np.zeros(self.n, dtype=np.int64)  # signed shares sent, not yet settled
        self._pending_until = np.zeros(self.n, dtype=np.int64)

    @property
    def values(self) -> np.ndarray:
        """Each agent's current private value (ticks)."""
        return np.maximum(self.fundamental + self.offset, 1.0)

    def act(self, t0: int, t1: int, view: MarketView) -> OrderBatch:
        p = self.params
        # the fundamental moves in every phase: it is news, not trading
        if p.volatility > 0:
            shock = self.rng.standard_normal()
            self.fundamental += p.volatility * math.sqrt((t1 - t0) / 1e9) * shock
            self.fundamental = max(self.fundamental, 1.0)
        if view.phase != Phase.CONTINUOUS:
            return NO_ORDERS
        idx, times = self.first_wakeups(t0, t1, p.rate)
        if len(idx) == 0:
            return NO_ORDERS
        idx, times, side, price = value_step(
            idx,
            times,
            t0,
            view.history,
            view.times,
            self.data_latency_ns,
            self.order_latency_ns,
            self.inventory,
            self._pending,
            self._pending_until,
            self.fundamental,
            self.offset,
            p.threshold,
            p.order_size,
            p.max_inventory,
            p.through_ticks,
        )
        if not len(idx):
            return NO_ORDERS
        return self.orders(idx, times, int(OrderType.IOC), side, price, float(p.order_size))
