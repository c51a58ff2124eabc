"""Compile the agent kernels once, into numba's on-disk cache (the set-up script runs it),
so that the first simulation after an install does not compile them in every shard."""

from __future__ import annotations

import numpy as np

from agents.base import LatencyConfig
from agents.market_maker import MarketMakerParams, MarketMakers
from agents.noise import NoiseTraderParams, NoiseTraders
from agents.view import BEST_ASK, BEST_BID, MID, N_FEATURES, Fills, MarketView
from mars_ray.schema.phases import Phase


def warm_up() -> None:
    """One step and one fill of each compiled kind, on a small book."""
    history = np.zeros((3, N_FEATURES))
    history[:, BEST_BID], history[:, BEST_ASK], history[:, MID] = 99, 101, 100
    view = MarketView(history, np.array([10**9, 0, -(10**9)]), np.zeros((1, 4)), Phase.CONTINUOUS)
    for cls, params in ((NoiseTraders, NoiseTraderParams()), (MarketMakers, MarketMakerParams())):
        agents = cls(
            params, np.arange(1, 5), 0, 0, 0.01, 100, LatencyConfig(), np.random.default_rng(0)
        )
        batch = agents.act(10**9, 10**10, view)
        filled = np.arange(min(2, len(batch)))
        size = np.full(len(filled), 100, np.int64)
        agent = batch.agent_id[filled] - 1
        agents.on_fills(Fills(agent, batch.order_id[filled], batch.side[filled], size, size))
