"""Orders as tokens, and the book as features: the LMM's vocabulary (docs/lmm.md).

Every order of one book is one token of four components, each small enough for
a softmax: what it is (``Kind``), where it is relative to the book before it
(a price level in ticks from its own side's best quote), how big it is and how
long after the previous order it came (quantile bins fitted on the training
split). Relative price levels make a token mean the same thing at any price and
for any instrument, which is what lets one model learn from real and simulated
books at once.

Everything is vectorised numpy over arrays of orders, because the corpus holds
millions of them; the scalar helpers (``encode_price_level``, ``decode_price``)
accept Python ints as well, for agents that decode one order at a time.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import numpy as np

from mars_ray.schema.events import OrderType

# ----------------------------------------------------------------------------- sizes
N_KINDS = 4
N_PRICE = 24
N_SIZE = 16
N_GAP = 16
COMPONENT_SIZES: tuple[int, int, int, int] = (N_KINDS, N_PRICE, N_SIZE, N_GAP)
VOCAB_SIZE = N_KINDS * N_PRICE * N_SIZE * N_GAP  # 24,576 joint token ids

BOOK_LEVELS = 10  # levels per side that book_features reads
N_BOOK = 2 * BOOK_LEVELS + 4  # sizes per level, spread, ask/bid widths, time of day

# ----------------------------------------------------------------------------- price levels
MARKETABLE = 0  # a new order that reaches the opposite touch (market orders included)
INSIDE = 1  # strictly inside the spread: improves its own side's best quote
BEHIND = 2  # level of an order at its own side's best; BEHIND + j is j ticks behind it
MAX_BEHIND = 20  # the farthest distance with a level of its own
DEEP = BEHIND + MAX_BEHIND + 1  # 23: more than MAX_BEHIND ticks behind
DEEP_TICKS = 28  # a DEEP token is decoded this far behind: the median of GOOG 2012-06-21
assert DEEP == N_PRICE - 1

# time of day feature: 0 at the open, 1 at the close of a regular session
OPEN_NS = 9 * 3_600_000_000_000 + 30 * 60_000_000_000  # 09:30
SESSION_NS = 6 * 3_600_000_000_000 + 30 * 60_000_000_000  # 6.5 h


class Kind(IntEnum):
    """What an order does; cancels (full or partial) name the side of the resting order."""

    BUY = 0
    SELL = 1
    CANCEL_BUY = 2
    CANCEL_SELL = 3


NEW_KINDS = frozenset({Kind.BUY, Kind.SELL})
CANCEL_KINDS = frozenset({Kind.CANCEL_BUY, Kind.CANCEL_SELL})
BUY_KINDS = frozenset({Kind.BUY, Kind.CANCEL_BUY})


def kind_side(kind: np.ndarray | int) -> np.ndarray | int:
    """+1 (buy) or -1 (sell) for each kind: the side of the order placed or cancelled."""
    k = np.asarray(kind)
    side = np.where((k == Kind.BUY) | (k == Kind.CANCEL_BUY), 1, -1).astype(np.int8)
    return int(side) if side.ndim == 0 else side


# book feature columns read in the other side's place: asks <-> bids, ask width <-> bid width
MIRROR_BOOK = np.r_[np.arange(BOOK_LEVELS, 2 * BOOK_LEVELS), np.arange(BOOK_LEVELS), 20, 22, 21, 23]


def mirror(components: np.ndarray, book: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The same orders with buy and sell swapped: every kind on the other side and the
    book seen from it. Price levels count from an order's own best, so they stay; an exact
    relabelling of a window, which training uses to learn flow with no favoured side."""
    flipped = components.copy()
    flipped[..., 0] ^= 1  # BUY <-> SELL, CANCEL_BUY <-> CANCEL_SELL
    return flipped, book[..., MIRROR_BOOK]


# ----------------------------------------------------------------------------- joint ids
def token_ids(components: np.ndarray) -> np.ndarray:
    """(..., 4) components -> joint ids ((kind*24 + price)*16 + size)*16 + gap, int64."""
    c = np.asarray(components, dtype=np.int64)
    if c.shape[-1:] != (4,):
        raise ValueError(f"components must have a last axis of 4, got shape {c.shape}")
    _check_components(c)
    return ((c[..., 0] * N_PRICE + c[..., 1]) * N_SIZE + c[..., 2]) * N_GAP + c[..., 3]


def token_components(ids: np.ndarray) -> np.ndarray:
    """Joint ids -> (..., 4) components (kind, price level, size bin, gap bin), int64."""
    i = np.asarray(ids, dtype=np.int64)
    if i.size and (i.min() < 0 or i.max() >= VOCAB_SIZE):
        bad = i[(i < 0) | (i >= VOCAB_SIZE)].reshape(-1)[0]
        raise ValueError(f"token id {int(bad)} is outside 0..{VOCAB_SIZE - 1}")
    rest, gap = np.divmod(i, N_GAP)
    rest, size = np.divmod(rest, N_SIZE)
    kind, price = np.divmod(rest, N_PRICE)
    return np.stack([kind, price, size, gap], axis=-1)


