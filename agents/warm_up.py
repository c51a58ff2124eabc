"""Compile the agent kernels once, into numba's on-disk cache (the set-up script runs it),
so that the first simulation after an install does not compile them in every shard."""

from __future__ import annotations

import numpy as np

from agents.base import LatencyConfig
from agents.kernels import pushed_history
from agents.market_maker import MarketMakerParams, MarketMakers
from agents.momentum import MomentumParams, MomentumTraders
from agents.noise import NoiseTraderParams, NoiseTraders
from agents.value import ValueTraderParams, ValueTraders
from agents.view import BEST_ASK, BEST_BID, MID, N_FEATURES, Fills, MarketView
from mars_ray.exchange.exchange import Exchange, InstrumentSpec
from mars_ray.exchange.orders import OrderBatch
from mars_ray.schema.phases import Phase


def warm_up() -> None:
    """One step and one fill of each compiled kind, on a small book; the step's orders
    sorted, split and checked by an exchange as the kernel does; a view pushed."""
    history = np.zeros((3, N_FEATURES))
    history[:, BEST_BID], history[:, BEST_ASK], history[:, MID] = 99, 101, 100
    times = np.array([10**9, 0, -(10**9)])
    view = MarketView(history, times, np.zeros((1, 4), np.int64), Phase.CONTINUOUS)
    kinds = (
        (NoiseTraders, NoiseTraderParams()),
        (MarketMakers, MarketMakerParams()),
        (ValueTraders, ValueTraderParams(rate=1000, threshold=0)),
        (MomentumTraders, MomentumParams(rate=1000)),
    )
    batches = []
    for cls, params in kinds:
        agents = cls(
            params, np.arange(1, 5), 0, 0, 0.01, 100, LatencyConfig(), np.random.default_rng(0)
        )
        batch = agents.act(10**9, 10**10, view)
        batches.append(batch)
        filled = np.arange(min(2, len(batch)))
        size = np.full(len(filled), 100, np.int64)
        agent = batch.agent_id[filled] - 1
        agents.on_fills(Fills(agent, batch.order_id[filled], batch.side[filled], size, size))
    due, _ = OrderBatch.concat(batches).sorted_split(5 * 10**9)
    Exchange([InstrumentSpec("X", 0.01, 100)], [0], [0]).process(due)
    pushed_history(history, times, np.zeros((1, 4), np.int64), 100, 0, 2 * 10**9)
