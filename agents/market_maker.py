"""Market makers: two-sided quotes around the mid, skewed against inventory.

On each wake-up an agent pulls its live quotes and posts a new bid and ask at
``mid ± half_spread`` shifted by ``-skew * inventory / max_inventory`` ticks
(the Avellaneda-Stoikov idea: a long maker lowers both quotes to sell more and
buy less). A side whose fill would take |inventory| past ``max_inventory`` is
not quoted. Quotes are tracked per agent (id, remaining size) from fills, so a
maker only cancels quotes it believes still rest.

Phases: quotes only in continuous trading by default; with ``quote_in_call``
also during call phases (the quotes then take part in the auction). Outside
those phases a maker does nothing and its resting quotes stay where they are.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field, model_validator

from agents.base import (
    MID,
    NO_ORDERS,
    AgentParams,
    AgentPopulation,
    Fills,
    MarketView,
    first_wakeups,
)
from agents.registry import register
from mars_ray.exchange.book import Phase
from mars_ray.exchange.orders import OrderBatch
from mars_ray.schema import OrderType

_LIMIT = int(OrderType.LIMIT)
_CANCEL = int(OrderType.CANCEL)


class MarketMakerParams(AgentParams):
    rate: float = Field(
        default=1.0,
        gt=0,
        le=1000,
        description="requotes per agent per second (at most one per step)",
    )
    half_spread: float = Field(default=1.0, gt=0, description="ticks from the mid to each quote")
    skew: float = Field(
        default=2.0, ge=0, description="ticks both quotes move down at inventory = max_inventory"
    )
    quote_size: int = Field(default=100, gt=0, description="shares per quote")
    max_inventory: int = Field(default=1000, gt=0, description="|inventory| cap in shares")
    quote_in_call: bool = Field(default=False, description="also quote during call phases")

    @model_validator(mode="after")
    def _size_fits(self) -> MarketMakerParams:
        if self.quote_size > self.max_inventory:
            raise ValueError(
                f"quote_size ({self.quote_size}) must not exceed "
                f"max_inventory ({self.max_inventory})"
            )
        return self


@register
class MarketMakers(AgentPopulation):
    """Inventory-skewed two-sided quoting; at most one requote per agent per step."""

    kind = "market_maker"
    params_model = MarketMakerParams
    params: MarketMakerParams

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.bid_id = np.full(self.n, -1, dtype=np.int64)
        self.ask_id = np.full(self.n, -1, dtype=np.int64)
        self.bid_left = np.zeros(self.n, dtype=np.int64)  # remaining size of the live quote
        self.ask_left = np.zeros(self.n, dtype=np.int64)

    def act(self, t0: int, t1: int, view: MarketView) -> OrderBatch:
        p = self.params
        if not (view.phase == Phase.CONTINUOUS or (view.phase == Phase.CALL and p.quote_in_call)):
            return NO_ORDERS
        idx, times = first_wakeups(*self.wakeups(t0, t1, p.rate))
        if len(idx) == 0:
            return NO_ORDERS
        mid = self.observe(view, idx, times)[:, MID]
        mid = np.where(mid > 0, mid, float(self.reference_ticks))
        inv = self.inventory[idx]
        center = mid - p.skew * inv / p.max_inventory
        bid_px = np.maximum(np.floor(center - p.half_spread), 1.0)
        ask_px = np.maximum(np.ceil(center + p.half_spread), bid_px + 1.0)
        want_bid = inv + p.quote_size <= p.max_inventory
        want_ask = inv - p.quote_size >= -p.max_inventory

        # pull the quotes that still rest (per our fills); forget them either way
        cb = self.bid_left[idx] > 0
        ca = self.ask_left[idx] > 0
        cancel_agent = np.concatenate([idx[cb], idx[ca]])
        cancel_time = np.concatenate([times[cb], times[ca]])
        cancel_oid = np.concatenate([self.bid_id[idx[cb]], self.ask_id[idx[ca]]])

        b_agent, b_time, b_px = idx[want_bid], times[want_bid], bid_px[want_bid]
        a_agent, a_time, a_px = idx[want_ask], times[want_ask], ask_px[want_ask]
        new_agent = np.concatenate([b_agent, a_agent])
        new_oid = self.new_order_ids(new_agent)
        nb = len(b_agent)
        self.bid_id[idx] = -1
        self.ask_id[idx] = -1
        self.bid_left[idx] = 0
        self.ask_left[idx] = 0
        self.bid_id[b_agent] = new_oid[:nb]
        self.bid_left[b_agent] = p.quote_size
        self.ask_id[a_agent] = new_oid[nb:]
        self.ask_left[a_agent] = p.quote_size

        nc, nn = len(cancel_oid), len(new_oid)
        side = np.ones(nn, dtype=np.int8)
        side[nb:] = -1
        return self.orders(
            np.concatenate([cancel_agent, new_agent]),
            np.concatenate([cancel_time, b_time, a_time]),
            np.concatenate([np.full(nc, _CANCEL, np.int8), np.full(nn, _LIMIT, np.int8)]),
            np.concatenate([np.zeros(nc, dtype=np.int8), side]),
            np.concatenate([np.full(nc, np.nan), b_px, a_px]),
            np.concatenate([np.zeros(nc), np.full(nn, float(p.quote_size))]),
            order_id=np.concatenate([cancel_oid, new_oid]),
        )

    def on_fills(self, fills: Fills) -> None:
        super().on_fills(fills)
        if len(fills.order_id) == 0:
            return
        a = np.asarray(fills.agent_index, dtype=np.int64)
        oid = np.asarray(fills.order_id, dtype=np.int64)
        size = np.asarray(fills.size, dtype=np.int64)
        on_bid = oid == self.bid_id[a]
        on_ask = oid == self.ask_id[a]
        np.subtract.at(self.bid_left, a[on_bid], size[on_bid])
        np.subtract.at(self.ask_left, a[on_ask], size[on_ask])
        np.maximum(self.bid_left, 0, out=self.bid_left)
        np.maximum(self.ask_left, 0, out=self.ask_left)
