"""Metaorder traders: parent orders worked as a run of same-side market orders.

Real market-order flow has memory: the next market order is on the previous one's
side about four times in five (Lillo and Farmer 2004), because institutions split
a large parent order into many small children sent one after another. Noise,
momentum and value agents send market orders whose signs are nearly independent,
so a book of theirs has no such memory and the price does not keep drifting after
a market order the way it does on a real day. This kind adds the split parents.

Each idle agent starts a parent order at Poisson times (``rate`` per second): a
side drawn at random, a geometric number of children (mean ``mean_children``),
sent as market orders an exponential time apart (mean ``mean_gap_s``), each a
geometric number of lots. When the last child is sent the agent is idle again.
Children are sent only in continuous trading; a parent in progress at a call
waits and goes on when trading resumes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from agents.base import NO_ORDERS, AgentParams, AgentPopulation
from agents.view import MarketView
from mars_ray.exchange.orders import OrderBatch
from mars_ray.schema.events import OrderType
from mars_ray.schema.phases import Phase
from mars_ray.schema.quantities import MAX_SHARES, Shares

_MARKET = int(OrderType.MARKET)


class MetaOrderParams(AgentParams):
    rate: float = Field(
        default=0.02, gt=0, le=1000, description="parent orders started per idle agent per second"
    )
    mean_children: float = Field(
        default=8.0, ge=1, le=1_000_000, description="mean market orders per parent (geometric)"
    )
    mean_gap_s: float = Field(
        default=2.0, gt=0, le=86_400, description="mean seconds between children (exponential)"
    )
    lot_size: Shares = Field(default=100, description="shares per lot")
    mean_lots: float = Field(
        default=1.5, ge=1, le=MAX_SHARES, description="mean child size in lots (geometric)"
    )


class MetaOrderTraders(AgentPopulation):
    """One parent order at a time per agent, worked as market orders on one side."""

    kind = "meta_order"
    params_model = MetaOrderParams
    params: MetaOrderParams

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.side = np.zeros(self.n, dtype=np.int8)  # of the parent in progress
        self.children_left = np.zeros(self.n, dtype=np.int64)  # 0: idle
        self.next_child_at = np.zeros(self.n, dtype=np.int64)  # decision time, ns

    def act(self, t0: int, t1: int, view: MarketView) -> OrderBatch:
        if view.phase != Phase.CONTINUOUS:
            return NO_ORDERS
        p, rng = self.params, self.rng
        starters, start_at = self.first_wakeups(t0, t1, p.rate)
        idle = self.children_left[starters] == 0
        starters, start_at = starters[idle], start_at[idle]
        self.side[starters] = np.where(rng.random(len(starters)) < 0.5, 1, -1)
        self.children_left[starters] = rng.geometric(1.0 / p.mean_children, len(starters))
        self.next_child_at[starters] = start_at

        agents, times = [], []
        due = np.flatnonzero((self.children_left > 0) & (self.next_child_at < t1))
        while len(due):
            when = np.maximum(self.next_child_at[due], t0)  # a parent paused by a call resumes
            agents.append(due)
            times.append(when)
            self.children_left[due] -= 1
            gap = np.round(rng.exponential(p.mean_gap_s * 1e9, len(due))).astype(np.int64)
            self.next_child_at[due] = when + np.maximum(gap, 1)
            due = due[(self.children_left[due] > 0) & (self.next_child_at[due] < t1)]
        if not agents:
            return NO_ORDERS
        agent = np.concatenate(agents)
        time = np.concatenate(times)
        order = np.argsort(time, kind="stable")
        agent, time = agent[order], time[order]
        lots = rng.geometric(1.0 / p.mean_lots, len(agent))
        return self.orders(
            agent,
            time,
            _MARKET,
            self.side[agent],
            np.nan,
            (lots * p.lot_size).astype(np.float64),
        )
