"""Momentum traders: follow the trend of the mid, measured by a fast and a slow EMA.

Each agent keeps its own fast and slow exponential moving average of the mid,
updated once per step from the newest boundary snapshot (``view.history[0]``),
with time constants in seconds so the signal does not depend on the step
length. Agents differ: each scales both time constants by one random factor
and its threshold by another (``heterogeneity``), so they do not all fire on
the same tick. When ``fast - slow`` exceeds the agent's threshold it buys
(sells when below minus the threshold) with a market order or an IOC through
the opposite touch, as long as its inventory stays within ``max_inventory``.

Only in continuous trading. Orders still in flight (their fills not yet
reported) count towards the cap, so a burst of wake-ups cannot overshoot it.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from agents.base import NO_ORDERS, AgentParams, AgentPopulation
from agents.kernels import momentum_step
from agents.view import MID, MarketView
from mars_ray.exchange.orders import OrderBatch
from mars_ray.schema.events import OrderType
from mars_ray.schema.phases import Phase
from mars_ray.schema.quantities import Shares, TickCount, Ticks


class MomentumParams(AgentParams):
    rate: float = Field(default=0.2, gt=0, le=1000, description="wake-ups per agent per second")
    fast_s: float = Field(default=10.0, gt=0, description="fast EMA time constant, seconds")
    slow_s: float = Field(default=60.0, gt=0, description="slow EMA time constant, seconds")
    threshold: Ticks = Field(default=1.0, gt=0, description="ticks of fast - slow needed to trade")
    heterogeneity: float = Field(
        default=0.5, ge=0, lt=1, description="per-agent factors drawn uniformly in [1-h, 1+h]"
    )
    order_size: Shares = Field(default=100, description="shares per order")
    max_inventory: Shares = Field(default=1000, description="|inventory| cap in shares")
    order_type: Literal["market", "ioc"] = "market"
    ioc_ticks: TickCount = Field(
        default=1, ge=0, description="IOC: ticks through the opposite touch"
    )

    @model_validator(mode="after")
    def _fast_below_slow(self) -> MomentumParams:
        if self.fast_s >= self.slow_s:
            raise ValueError(f"fast_s ({self.fast_s}) must be below slow_s ({self.slow_s})")
        return self


class MomentumTraders(AgentPopulation):
    """Trend followers on a fast/slow EMA crossover, vectorised over agents."""

    kind = "momentum"
    params_model = MomentumParams
    params: MomentumParams

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        p = self.params
        h = p.heterogeneity
        scale = self.rng.uniform(1 - h, 1 + h, size=self.n)
        self.fast_tau_ns = p.fast_s * 1e9 * scale
        self.slow_tau_ns = p.slow_s * 1e9 * scale
        self.threshold = p.threshold * self.rng.uniform(1 - h, 1 + h, size=self.n)
        self.fast = np.zeros(self.n)
        self.slow = np.zeros(self.n)
        self._ema_time: int | None = None  # time of the snapshot last folded into the EMAs
        self._alpha_dt = -1
        self._alpha = (np.zeros(self.n), np.zeros(self.n))
        self._pending = np.zeros(self.n, dtype=np.int64)  # signed shares sent, not yet settled
        self._pending_until = np.zeros(self.n, dtype=np.int64)  # arrival of the last such order

    @property
    def signal(self) -> np.ndarray:
        """fast - slow EMA per agent, in ticks."""
        return self.fast - self.slow

    def _update_emas(self, view: MarketView) -> None:
        if len(view.times) == 0:
            return
        t = int(view.times[0])
        if self._ema_time is not None and t <= self._ema_time:
            return  # this snapshot is already in
        x = float(view.history[0, MID])
        if x <= 0:
            return
        if self._ema_time is None:
            self.fast[:] = x
            self.slow[:] = x
        else:
            dt = t - self._ema_time
            if dt != self._alpha_dt:  # steps are usually equal: compute the weights once
                self._alpha = (-np.expm1(-dt / self.fast_tau_ns), -np.expm1(-dt / self.slow_tau_ns))
                self._alpha_dt = dt
            af, as_ = self._alpha
            self.fast += af * (x - self.fast)
            self.slow += as_ * (x - self.slow)
        self._ema_time = t

    def act(self, t0: int, t1: int, view: MarketView) -> OrderBatch:
        self._update_emas(view)
        if view.phase != Phase.CONTINUOUS or self._ema_time is None:
            return NO_ORDERS
        p = self.params
        idx, times = self.first_wakeups(t0, t1, p.rate)
        if len(idx) == 0:
            return NO_ORDERS
        ioc = p.order_type != "market"
        idx, times, side, price = momentum_step(
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
            self.fast - self.slow,
            self.threshold,
            p.order_size,
            p.max_inventory,
            ioc,
            p.ioc_ticks,
            float(self.reference_ticks),
        )
        if not len(idx):
            return NO_ORDERS
        otype = int(OrderType.IOC) if ioc else int(OrderType.MARKET)
        return self.orders(idx, times, otype, side, price, float(p.order_size))
