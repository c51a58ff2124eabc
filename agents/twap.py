"""TWAP execution: work a parent order in equal time slices, passive first, then aggressive.

The window [start, end) is cut into ``slices`` equal slices; by the end of
slice j the agent aims to have done ``quantity * (j+1) / slices`` shares. At the
start of each slice it posts the slice's quantity as a passive limit at its own
touch (bid for a buy). At the next slice boundary whatever of the previous
target is still missing is taken with an aggressive order (market, or IOC at
the opposite touch), and at ``end`` the whole remainder is; after ``end`` it
retries every step until done. This is the "passive then aggressive" TWAP of
the MarS paper.

Never overshooting: before it sends the aggressive leg an agent cancels its
passive order and waits until that cancel has arrived (it knows its own
latency) and the fills up to then have been reported. Then ``executed`` is
exact and nothing of this agent is live, so ``executed + outstanding`` never
exceeds ``quantity``. This assumes, as the kernel does, that the fills of a
step are delivered before the next ``act``.

All agents of a population run the same schedule (usually there is one).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from agents.base import NO_ORDERS, AgentParams, AgentPopulation
from agents.view import BEST_ASK, BEST_BID, MID, Fills, MarketView
from mars_ray.exchange.orders import OrderBatch
from mars_ray.schema.clock import Clock, format_clock, parse_clock
from mars_ray.schema.events import OrderType
from mars_ray.schema.phases import Phase
from mars_ray.schema.quantities import Shares, TickCount

_LIMIT = int(OrderType.LIMIT)
_MARKET = int(OrderType.MARKET)
_IOC = int(OrderType.IOC)
_CANCEL = int(OrderType.CANCEL)


class TwapParams(AgentParams):
    side: Literal["buy", "sell"] = "buy"
    quantity: Shares = Field(default=10_000, description="parent order size, shares")
    start: Clock = Field(default=parse_clock("10:00"), description="'HH:MM[:SS]', seconds or ns")
    end: Clock = Field(default=parse_clock("15:30"), description="'HH:MM[:SS]', seconds or ns")
    slices: int = Field(default=20, gt=0, le=100_000)
    aggressive: Literal["market", "ioc"] = "market"
    ioc_ticks: TickCount = Field(
        default=0, ge=0, description="IOC: ticks through the opposite touch"
    )

    @model_validator(mode="after")
    def _window(self) -> TwapParams:
        if self.start >= self.end:
            start, end = format_clock(self.start), format_clock(self.end)
            raise ValueError(f"start ({start}) must be before end ({end})")
        return self


class TwapExecutors(AgentPopulation):
    """Passive-then-aggressive TWAP of one parent order per agent."""

    kind = "twap"
    params_model = TwapParams
    params: TwapParams

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        p = self.params
        n_slices = p.slices
        j = np.arange(n_slices + 1, dtype=np.int64)
        # boundary j starts slice j; boundary n_slices is the end of the window
        self.boundaries = p.start + (p.end - p.start) * j // n_slices
        # target[j]: shares that should be done by boundary j
        self.target = p.quantity * j // n_slices
        self.sign = 1 if p.side == "buy" else -1
        self.executed = np.zeros(self.n, dtype=np.int64)
        self.next_boundary = np.zeros(self.n, dtype=np.int64)
        self.passive_id = np.full(self.n, -1, dtype=np.int64)
        self.passive_left = np.zeros(self.n, dtype=np.int64)
        self.settle_at = np.zeros(self.n, dtype=np.int64)  # executed is exact once t0 >= this

    @property
    def done(self) -> np.ndarray:
        return self.executed >= self.params.quantity

    def act(self, t0: int, t1: int, view: MarketView) -> OrderBatch:
        if view.phase != Phase.CONTINUOUS:
            return NO_ORDERS
        p = self.params
        n_slices = p.slices
        due = int(np.searchsorted(self.boundaries, t1, side="left")) - 1  # last boundary < t1
        if due < 0:
            return NO_ORDERS
        wants = (due >= np.minimum(self.next_boundary, n_slices)) & (self.executed < p.quantity)
        if not wants.any():
            return NO_ORDERS
        when = max(int(self.boundaries[min(due, n_slices)]), t0)

        # a passive order still rests: cancel it and wait for the cancel to settle
        pull = wants & (self.passive_left > 0)
        c_agent = np.flatnonzero(pull)
        c_time = np.full(len(c_agent), when, dtype=np.int64)
        c_oid = self.passive_id[c_agent]
        self.passive_id[c_agent] = -1
        self.passive_left[c_agent] = 0
        self.settle_at[c_agent] = self.arrivals(c_agent, c_time)

        # settled agents: aggressive catch-up, then the next slice's passive order
        go = np.flatnonzero(wants & ~pull & (self.settle_at <= t0))
        j = min(due, n_slices)
        catch_up = self.target[j] - self.executed[go]
        a_agent = go[catch_up > 0]
        a_size = catch_up[catch_up > 0]
        slice_qty = int(self.target[j + 1] - self.target[j]) if j < n_slices else 0
        p_agent = go if slice_qty > 0 else go[:0]
        t_go = np.full(len(go), when, dtype=np.int64)
        self.next_boundary[go] = j + 1
        self.settle_at[go] = self.arrivals(go, t_go)

        act_agent = np.concatenate([a_agent, p_agent])
        act_time = np.full(len(act_agent), when, dtype=np.int64)
        obs = self.observe(view, act_agent, act_time)
        bid, ask, mid = obs[:, BEST_BID], obs[:, BEST_ASK], obs[:, MID]
        mid = np.where(mid > 0, mid, float(self.reference_ticks))
        if self.sign > 0:
            near = np.where(bid > 0, bid, np.ceil(mid) - 1)
            far = np.where(ask > 0, ask, np.ceil(mid)) + p.ioc_ticks
        else:
            near = np.where(ask > 0, ask, np.floor(mid) + 1)
            far = np.where(bid > 0, bid, np.floor(mid)) - p.ioc_ticks
        na = len(a_agent)
        if p.aggressive == "market":
            a_type, a_price = _MARKET, np.full(na, np.nan)
        else:
            a_type, a_price = _IOC, np.maximum(far[:na], 1.0)
        p_price = np.maximum(near[na:], 1.0)
        a_oid = self.new_order_ids(a_agent)
        p_oid = self.new_order_ids(p_agent)
        self.passive_id[p_agent] = p_oid
        self.passive_left[p_agent] = slice_qty

        nc, npas = len(c_agent), len(p_agent)
        return self.orders(
            np.concatenate([c_agent, act_agent]),
            np.concatenate([c_time, act_time]),
            np.concatenate(
                [
                    np.full(nc, _CANCEL, dtype=np.int8),
                    np.full(na, a_type, dtype=np.int8),
                    np.full(npas, _LIMIT, dtype=np.int8),
                ]
            ),
            np.concatenate([np.zeros(nc, np.int8), np.full(na + npas, self.sign, np.int8)]),
            np.concatenate([np.full(nc, np.nan), a_price, p_price]),
            np.concatenate([np.zeros(nc), a_size, np.full(npas, slice_qty)]).astype(np.float64),
            order_id=np.concatenate([c_oid, a_oid, p_oid]),
        )

    def on_fills(self, fills: Fills) -> None:
        super().on_fills(fills)
        if len(fills.order_id) == 0:
            return
        a = np.asarray(fills.agent_index, dtype=np.int64)
        size = np.asarray(fills.size, dtype=np.int64)
        np.add.at(self.executed, a, size)
        passive = np.asarray(fills.order_id, dtype=np.int64) == self.passive_id[a]
        np.subtract.at(self.passive_left, a[passive], size[passive])
        np.maximum(self.passive_left, 0, out=self.passive_left)