def _check_components(c: np.ndarray) -> None:
    """Refuse a component outside its range: a wrapped id would silently mean another order."""
    for axis, (name, n) in enumerate(
        zip(("kind", "price level", "size bin", "gap bin"), COMPONENT_SIZES, strict=True)
    ):
        col = c[..., axis]
        bad = (col < 0) | (col >= n)
        if bad.any():
            raise ValueError(f"{name} {int(col[bad].reshape(-1)[0])} is outside 0..{n - 1}")


# ----------------------------------------------------------------------------- price rules
def _anchor(
    buy: np.ndarray, best_bid: np.ndarray, best_ask: np.ndarray, reference: np.ndarray
) -> np.ndarray:
    """The price an order's distance is measured from: its own side's best quote; with its
    own side empty, one tick inside the opposite best; with both empty, the reference."""
    own = np.where(buy, best_bid, best_ask)
    opp = np.where(buy, best_ask, best_bid)
    sign = np.where(buy, 1, -1)
    return np.where(own > 0, own, np.where(opp > 0, opp - sign, reference))


def encode_price_level(ticks_behind: np.ndarray | int) -> np.ndarray | int:
    """Distance behind the anchor (ticks, <0 = better than it) -> level INSIDE / BEHIND+j /
    DEEP. MARKETABLE needs the opposite quote, so ``price_levels`` decides it."""
    j = np.asarray(ticks_behind, dtype=np.int64)
    level = np.where(j < 0, INSIDE, np.where(j > MAX_BEHIND, DEEP, BEHIND + j)).astype(np.int8)
    return int(level) if level.ndim == 0 else level


def price_levels(
    kind: np.ndarray,
    price: np.ndarray,
    best_bid: np.ndarray,
    best_ask: np.ndarray,
    reference: np.ndarray | int,
) -> np.ndarray:
    """The price level (0..23) of each order against the book before it (docs/lmm.md).

    Prices and quotes in ticks; a quote of 0 is an empty side. Cancels use the
    same rule for the cancelled order's price, so a cancel at or through the
    opposite touch (possible only in a crossed book) is MARKETABLE as well.
    """
    kind, price, bid, ask, ref = np.broadcast_arrays(
        *(np.asarray(a, dtype=np.int64) for a in (kind, price, best_bid, best_ask, reference))
    )
    buy = (kind == Kind.BUY) | (kind == Kind.CANCEL_BUY)
    sign = np.where(buy, 1, -1)
    opp = np.where(buy, ask, bid)
    crosses = (opp > 0) & (sign * (price - opp) >= 0)
    behind = sign * (_anchor(buy, bid, ask, ref) - price)
    level = np.asarray(encode_price_level(behind), dtype=np.int8)
    return np.where(crosses, np.int8(MARKETABLE), level).astype(np.int8)


def decode_price(
    level: np.ndarray | int,
    side: np.ndarray | int,
    best_bid: np.ndarray | int,
    best_ask: np.ndarray | int,
    reference: np.ndarray | int,
    cancel: np.ndarray | bool = False,
    scale: float = 1.0,
) -> tuple[np.ndarray | int, np.ndarray | bool]:
    """A price level back to a price in ticks (>= 1) on the current book, and whether the
    order is marketable (a new order at level MARKETABLE: send it as a market order).

    MARKETABLE gives the opposite touch (the anchor if that side is empty), INSIDE one
    tick better than the own best when the spread leaves room (else the anchor), BEHIND+j
    the anchor j ticks back, DEEP ``DEEP_TICKS`` back. For a cancel (``cancel`` true)
    the price is the level to cancel at; MARKETABLE and INSIDE, where no resting order of
    its side can be, then mean the anchor (the own best), and it is never marketable.
    ``scale``: ticks here per tick of the model's training books (the price regime), by
    which a distance behind the anchor is multiplied (rounded half to even).
    """
    scalar = all(np.ndim(a) == 0 for a in (level, side, best_bid, best_ask, reference, cancel))
    if scalar:
        return decode_price_one(
            int(level),
            int(side),
            int(best_bid),
            int(best_ask),
            int(reference),
            bool(cancel),
            scale,
        )
    level, side, bid, ask, ref, cancel = np.broadcast_arrays(
        *(
            np.asarray(a, dtype=np.int64)
            for a in (level, side, best_bid, best_ask, reference, cancel)
        )
    )
    if level.size and (level.min() < 0 or level.max() >= N_PRICE):
        raise ValueError(
            f"price level {int(level[(level < 0) | (level >= N_PRICE)][0])} "
            f"is outside 0..{N_PRICE - 1}"
        )
    buy = side > 0
    sign = np.where(buy, 1, -1)
    opp = np.where(buy, ask, bid)
    anchor = _anchor(buy, bid, ask, ref)
    behind = np.where(level == DEEP, DEEP_TICKS, np.clip(level - BEHIND, 0, MAX_BEHIND))
    if scale != 1.0:
        behind = np.rint(behind * scale).astype(np.int64)
    price = anchor - sign * behind
    better = anchor + sign
    room = (opp <= 0) | (sign * (opp - better) > 0)  # one tick better does not cross
    price = np.where(level == INSIDE, np.where(room, better, anchor), price)
    marketable = (level == MARKETABLE) & (cancel == 0)
    price = np.where(marketable, np.where(opp > 0, opp, anchor), price)
    price = np.where((cancel != 0) & (level <= INSIDE), anchor, price)
    return np.maximum(price, 1), marketable


