"""What a learning agent observes: one float32 vector per agent, every feature scaled to
roughly [-1, 1] and clipped to [-CLIP, CLIP].

The RL environment (``mars_ray.rl.env``) and a trained policy running inside a simulation
both build their observations here, so a policy sees the same numbers in training and in
``mars-ray simulate``. docs/rl.md gives the table of features and scales; ``FEATURES``
below is that table in code (name, count, scale).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agents.view import MID, VOLUME

LEVELS = 5  # book levels per side
RETURNS = 4  # recent mid returns (one per step)
CLIP = 10.0  # every feature is clipped to [-CLIP, CLIP]

PRICE_SCALE_TICKS = 10.0  # a level's distance from the mid, a spread: ticks / 10
SIZE_LOG_SCALE = 10.0  # sizes and volume: log1p(shares) / 10
RETURN_SCALE_BP = 10.0  # mid returns: basis points / 10

# (name, how many, what it is and its scale): the docs table, in observation order
FEATURES: tuple[tuple[str, int, str], ...] = (
    ("bid_distance", LEVELS, "(mid - bid price of level k) in ticks / 10; 0 for an empty level"),
    ("bid_size", LEVELS, "log1p(shares at bid level k) / 10"),
    ("ask_distance", LEVELS, "(ask price of level k - mid) in ticks / 10; 0 for an empty level"),
    ("ask_size", LEVELS, "log1p(shares at ask level k) / 10"),
    ("spread", 1, "best ask - best bid in ticks / 10; 0 when a side is empty"),
    ("imbalance", 1, "(bid size - ask size) / (bid size + ask size) at the touch, in [-1, 1]"),
    ("mid_return", RETURNS, "mid return over each of the last steps, newest first, in bp / 10"),
    ("volume", 1, "log1p(shares traded in the last step) / 10"),
    ("inventory", 1, "position / the role's inventory scale (max_inventory or quantity)"),
    ("cash", 1, "cash / (inventory scale x reference price), both in ticks"),
    ("open_bid", 1, "shares of the agent's resting buy orders / inventory scale"),
    ("open_ask", 1, "shares of the agent's resting sell orders / inventory scale"),
    ("time_left", 1, "fraction of the episode's steps still to come, in [0, 1]"),
    ("quantity_left", 1, "execution: fraction of the parent order still to do; 0 otherwise"),
)
N_OBS = sum(count for _, count, _ in FEATURES)


@dataclass
class OwnState:
    """What an agent knows of itself (shares and ticks), for ``observation``."""

    inventory: float
    cash: float  # ticks x shares
    open_bid: float
    open_ask: float
    time_left: float  # fraction
    quantity_left: float  # fraction (execution), else 0
    scale: float  # shares: max_inventory, or the parent quantity
    reference_ticks: float


def market_features(depth: np.ndarray, history: np.ndarray) -> np.ndarray:
    """The market part: ``depth`` is (levels, 4) ask px, ask size, bid px, bid size (the
    book's snapshot), ``history`` the view's rows (``agents.view``), newest first."""
    return np.array(_market_values(depth, history))


def _market_values(depth: np.ndarray, history: np.ndarray) -> list[float]:
    """``market_features`` as a list. A few values per book and step: Python floats (the
    same float64 arithmetic as numpy's) and one ``log1p`` call cost less than a numpy call
    per feature."""
    out = [0.0] * (4 * LEVELS + 3 + RETURNS)
    n = min(LEVELS, len(depth))
    levels = depth[:n].tolist()
    logs = (np.log1p(depth[:n].astype(np.float64)) / SIZE_LOG_SCALE).tolist()
    mid = float(history[0, MID])
    for i, (ask_px, _, bid_px, _) in enumerate(levels):
        out[i] = (mid - bid_px) / PRICE_SCALE_TICKS if bid_px > 0 else 0.0
        out[LEVELS + i] = logs[i][3]
        out[2 * LEVELS + i] = (ask_px - mid) / PRICE_SCALE_TICKS if ask_px > 0 else 0.0
        out[3 * LEVELS + i] = logs[i][1]
    k = 4 * LEVELS
    if n:
        ask_px, ask_sz, bid_px, bid_sz = levels[0]
        if bid_px > 0 and ask_px > 0:
            out[k] = (ask_px - bid_px) / PRICE_SCALE_TICKS
        top = bid_sz + ask_sz
        out[k + 1] = (bid_sz - ask_sz) / top if top > 0 else 0.0
    mids = history[: RETURNS + 1, MID].tolist()
    for i in range(len(mids) - 1):
        new, old = mids[i], mids[i + 1]
        if new > 0 and old > 0:
            out[k + 2 + i] = (new / old - 1.0) * 1e4 / RETURN_SCALE_BP
    out[k + 2 + RETURNS] = np.log1p(max(float(history[0, VOLUME]), 0.0)) / SIZE_LOG_SCALE
    return out


def own_features(own: OwnState) -> list[float]:
    scale = max(own.scale, 1.0)
    return [
        own.inventory / scale,
        own.cash / (scale * max(own.reference_ticks, 1.0)),
        own.open_bid / scale,
        own.open_ask / scale,
        own.time_left,
        own.quantity_left,
    ]


def observations(depth: np.ndarray, history: np.ndarray, owns: list[OwnState]) -> np.ndarray:
    """Several agents' observations of one book, (len(owns), N_OBS) float32 clipped to
    [-CLIP, CLIP]; the market part is computed once, the agents' parts in one array."""
    market = _market_values(depth, history)
    rows = np.array([market + own_features(own) for own in owns], dtype=np.float64)
    rows = rows.reshape(len(owns), N_OBS)
    np.clip(rows, -CLIP, CLIP, out=rows)
    return rows.astype(np.float32)
