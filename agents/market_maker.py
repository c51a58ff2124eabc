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

The step and the fill bookkeeping run in numba (``agents/kernels.py``); this class
keeps the state and draws the wake-up times (``first_wakeups``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field, model_validator

from agents.base import NO_ORDERS, AgentParams, AgentPopulation
from agents.kernels import as_int64, maker_fills, maker_step, to_batch
from agents.view import Fills, MarketView
from mars_ray.exchange.orders import OrderBatch
from mars_ray.schema.phases import Phase
from mars_ray.schema.quantities import Shares, Ticks


class MarketMakerParams(AgentParams):
    rate: float = Field(
        default=1.0,
        gt=0,
        le=1000,
        description="requotes per agent per second (at most one per step)",
    )
    half_spread: Ticks = Field(default=1.0, gt=0, description="ticks from the mid to each quote")
    skew: Ticks = Field(
        default=2.0, ge=0, description="ticks both quotes move down at inventory = max_inventory"
    )
    quote_size: Shares = Field(default=100, description="shares per quote")
    max_inventory: Shares = Field(default=1000, description="|inventory| cap in shares")
    quote_in_call: bool = Field(default=False, description="also quote during call phases")

    @model_validator(mode="after")
    def _size_fits(self) -> MarketMakerParams:
        if self.quote_size > self.max_inventory:
            raise ValueError(
                f"quote_size ({self.quote_size}) must not exceed "
                f"max_inventory ({self.max_inventory})"
            )
        return self


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
        p = self.params
        self._params = np.array(
            [
                p.half_spread,
                p.skew,
                p.quote_size,
                p.max_inventory,
                self.reference_ticks,
                self.tick_size,
            ],
            dtype=np.float64,
        )

    def act(self, t0: int, t1: int, view: MarketView) -> OrderBatch:
        p = self.params
        if not (view.phase == Phase.CONTINUOUS or (view.phase == Phase.CALL and p.quote_in_call)):
            return NO_ORDERS
        awake, times = self.first_wakeups(t0, t1, p.rate)
        if not len(awake):
            return NO_ORDERS
        columns, self._order_counter = maker_step(
            awake,
            times,
            view.history,
            view.times,
            self.data_latency_ns,
            self.order_latency_ns,
            self.agent_ids,
            self.inventory,
            self.quote_id,
            self.quote_left,
            self._order_counter,
            self._params,
        )
        if not len(columns[0]):  # awake, but inventory allows no side and no quote rests
            return NO_ORDERS
        return to_batch(columns, self.trajectory, self.instrument)

    def on_fills(self, fills: Fills) -> None:
        super().on_fills(fills)
        maker_fills(
            self.quote_id,
            self.quote_left,
            as_int64(fills.agent_index),
            as_int64(fills.order_id),
            as_int64(fills.size),
        )
