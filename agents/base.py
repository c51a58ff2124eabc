"""The agent interface: populations of agents that decide in batches.

A simulation has thousands of agents, so an agent kind is written as a
*population*: one object holds the state of all agents of that kind on one
book (one instrument of one trajectory) as numpy arrays, and decides for all
of them at once, once per kernel step. That is what keeps 1,000 agents cheap,
and it is the same shape the batched LMM agent and RLlib policies need: many
observations in, one OrderBatch out.

Timing. ``act(t0, t1, ...)`` is called at the start of each step [t0, t1). A
population draws its agents' wake-up times inside the step; an agent waking at
``w`` sees the newest boundary snapshot published at or before
``w - data_latency`` (``observe``), and its order reaches the exchange at
``w + order_latency``. Latencies are drawn per agent at start-up.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
from pydantic import field_validator

from agents.kernels import add_positions, as_int64, first_wakeup_times, integers
from agents.view import Fills, MarketView
from mars_ray.exchange.orders import OrderBatch
from mars_ray.schema.events import OrderType
from mars_ray.schema.validation import StrictModel

# What a population returns when a step has nothing to send (shared: building one is not free).
NO_ORDERS = OrderBatch.empty()


class AgentParams(StrictModel):
    """Base of each kind's parameters (its ``params_model``): the kind validates its own
    params, so a bad value is reported with the config's field path before anything runs."""


MAX_LATENCY_US = 86_400e6  # a day: beyond it, latencies in ns would leave the clock's range


class LatencyConfig(StrictModel):
    """Per-agent latencies: each agent draws its own, uniformly in [min, max] microseconds."""

    order_us: tuple[float, float] = (50.0, 500.0)
    data_us: tuple[float, float] = (50.0, 500.0)

    @field_validator("order_us", "data_us")
    @classmethod
    def _range(cls, value: tuple[float, float]) -> tuple[float, float]:
        lo, hi = value
        if not (math.isfinite(lo) and math.isfinite(hi) and 0 <= lo <= hi <= MAX_LATENCY_US):
            raise ValueError(
                f"expected [min, max] with 0 <= min <= max <= {MAX_LATENCY_US:g} (a day), "
                f"got {list(value)}"
            )
        return value


class AgentPopulation:
    """Base class: per-agent latencies, ids, wake-ups, lagged observation, positions."""

    kind: ClassVar[str]
    params_model: ClassVar[type[AgentParams]] = AgentParams

    def __init__(
        self,
        params: AgentParams,
        agent_ids: np.ndarray,
        instrument: int,
        trajectory: int,
        tick_size: float,
        reference_ticks: int,
        latency: LatencyConfig,
        rng: np.random.Generator,
    ) -> None:
        self.params = params
        self.agent_ids = np.asarray(agent_ids, dtype=np.int64)
        self.n = len(self.agent_ids)
        self.instrument = instrument
        self.trajectory = trajectory
        self.tick_size = tick_size
        self.reference_ticks = reference_ticks
        self.rng = rng
        self.order_latency_ns = _draw_latency(rng, latency.order_us, self.n)
        self.data_latency_ns = _draw_latency(rng, latency.data_us, self.n)
        self.inventory = np.zeros(self.n, dtype=np.int64)  # shares
        self.cash = np.zeros(self.n, dtype=np.float64)  # currency units
        self._order_counter = 0

    # ---------------------------------------------------------------- to override
    def act(self, t0: int, t1: int, view: MarketView) -> OrderBatch:
        """Orders (and cancels) decided during [t0, t1)."""
        raise NotImplementedError

    def on_fills(self, fills: Fills) -> None:
        """Update positions; subclasses extend this to track their own orders."""
        add_positions(
            self.inventory,
            self.cash,
            as_int64(fills.agent_index),
            as_int64(fills.side),
            np.asarray(fills.price, dtype=np.float64),
            as_int64(fills.size),
            self.tick_size,
        )

    # ---------------------------------------------------------------- helpers
    def new_order_ids(self, agent_index: np.ndarray) -> np.ndarray:
        """Fresh ids, unique within the book: the agent id in the high bits, a counter below."""
        k = len(agent_index)
        counter = np.arange(self._order_counter, self._order_counter + k, dtype=np.int64)
        self._order_counter += k
        return (self.agent_ids[agent_index] << 32) | counter

    def wakeups(self, t0: int, t1: int, rate_per_s: float) -> tuple[np.ndarray, np.ndarray]:
        """Poisson wake-ups at ``rate_per_s`` per agent: (agent index, time), sorted by time.

        The (agent, time) pairs are independent and identically distributed, so pairing
        the sorted times with agents drawn on their own is the same as sorting the pairs.
        """
        expected = self.n * rate_per_s * (t1 - t0) / 1e9
        rng = self.rng
        count = int(rng.poisson(expected)) if expected > 0 else 0
        agents = integers(rng, 0, self.n, count)
        times = integers(rng, t0, t1, count)
        times.sort()
        return agents, times

    def first_wakeups(self, t0: int, t1: int, rate_per_s: float) -> tuple[np.ndarray, np.ndarray]:
        """Each agent's first Poisson wake-up in [t0, t1) at ``rate_per_s``, if any, sorted by
        time: the first of each agent's ``wakeups`` in distribution, drawn directly (the time to
        an agent's first wake-up is exponential). At most one decision per agent per step, so
        per-agent state updates by fancy indexing stay correct."""
        delay = self.rng.exponential(1e9 / rate_per_s, size=self.n)
        return first_wakeup_times(delay, t0, t1 - t0)

    def observe(self, view: MarketView, agent_index: np.ndarray, times: np.ndarray) -> np.ndarray:
        """Feature rows each agent sees at its decision time, honouring its data latency."""
        seen_at = times - self.data_latency_ns[agent_index]
        # newest boundary <= seen_at: skip the boundaries after it (the oldest if none is)
        newer = len(view.times) - np.searchsorted(view.times[::-1], seen_at, side="right")
        return view.history[np.minimum(newer, len(view.times) - 1)]

    def arrivals(self, agent_index: np.ndarray, times: np.ndarray) -> np.ndarray:
        return times + self.order_latency_ns[agent_index]

    def orders(
        self,
        agent_index: np.ndarray,
        times: np.ndarray,
        order_type: np.ndarray | int,
        side: np.ndarray | int,
        price_ticks: np.ndarray | float,
        size: np.ndarray | float,
        order_id: np.ndarray | None = None,
    ) -> OrderBatch:
        """Build an OrderBatch for decisions at ``times``; new ids unless ``order_id`` is given."""
        if order_id is None:
            order_id = self.new_order_ids(agent_index)
        return OrderBatch.build(
            time_ns=self.arrivals(agent_index, times),
            trajectory_id=self.trajectory,
            instrument=self.instrument,
            order_type=order_type,
            order_id=order_id,
            side=side,
            price=np.asarray(price_ticks, dtype=np.float64) * self.tick_size,
            size=size,
            agent_id=self.agent_ids[agent_index],
        )

    def cancels(
        self, agent_index: np.ndarray, times: np.ndarray, order_id: np.ndarray
    ) -> OrderBatch:
        return self.orders(agent_index, times, int(OrderType.CANCEL), 0, np.nan, 0.0, order_id)


def _draw_latency(rng: np.random.Generator, bounds_us: tuple[float, float], n: int) -> np.ndarray:
    lo, hi = bounds_us
    return np.round(rng.uniform(lo, hi, size=n) * 1000.0).astype(np.int64)