def decode_price_one(
    level: int,
    side: int,
    best_bid: int,
    best_ask: int,
    reference: int,
    cancel: bool = False,
    scale: float = 1.0,
) -> tuple[int, bool]:
    """``decode_price`` for one order in plain ints: the agents decode one order at a time,
    where numpy's per-call cost on 0-d arrays is most of the work (the same rules, tested
    against the vectorised form over every case)."""
    if not 0 <= level < N_PRICE:
        raise ValueError(f"price level {level} is outside 0..{N_PRICE - 1}")
    buy = side > 0
    sign = 1 if buy else -1
    own, opp = (best_bid, best_ask) if buy else (best_ask, best_bid)
    anchor = own if own > 0 else (opp - sign if opp > 0 else reference)
    if cancel:
        if level <= INSIDE:
            return max(anchor, 1), False
    elif level == MARKETABLE:
        return max(opp if opp > 0 else anchor, 1), True
    if level == INSIDE:
        better = anchor + sign
        room = opp <= 0 or sign * (opp - better) > 0  # one tick better does not cross
        return max(better if room else anchor, 1), False
    behind = DEEP_TICKS if level == DEEP else min(max(level - BEHIND, 0), MAX_BEHIND)
    if scale != 1.0:
        behind = round(behind * scale)
    return max(anchor - sign * behind, 1), False


# ----------------------------------------------------------------------------- book features
def book_features(book: np.ndarray, time_ns: np.ndarray | int) -> np.ndarray:
    """Top-of-book rows -> float32 (n, N_BOOK) features of docs/lmm.md.

    ``book`` is (n, levels, 4) or (n, 4 * levels) in ticks, LOBSTER column order (ask
    px, ask size, bid px, bid size), empty levels 0/0; up to 10 levels are read and
    fewer are padded as empty (a 1-level file). Sizes are log-scaled in round lots
    so that depth from 100 to 100,000 shares spans a range a network handles well.
    A crossed book (possible in a call phase) has spread 0, not a negative one.
    """
    b = np.asarray(book)
    if b.ndim == 2:
        if b.shape[1] % 4:
            raise ValueError(f"flat book rows need a multiple of 4 columns, got {b.shape[1]}")
        b = b.reshape(len(b), -1, 4)
    if b.ndim != 3 or b.shape[2] != 4:
        raise ValueError(f"book must be (n, levels, 4) or (n, 4 * levels), got {b.shape}")
    n, levels = b.shape[0], b.shape[1]
    if levels > BOOK_LEVELS:
        b = b[:, :BOOK_LEVELS]
    elif levels < BOOK_LEVELS:
        b = np.concatenate([b, np.zeros((n, BOOK_LEVELS - levels, 4), dtype=b.dtype)], axis=1)
    b = b.astype(np.float64)
    ask_px, ask_sz, bid_px, bid_sz = b[..., 0], b[..., 1], b[..., 2], b[..., 3]
    out = np.empty((n, N_BOOK), dtype=np.float32)
    out[:, :BOOK_LEVELS] = np.log1p(np.maximum(ask_sz, 0) / 100)
    out[:, BOOK_LEVELS : 2 * BOOK_LEVELS] = np.log1p(np.maximum(bid_sz, 0) / 100)
    a1, b1 = ask_px[:, 0], bid_px[:, 0]
    both = (a1 > 0) & (b1 > 0)
    out[:, 20] = np.log1p(np.where(both, np.maximum(a1 - b1, 0), 0))
    ask_far = np.where(ask_px > 0, ask_px, -np.inf).max(axis=1)
    bid_far = np.where(bid_px > 0, bid_px, np.inf).min(axis=1)
    out[:, 21] = np.log1p(np.where(a1 > 0, np.maximum(ask_far - a1, 0), 0))
    out[:, 22] = np.log1p(np.where(b1 > 0, np.maximum(b1 - bid_far, 0), 0))
    t = np.broadcast_to(np.asarray(time_ns, dtype=np.int64), (n,))
    out[:, 23] = (t - OPEN_NS) / SESSION_NS
    return out


def book_features_one(
    asks: Sequence[tuple[int, int]], bids: Sequence[tuple[int, int]], time_ns: int
) -> list[float]:
    """``book_features`` of one book from its (price, size) levels, best first (at most
    ``BOOK_LEVELS`` each, empty sides allowed; prices > 0): the agents' per-order form, in
    plain floats (equal to the vectorised one to float32 rounding, tested)."""
    log1p = math.log1p
    out = [0.0] * N_BOOK
    for i, (_, size) in enumerate(asks):
        out[i] = log1p(max(size, 0) / 100)
    for i, (_, size) in enumerate(bids):
        out[BOOK_LEVELS + i] = log1p(max(size, 0) / 100)
    if asks and bids:
        out[20] = log1p(max(asks[0][0] - bids[0][0], 0))
    if asks:
        out[21] = log1p(max(asks[-1][0] - asks[0][0], 0))
    if bids:
        out[22] = log1p(max(bids[0][0] - bids[-1][0], 0))
    out[23] = (time_ns - OPEN_NS) / SESSION_NS
    return out


