"""What an agent sees of its book and hears of its orders, shared by every agent kind and
by the compiled kernels (``agents.kernels``), which read the same columns."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mars_ray.schema.phases import Phase

# Columns of MarketView.history (float64, prices in ticks; 0 = no such price)
BEST_BID, BEST_ASK, BID_SIZE, ASK_SIZE, LAST, VOLUME, MID = range(7)
N_FEATURES = 7


@dataclass
class MarketView:
    """What agents of one book may know: snapshots taken at the last step boundaries.

    ``history[0]`` is the newest (taken at ``times[0]``), ``history[k]`` k steps older.
    ``MID`` falls back to the last trade, then to the reference price, when a side is empty.
    """

    history: np.ndarray  # (H, N_FEATURES) float64
    times: np.ndarray  # (H,) int64, descending
    depth: np.ndarray  # (levels, 4) int64 top-of-book of the newest snapshot (LOBSTER order)
    phase: Phase  # the phase at the start of the step


@dataclass
class Fills:
    """Trades of one population's agents in one step (one row per fill per agent)."""

    agent_index: np.ndarray  # index into the population's agents
    order_id: np.ndarray
    side: np.ndarray  # side of this agent's order
    price: np.ndarray  # ticks
    size: np.ndarray
