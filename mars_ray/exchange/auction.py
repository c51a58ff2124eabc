"""Call-auction price determination, as continental exchanges (Xetra, Euronext) do it.

Among all candidate prices (every limit price in the book, plus the reference
price), the auction price is chosen by these rules, each breaking the ties of
the one before:

1. **maximum executable volume** ``min(demand(p), supply(p))``;
2. **minimum surplus** ``|demand(p) - supply(p)|``;
3. **market pressure**: if every remaining candidate has surplus on the buy
   side, the highest price; if every one has it on the sell side, the lowest;
4. **reference price**: the candidate closest to the reference price (last
   trade, else the instrument's reference); without one, the candidate closest
   to the middle of the remaining range. A remaining exact tie takes the lower price.

``demand(p)`` sums buy orders with limit >= p plus market buys; ``supply(p)``
sums sells with limit <= p plus market sells.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class UncrossResult:
    price: int  # 0 when nothing can trade
    volume: int
    surplus: int  # demand - supply at the price (positive: buy pressure)


def find_uncross_price(
    buys: list[tuple[int, int]],
    sells: list[tuple[int, int]],
    reference: int | None,
    market_buy_price: int,
    market_sell_price: int,
) -> UncrossResult:
    """``buys`` best (highest) first and ``sells`` best (lowest) first, as (price, size)."""
    limit_prices = {p for p, _ in buys if p != market_buy_price}
    limit_prices |= {p for p, _ in sells if p != market_sell_price}
    if reference is not None and reference > 0:
        limit_prices.add(reference)
    if not buys or not sells or not limit_prices:
        return UncrossResult(0, 0, 0)
    candidates = np.array(sorted(limit_prices), dtype=np.int64)

    buy_px = np.array([p for p, _ in buys], dtype=np.int64)[::-1]  # ascending
    buy_sz = np.array([s for _, s in buys], dtype=np.int64)[::-1]
    sell_px = np.array([p for p, _ in sells], dtype=np.int64)  # ascending
    sell_sz = np.array([s for _, s in sells], dtype=np.int64)

    # demand(p): sizes of buys with price >= p  (suffix sums over ascending prices)
    buy_suffix = np.concatenate([np.cumsum(buy_sz[::-1])[::-1], [0]])
    demand = buy_suffix[np.searchsorted(buy_px, candidates, side="left")]
    # supply(p): sizes of sells with price <= p (prefix sums)
    sell_prefix = np.concatenate([[0], np.cumsum(sell_sz)])
    supply = sell_prefix[np.searchsorted(sell_px, candidates, side="right")]

    volume = np.minimum(demand, supply)
    best_volume = int(volume.max())
    if best_volume == 0:
        return UncrossResult(0, 0, 0)
    keep = volume == best_volume
    surplus = demand - supply
    abs_surplus = np.abs(surplus)
    keep &= abs_surplus == abs_surplus[keep].min()
    idx = np.flatnonzero(keep)
    kept_surplus = surplus[idx]
    if np.all(kept_surplus > 0):
        chosen = idx[-1]
    elif np.all(kept_surplus < 0):
        chosen = idx[0]
    else:
        prices = candidates[idx]
        if reference is not None and reference > 0:
            target = float(reference)
        else:
            target = (float(prices[0]) + float(prices[-1])) / 2.0
        # argmin returns the first minimum, i.e. the lower price on an exact tie
        chosen = idx[int(np.argmin(np.abs(prices - target)))]
    return UncrossResult(int(candidates[chosen]), best_volume, int(surplus[chosen]))
