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
)
from agents.registry import register
from mars_ray.exchange.book import Phase
from mars_ray.exchange.orders import OrderBatch
from mars_ray.schema import OrderType

_LIMIT = int(OrderType.LIMIT)
_CANCEL = int(OrderType.CANCEL)
_SIGN = np.array([[1], [-1]], dtype=np.int64)  # a bid's fill adds to inventory, an ask's takes


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
        # row 0 the bid, row 1 the ask: (order id or -1, remaining size of the live quote)
        self.quote_id = np.full((2, self.n), -1, dtype=np.int64)
        self.quote_left = np.zeros((2, self.n), dtype=np.int64)
        self.bid_id, self.ask_id = self.quote_id  # views
        self.bid_left, self.ask_left = self.quote_left
        self._sides = np.broadcast_to(_SIGN.astype(np.int8), (2, self.n))  # order side per row

    def act(self, t0: int, t1: int, view: MarketView) -> OrderBatch:
        p = self.params
        if not (view.phase == Phase.CONTINUOUS or (view.phase == Phase.CALL and p.quote_in_call)):
            return NO_ORDERS
        idx, times = self.first_wakeups(t0, t1, p.rate)
        m = len(idx)
        if m == 0:
            return NO_ORDERS
        mid = self.observe(view, idx, times)[:, MID]
        mid = np.where(mid > 0, mid, float(self.reference_ticks))
        inv = self.inventory[idx]
        center = mid - p.skew * inv / p.max_inventory
        # both quotes at once, a row per side (bids first, as in the batch)
        px = np.empty((2, m))
        np.maximum(np.floor(center - p.half_spread), 1.0, out=px[0])
        np.maximum(np.ceil(center + p.half_spread), px[0] + 1.0, out=px[1])
        # a side is quoted when its fill keeps |inventory| within the cap
        want = inv * _SIGN <= p.max_inventory - p.quote_size
        agents = np.concatenate((idx, idx)).reshape(2, m)
        when = np.concatenate((times, times)).reshape(2, m)

        # pull the quotes that still rest (per our fills); forget them either way
        live = self.quote_left[:, idx] > 0
        cancel_oid = self.quote_id[:, idx][live]
        new_agent = agents[want]
        new_oid = self.new_order_ids(new_agent)
        ids = np.full((2, m), -1, dtype=np.int64)
        ids[want] = new_oid
        self.quote_id[:, idx] = ids
        self.quote_left[:, idx] = want * p.quote_size

        nc, nn = len(cancel_oid), len(new_oid)
        otype = np.full(nc + nn, _LIMIT, np.int8)
        otype[:nc] = _CANCEL
        price = np.full(nc + nn, np.nan)
        price[nc:] = px[want]
        size = np.full(nc + nn, float(p.quote_size))
        size[:nc] = 0.0
        return self.orders(
            np.concatenate([agents[live], new_agent]),
            np.concatenate([when[live], when[want]]),
            otype,
            np.concatenate([np.zeros(nc, dtype=np.int8), self._sides[:, :m][want]]),
            price,
            size,
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
        np.maximum(self.quote_left, 0, out=self.quote_left)