# ----------------------------------------------------------------------------- bins
MAX_CUT_CANDIDATES = 2000  # cut positions the bin fit chooses from (quantile-spaced)


def _even_cuts(share: np.ndarray, n_bins: int) -> np.ndarray:
    """Choose ``n_bins - 1`` of the interior points of ``share`` (cumulative shares, 0 first,
    1 last, increasing) so that the bins' shares have the largest entropy: as even as the
    data allows. Dynamic programming over (bins used, last cut)."""
    points = share.size
    k = min(n_bins, points - 1)
    mass = share[None, :] - share[:, None]  # mass[i, j]: share between points i < j
    with np.errstate(divide="ignore", invalid="ignore"):
        cost = np.where(mass > 0, mass * np.log(mass), np.inf)  # p log p; inf: not i < j
    best = cost[0].copy()  # one bin from point 0 to j
    back = np.zeros((k, points), dtype=np.int64)
    for b in range(1, k):
        total = best[:, None] + cost
        back[b] = np.argmin(total, axis=0)
        best = total[back[b], np.arange(points)]
    cuts, j = [], points - 1
    for b in range(k - 1, 0, -1):
        j = int(back[b, j])
        cuts.append(j)
    return np.array(sorted(cuts), dtype=np.int64)


def _fit_bins(values: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Quantile bins of log(values) for positive integers: (n_bins - 1 edges, n_bins
    representatives).

    Sizes are lumpy (in the default corpus 40% of orders are exactly 100 shares),
    so plain quantiles would repeat edges and leave bins empty. Edges are placed
    between distinct values instead, where they make the bins' shares of the data
    as even as possible (maximum entropy): a heavy value gets a bin of its own and
    the other bins split the rest into equal shares, which is what quantile bins
    do for data without ties. With fewer distinct values than bins, the unused
    bins lie above the largest value. A bin's representative is the median of the
    training values in it (rounded to an integer).
    """
    x = np.sort(np.asarray(values, dtype=np.int64))
    if x.size == 0:
        raise ValueError("cannot fit bins on no values")
    if x[0] < 1:
        raise ValueError(f"bin values must be positive, got {int(x[0])}")
    distinct, counts = np.unique(x, return_counts=True)
    below = np.cumsum(counts)[:-1] / x.size  # share of the data under the cut after each value
    candidates = np.arange(below.size)
    if candidates.size > MAX_CUT_CANDIDATES:
        grid = np.linspace(0, 1, MAX_CUT_CANDIDATES + 1)[1:-1]
        candidates = np.unique(np.clip(np.searchsorted(below, grid), 0, below.size - 1))
    share = np.concatenate([[0.0], below[candidates], [1.0]])
    cuts = candidates[_even_cuts(share, n_bins) - 1]
    logs = np.log(distinct.astype(np.float64))
    edges = (logs[cuts] + logs[cuts + 1]) / 2
    edges = np.concatenate([edges, logs[-1] + 0.5 + np.arange(n_bins - 1 - edges.size)])
    # medians per bin: x is sorted, so every bin is one slice of it
    bins = np.searchsorted(edges, np.log(x.astype(np.float64)), side="right")
    counts_per_bin = np.bincount(bins, minlength=n_bins)
    starts = np.concatenate([[0], np.cumsum(counts_per_bin)[:-1]])
    lo = x[np.minimum(starts + (counts_per_bin - 1) // 2, x.size - 1)]
    hi = x[np.minimum(starts + counts_per_bin // 2, x.size - 1)]
    medians = np.floor((lo + hi) / 2 + 0.5).astype(np.int64)
    # an empty bin (only above the data) decodes to the middle of its edges
    lower = np.concatenate([[edges[0] - 1.0], edges])
    upper = np.concatenate([edges, [edges[-1] + 1.0]])
    empty_value = np.maximum(np.round(np.exp((lower + upper) / 2)), 1).astype(np.int64)
    reps = np.where(counts_per_bin > 0, medians, empty_value)
    return edges, np.maximum.accumulate(reps)


class TokenizerStateError(ValueError):
    """A stored tokenizer state that cannot be used; the message names the key."""


@dataclass(frozen=True)
class DecodedOrders:
    """Tokens decoded against a book: what an agent sends (arrays, one entry per token)."""

    kind: np.ndarray  # int8 Kind
    side: np.ndarray  # int8, +1 buy / -1 sell (of the order placed or cancelled)
    order_type: np.ndarray  # int8 OrderType: MARKET, LIMIT, or CANCEL
    price: np.ndarray  # int64 ticks >= 1: the limit price, or the level to cancel at
    size: np.ndarray  # int64 shares (the size bin's representative)
    gap_ns: np.ndarray  # int64 ns after the previous order (the gap bin's representative)

    def __len__(self) -> int:
        return len(self.kind)

    @property
    def is_cancel(self) -> np.ndarray:
        return self.order_type == int(OrderType.CANCEL)


_STATE_KEYS = ("component_sizes", "size_edges", "size_values", "gap_edges", "gap_values")
N_INSIDE = 17  # quantiles (0, 1/16, ..., 1) of how deep INSIDE orders go into the spread
# the decoding tables' keys, absent in models fitted before them
DECODING_KEYS = ("inside_fractions", "spread_ticks", "touch_rate", "size_mix")


_INSIDE_GRID = np.linspace(0, 1, N_INSIDE)


def inside_fractions(ticks: np.ndarray, spread: np.ndarray) -> np.ndarray:
    """Quantiles of (k - 1) / (room - 1) for orders ``ticks`` = k better than their own best
    in a spread of ``spread`` ticks (room = spread - 1 prices lie strictly inside): 0 is one
    tick in, 1 is the far end next to the opposite quote. Orders in a spread with fewer
    than two prices inside tell nothing about the depth and are left out; with none left the
    answer is all zeros, the one-tick rule."""
    k = np.asarray(ticks, dtype=np.float64)
    room = np.asarray(spread, dtype=np.float64) - 1
    keep = (room >= 2) & (k >= 1) & (k <= room)
    if not keep.any():
        return np.zeros(N_INSIDE)
    frac = (k[keep] - 1) / (room[keep] - 1)
    return np.quantile(frac, np.linspace(0, 1, N_INSIDE))


def median_spread(spread_feature: np.ndarray) -> float | None:
    """The median spread (ticks) over book feature 20 (log1p of the spread; 0 where a side
    is empty) of rows with both sides quoted (None without any): an instrument's price
    regime, as the model reads it."""
    spread_feature = np.asarray(spread_feature, dtype=np.float64).reshape(-1)
    quoted = spread_feature > 0
    if not quoted.any():
        return None
    return float(np.median(np.rint(np.expm1(spread_feature[quoted]))))  # whole ticks


def touch_orders(price_level: np.ndarray, time_ns: np.ndarray) -> tuple[int, int]:
    """(orders that reach the touch: MARKETABLE, INSIDE, or at their own side's best, the
    orders a level-1 view shows; ns from the first order to the last, 0 with under two)."""
    t = np.asarray(time_ns, dtype=np.int64).reshape(-1)
    span = int(t[-1] - t[0]) if len(t) >= 2 else 0
    return int((np.asarray(price_level).reshape(-1) <= BEHIND).sum()), max(span, 0)


def touch_order_rate(price_level: np.ndarray, time_ns: np.ndarray) -> float | None:
    """Orders per second that reach the touch (``touch_orders``) over their span: an
    instrument's pace, read alike from a full-depth and a level-1 file. None with under two
    orders or no time between the first and the last."""
    count, span = touch_orders(price_level, time_ns)
    return count * 1e9 / span if span > 0 else None


def scale_levels(level: np.ndarray, factor: float) -> np.ndarray:
    """Price levels with their distance behind the best multiplied by ``factor`` (DEEP
    counts as ``DEEP_TICKS``; a scaled distance past ``MAX_BEHIND`` is DEEP again);
    MARKETABLE and INSIDE stay."""
    lv = np.asarray(level, dtype=np.int64)
    behind = np.where(lv == DEEP, DEEP_TICKS, lv - BEHIND)
    scaled = encode_price_level(np.rint(behind * factor).astype(np.int64))
    return np.where(lv >= BEHIND, scaled, lv).astype(lv.dtype)


def scale_spread_features(book: np.ndarray, factor: float) -> np.ndarray:
    """Book features with the spread and the two book widths (in ticks inside their log1p)
    multiplied by ``factor``; sizes and time stay."""
    out = np.array(book, dtype=np.float32, copy=True)
    out[..., 20:23] = np.log1p(np.expm1(out[..., 20:23].astype(np.float64)) * factor)
    return out


class Tokenizer:
    """Fitted size and gap bins, with a representative value per bin for decoding.

    Edges are in log space (log shares, log ns); ``size_edges`` has N_SIZE - 1 of
    them, ``gap_edges`` N_GAP - 2 (gap bin 0 is exactly 0 ns, bins 1.. are quantile
    bins of the positive gaps). A value equal to an edge goes to the upper bin.

    Decoding draws inside a token's bins where the token leaves room (``gap_draw``,
    ``inside_ticks``): a gap bin covers a range of gaps and INSIDE a range of prices, and a
    fixed value for each would put every generated order on a few points of that range.
    """

    def __init__(
        self,
        size_edges: np.ndarray,
        size_values: np.ndarray,
        gap_edges: np.ndarray,
        gap_values: np.ndarray,
        inside: np.ndarray | None = None,
        spread_ticks: float | None = None,
        touch_rate: float | None = None,
        size_mix: np.ndarray | None = None,
    ) -> None:
        self.size_edges = np.asarray(size_edges, dtype=np.float64)
        self.size_values = np.asarray(size_values, dtype=np.int64)
        self.gap_edges = np.asarray(gap_edges, dtype=np.float64)
        self.gap_values = np.asarray(gap_values, dtype=np.int64)
        self.inside = None if inside is None else np.asarray(inside, dtype=np.float64)
        self.spread_ticks = None if spread_ticks is None else float(spread_ticks)
        self.touch_rate = None if touch_rate is None else float(touch_rate)
        self.size_mix = None if size_mix is None else np.asarray(size_mix, dtype=np.float64)
        self._validate()
        # each positive gap bin's range in log ns; an open end mirrors the other around the
        # bin's median, so a draw from the range keeps the median in the middle
        logs = np.log(np.maximum(self.gap_values[1:], 1).astype(np.float64))
        lo = np.concatenate([[2 * logs[0] - self.gap_edges[0]], self.gap_edges])
        hi = np.concatenate([self.gap_edges, [2 * logs[-1] - self.gap_edges[-1]]])
        self.gap_log_lo = np.concatenate([[0.0], np.minimum(lo, logs)])
        self.gap_log_width = np.concatenate([[0.0], np.maximum(hi, logs) - self.gap_log_lo[1:]])

    # ------------------------------------------------------------------ fitting
    @classmethod
    def fit(
        cls,
        sizes: np.ndarray,
        gaps: np.ndarray,
        inside: tuple[np.ndarray, np.ndarray] | None = None,
        spread_ticks: float | None = None,
        touch_rate: float | None = None,
        mix_sizes: np.ndarray | None = None,
    ) -> Tokenizer:
        """Fit on the training split's order sizes (shares, >= 1) and gaps (ns, >= 0), and
        with ``inside`` = (ticks, spread) of INSIDE orders, how deep they go into the spread
        (``inside_fractions``; without it INSIDE decodes one tick in). ``spread_ticks`` is
        the training books' median spread, the price regime the model learned in,
        ``touch_rate`` their orders per second at the touch (``touch_order_rate``), the
        pace it learned, and ``mix_sizes`` their orders' sizes, whose share per size bin
        (``size_mix``) is the size regime it learned."""
        sizes = np.asarray(sizes, dtype=np.int64)
        gaps = np.asarray(gaps, dtype=np.int64)
        _require(sizes.size > 0, "cannot fit a tokenizer on no sizes")
        _require(gaps.size > 0, "cannot fit a tokenizer on no gaps")
        _first_bad(sizes < 1, sizes, "size must be at least 1 share")
        _first_bad(gaps < 0, gaps, "gap must not be negative")
        size_edges, size_values = _fit_bins(sizes, N_SIZE)
        positive = gaps[gaps > 0]
        if positive.size == 0:  # every order at the same instant: any bins will do
            positive = np.array([1], dtype=np.int64)
        gap_edges, gap_pos = _fit_bins(positive, N_GAP - 1)
        gap_values = np.concatenate([[0], gap_pos])
        return cls(size_edges, size_values, gap_edges, gap_values).with_decoding(
            inside, spread_ticks, touch_rate, mix_sizes
        )

    def with_decoding(
        self,
        inside: tuple[np.ndarray, np.ndarray] | None,
        spread_ticks: float | None,
        touch_rate: float | None = None,
        mix_sizes: np.ndarray | None = None,
    ) -> Tokenizer:
        """This tokenizer's bins with decoding tables fitted on ``inside`` = (ticks, spread)
        of INSIDE orders, the training books' median spread, their orders per second at
        the touch and their orders' sizes (None: no table)."""
        depth = None if inside is None else inside_fractions(*inside)
        mix = None
        if mix_sizes is not None and len(mix_sizes):
            mix = np.bincount(self.size_bins(mix_sizes), minlength=N_SIZE) / len(mix_sizes)
        bins = (self.size_edges, self.size_values, self.gap_edges, self.gap_values)
        return Tokenizer(*bins, depth, spread_ticks, touch_rate, mix)

    # ------------------------------------------------------------------ encode / decode
    def size_bins(self, size: np.ndarray) -> np.ndarray:
        s = np.asarray(size, dtype=np.int64)
        _first_bad(s < 1, s, "size must be at least 1 share")
        return np.searchsorted(self.size_edges, np.log(s.astype(np.float64)), side="right")

    def gap_bins(self, gap_ns: np.ndarray) -> np.ndarray:
        g = np.asarray(gap_ns, dtype=np.int64)
        _first_bad(g < 0, g, "gap must not be negative")
        logs = np.log(np.maximum(g, 1).astype(np.float64))
        return np.where(g == 0, 0, 1 + np.searchsorted(self.gap_edges, logs, side="right"))

    def encode(
        self,
        kind: np.ndarray,
        price_level: np.ndarray,
        size: np.ndarray,
        gap_ns: np.ndarray,
    ) -> np.ndarray:
        """Orders (corpus columns) -> (n, 4) int64 components: kind, price level, bins."""
        kind = np.asarray(kind, dtype=np.int64)
        level = np.asarray(price_level, dtype=np.int64)
        out = np.stack(
            np.broadcast_arrays(kind, level, self.size_bins(size), self.gap_bins(gap_ns)),
            axis=-1,
        ).astype(np.int64)
        _check_components(out)
        return out

    def decode(
        self,
        components: np.ndarray,
        best_bid: np.ndarray | int,
        best_ask: np.ndarray | int,
        reference: np.ndarray | int,
    ) -> DecodedOrders:
        """(n, 4) components + the current book (best bid / ask ticks, 0 = empty side, a
        reference price for a book with both sides empty) -> orders an exchange accepts."""
        c = np.asarray(components, dtype=np.int64).reshape(-1, 4)
        _check_components(c)
        kind = c[:, 0]
        side = np.asarray(kind_side(kind), dtype=np.int8).reshape(-1)
        cancel = kind >= Kind.CANCEL_BUY
        price, marketable = decode_price(c[:, 1], side, best_bid, best_ask, reference, cancel)
        order_type = np.where(
            cancel,
            int(OrderType.CANCEL),
            np.where(marketable, int(OrderType.MARKET), int(OrderType.LIMIT)),
        ).astype(np.int8)
        return DecodedOrders(
            kind=kind.astype(np.int8),
            side=side,
            order_type=order_type,
            price=np.asarray(price, dtype=np.int64).reshape(-1),
            size=self.size_values[c[:, 2]],
            gap_ns=self.gap_values[c[:, 3]],
        )

    def gap_draw(self, gap_bin: int, u: float) -> int:
        """A gap (ns) in bin ``gap_bin`` for a uniform ``u`` in [0, 1): log-uniform over the
        bin's range (bin 0 is 0 ns)."""
        if gap_bin == 0:
            return 0
        log_ns = self.gap_log_lo[gap_bin] + self.gap_log_width[gap_bin] * u
        return max(1, int(math.exp(log_ns)))

    def inside_ticks(self, room: int, u: float) -> int:
        """How many ticks an INSIDE order improves its own best by, where ``room`` >= 1 prices
        lie strictly inside the spread, for a uniform ``u`` in [0, 1): the fitted depth
        quantiles read at ``u`` (linear between them), scaled to the room. One tick without
        fitted quantiles (a model trained before they were), or with room for one price."""
        if self.inside is None or room <= 1:
            return 1
        frac = float(np.interp(u, _INSIDE_GRID, self.inside))
        return 1 + min(room - 1, int(frac * (room - 1) + 0.5))

    token_ids = staticmethod(token_ids)
    token_components = staticmethod(token_components)

    # ------------------------------------------------------------------ state
    def to_state(self) -> dict[str, list[float] | list[int]]:
        """A plain dict of lists of numbers (safe to store in a checkpoint, JSON-able)."""
        state: dict[str, list[float] | list[int]] = {
            "component_sizes": list(COMPONENT_SIZES),
            "size_edges": [float(v) for v in self.size_edges],
            "size_values": [int(v) for v in self.size_values],
            "gap_edges": [float(v) for v in self.gap_edges],
            "gap_values": [int(v) for v in self.gap_values],
        }
        if self.inside is not None:
            state["inside_fractions"] = [float(v) for v in self.inside]
        if self.spread_ticks is not None:
            state["spread_ticks"] = self.spread_ticks
        if self.touch_rate is not None:
            state["touch_rate"] = self.touch_rate
        if self.size_mix is not None:
            state["size_mix"] = [float(v) for v in self.size_mix]
        return state

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Tokenizer:
        """Rebuild from ``to_state()``; a malformed state raises TokenizerStateError naming
        the key and what is wrong with it."""
        if not isinstance(state, Mapping):
            raise TokenizerStateError(f"tokenizer state must be a dict, got {type(state).__name__}")
        missing = [k for k in _STATE_KEYS if k not in state]
        if missing:
            raise TokenizerStateError(f"tokenizer state: missing key(s) {missing}")
        unknown = sorted(str(k) for k in state if k not in _STATE_KEYS + DECODING_KEYS)
        if unknown:
            raise TokenizerStateError(f"tokenizer state: unknown key(s) {unknown}")
        sizes = _numbers(state, "component_sizes", len(COMPONENT_SIZES), integer=True)
        if tuple(int(v) for v in sizes) != COMPONENT_SIZES:
            raise TokenizerStateError(
                f"tokenizer state: key 'component_sizes' is {[int(v) for v in sizes]}, "
                f"this code needs {list(COMPONENT_SIZES)}"
            )
        try:
            return cls(
                _numbers(state, "size_edges", N_SIZE - 1),
                _numbers(state, "size_values", N_SIZE, integer=True),
                _numbers(state, "gap_edges", N_GAP - 2),
                _numbers(state, "gap_values", N_GAP, integer=True),
                _numbers(state, "inside_fractions", N_INSIDE)
                if "inside_fractions" in state
                else None,
                _scalar(state, "spread_ticks"),
                _scalar(state, "touch_rate"),
                _numbers(state, "size_mix", N_SIZE) if "size_mix" in state else None,
            )
        except TokenizerStateError:
            raise
        except ValueError as exc:
            raise TokenizerStateError(f"tokenizer state: {exc}") from None

    def _validate(self) -> None:
        """Hold the invariants encode/decode rely on; name the key that breaks one."""
        for key, arr, n in (
            ("size_edges", self.size_edges, N_SIZE - 1),
            ("gap_edges", self.gap_edges, N_GAP - 2),
            ("size_values", self.size_values, N_SIZE),
            ("gap_values", self.gap_values, N_GAP),
        ):
            if arr.shape != (n,):
                raise TokenizerStateError(
                    f"tokenizer state: key {key!r} must hold {n} numbers, got shape {arr.shape}"
                )
        for key, edges in (("size_edges", self.size_edges), ("gap_edges", self.gap_edges)):
            if not np.isfinite(edges).all():
                i = int(np.flatnonzero(~np.isfinite(edges))[0])
                raise TokenizerStateError(
                    f"tokenizer state: key {key!r} holds {edges[i]} at index {i}"
                )
            step = np.diff(edges)
            if (step <= 0).any():
                i = int(np.flatnonzero(step <= 0)[0]) + 1
                raise TokenizerStateError(
                    f"tokenizer state: key {key!r} must be strictly increasing "
                    f"(index {i}: {edges[i]} after {edges[i - 1]})"
                )
        if (self.size_values < 1).any():
            i = int(np.flatnonzero(self.size_values < 1)[0])
            raise TokenizerStateError(
                f"tokenizer state: key 'size_values' must be >= 1 share "
                f"(index {i}: {self.size_values[i]})"
            )
        if self.inside is not None:
            if self.inside.shape != (N_INSIDE,):
                raise TokenizerStateError(
                    f"tokenizer state: key 'inside_fractions' must hold {N_INSIDE} numbers, "
                    f"got shape {self.inside.shape}"
                )
            bad = (self.inside < 0) | (self.inside > 1) | ~np.isfinite(self.inside)
            if bad.any() or (np.diff(self.inside) < 0).any():
                raise TokenizerStateError(
                    "tokenizer state: key 'inside_fractions' must be non-decreasing "
                    f"fractions in [0, 1], got {self.inside.tolist()}"
                )
        if self.spread_ticks is not None and not (
            math.isfinite(self.spread_ticks) and self.spread_ticks >= 1
        ):
            raise TokenizerStateError(
                f"tokenizer state: key 'spread_ticks' must be a spread of >= 1 tick, "
                f"got {self.spread_ticks}"
            )
        if self.touch_rate is not None and not (
            math.isfinite(self.touch_rate) and self.touch_rate > 0
        ):
            raise TokenizerStateError(
                f"tokenizer state: key 'touch_rate' must be a positive number of orders a "
                f"second, got {self.touch_rate}"
            )
        if self.size_mix is not None and not (
            self.size_mix.shape == (N_SIZE,)
            and (self.size_mix >= 0).all()
            and abs(float(self.size_mix.sum()) - 1.0) < 1e-6
        ):
            raise TokenizerStateError(
                f"tokenizer state: key 'size_mix' must be {N_SIZE} shares >= 0 summing to 1 "
                f"(one per size bin), got {self.size_mix.tolist()}"
            )
        if self.gap_values[0] != 0 or (self.gap_values[1:] < 1).any():
            raise TokenizerStateError(
                "tokenizer state: key 'gap_values' must be 0 for bin 0 and >= 1 ns for the "
                f"others, got {self.gap_values.tolist()}"
            )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Tokenizer):
            return NotImplemented
        return self.to_state() == other.to_state()

    def __repr__(self) -> str:
        return (
            f"Tokenizer(sizes {self.size_values.tolist()} shares, "
            f"gaps {self.gap_values.tolist()} ns)"
        )


def _scalar(state: Mapping[str, Any], key: str) -> float | None:
    """Optional ``state[key]`` as one finite number (None when absent)."""
    return _numbers({key: [state[key]]}, key, 1)[0] if key in state else None


def _numbers(state: Mapping[str, Any], key: str, n: int, integer: bool = False) -> np.ndarray:
    """``state[key]`` as a 1-D float array of ``n`` finite numbers (integers if asked)."""
    raw = state[key]
    if isinstance(raw, np.ndarray):
        raw = raw.tolist()
    if not isinstance(raw, Sequence) or isinstance(raw, str | bytes):
        raise TokenizerStateError(
            f"tokenizer state: key {key!r} must be a list of numbers, got {type(raw).__name__}"
        )
    if len(raw) != n:
        raise TokenizerStateError(
            f"tokenizer state: key {key!r} must hold {n} numbers, got {len(raw)}"
        )
    for i, v in enumerate(raw):
        ok = isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool)
        if not ok or not math.isfinite(float(v)):
            raise TokenizerStateError(
                f"tokenizer state: key {key!r} holds {v!r} at index {i}, want a finite number"
            )
        if integer and float(v) != int(v):
            raise TokenizerStateError(
                f"tokenizer state: key {key!r} holds {v!r} at index {i}, want an integer"
            )
    return np.array([float(v) for v in raw], dtype=np.float64)


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def _first_bad(bad: np.ndarray, values: np.ndarray, message: str) -> None:
    """Raise for the first flagged entry, saying where and what it is."""
    if np.any(bad):
        flat = np.flatnonzero(np.reshape(bad, -1))
        i = int(flat[0])
        raise ValueError(
            f"{message}: got {int(np.reshape(values, -1)[i])} at index {i} "
            f"({flat.size} such value{'s' if flat.size > 1 else ''})"
        )
