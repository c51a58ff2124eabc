"""Token windows for training and evaluation, cut from the corpus without crossing units.

A unit (one instrument on one day, or one synthetic seed) is one continuous
order sequence; a window never spans two units, so the model never learns a
transition from the end of one day into another instrument.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mars_ray.lmm.tokenizer import (
    INSIDE,
    N_BOOK,
    Tokenizer,
    median_spread,
    mirror,
    token_ids,
    touch_orders,
)

SPLITS = ("train", "validation", "test")


@dataclass
class TokenSplit:
    """One split as flat arrays; ``starts[u]:starts[u+1]`` is unit u."""

    components: np.ndarray  # (n, 4) int64
    book: np.ndarray  # (n, N_BOOK) float32, the book before each order
    starts: np.ndarray  # (units + 1,) int64
    sources: np.ndarray  # (units,) str: where each unit came from ("lobster", "synthetic")

    @property
    def orders(self) -> int:
        return len(self.components)

    @property
    def units(self) -> int:
        return len(self.starts) - 1

    def usable_units(self, block: int) -> np.ndarray:
        """Units long enough for one window of ``block`` inputs plus the next target."""
        return np.flatnonzero(np.diff(self.starts) > block)

    def sample(
        self,
        rng: np.random.Generator,
        batch: int,
        block: int,
        source_weights: dict[str, float] | None = None,
        mirrored: float = 0.0,
    ) -> tuple[np.ndarray, ...]:
        """Random windows (x components, x book, targets); units weighted by their length
        times their source's weight, so a small real corpus can count as much as a large
        synthetic one. A ``mirrored`` share of them, drawn per window, has buy and sell
        swapped (``tokenizer.mirror``). The fourth array is each window's source."""
        units = self.usable_units(block)
        if len(units) == 0:
            raise ValueError(
                f"no unit has more than block_size={block} orders; lower model.block_size"
            )
        room = (np.diff(self.starts)[units] - block).astype(np.float64)  # valid start offsets
        if source_weights:
            room *= np.array([source_weights.get(s, 1.0) for s in self.sources[units]])
        unit = rng.choice(units, size=batch, p=room / room.sum())
        offset = rng.integers(0, np.diff(self.starts)[unit] - block)
        # no draw at 0: runs without mirroring keep the batches they had
        flip = rng.random(batch) < mirrored if mirrored > 0 else None
        return (*self._windows(self.starts[unit] + offset, block, flip), self.sources[unit])

    def eval_windows(self, block: int, limit: int) -> np.ndarray:
        """Start indices of up to ``limit`` non-overlapping windows, spread over all units."""
        starts = []
        for u in self.usable_units(block):
            lo, hi = int(self.starts[u]), int(self.starts[u + 1])
            starts.extend(range(lo, hi - block, block))
        starts_arr = np.array(starts, dtype=np.int64)
        if len(starts_arr) > limit:  # evenly spaced subset: fixed, so every eval is comparable
            starts_arr = starts_arr[np.linspace(0, len(starts_arr) - 1, limit).astype(np.int64)]
        return starts_arr

    def _windows(
        self, begin: np.ndarray, block: int, flip: np.ndarray | None = None
    ) -> tuple[np.ndarray, ...]:
        idx = begin[:, None] + np.arange(block + 1)
        comp, book = self.components[idx], self.book[idx]
        if flip is not None and flip.any():
            comp[flip], book[flip] = mirror(comp[flip], book[flip])
        return comp[:, :-1], book[:, 1:], comp[:, 1:]

    def window_sources(self, begin: np.ndarray) -> np.ndarray:
        """The source of the unit each window (by its start index) lies in."""
        unit = np.searchsorted(self.starts, np.asarray(begin, dtype=np.int64), side="right") - 1
        return self.sources[unit]

    def windows(self, begin: np.ndarray, block: int) -> tuple[np.ndarray, ...]:
        return self._windows(np.asarray(begin, dtype=np.int64), block)

    def pairs(self, begin: np.ndarray, block: int) -> tuple[np.ndarray, np.ndarray]:
        """(previous, next) joint token ids of every prediction in the given windows."""
        x, _, y = self.windows(begin, block)
        return token_ids(x.reshape(-1, 4)), token_ids(y.reshape(-1, 4))


def split_table(table: pa.Table, split: str, max_orders: int | None = None) -> pa.Table:
    """The rows of one split, in corpus order, optionally cut to the first ``max_orders``."""
    part = table.filter(pc.equal(table["split"], split))
    if max_orders is not None and part.num_rows > max_orders:
        part = part.slice(0, max_orders)
    return part


def fit_tokenizer(
    train: pa.Table,
    gaps_from: str | None = None,
    source_weights: Mapping[str, float] | None = None,
) -> Tokenizer:
    """Size bins from every training order; gap bins from those of source ``gaps_from``
    only, where given (the real days: they set the time scale the model can decode), or
    with ``gaps_from="weighted"`` from every source in the mix training draws its windows
    in (``source_weights``, default 1 each)."""
    if train.num_rows == 0:
        raise ValueError("the corpus has no training rows (split == 'train')")
    gaps = train["gap_ns"].to_numpy()
    sources = train["source"].to_numpy(zero_copy_only=False)
    if gaps_from == "weighted":
        gaps = weighted_sample(gaps, sources, source_weights or {})
    elif gaps_from is not None:
        chosen = sources == gaps_from
        if not chosen.any():
            raise ValueError(
                f"tokenizer.gaps_from: no training orders of source {gaps_from!r} "
                f"(sources: {sorted(set(sources.tolist()))})"
            )
        gaps = gaps[chosen]
    return Tokenizer.fit(train["size"].to_numpy(), gaps, *decoding_inputs(train))


def decoding_inputs(
    train: pa.Table,
) -> tuple[tuple[np.ndarray, np.ndarray], float | None, float | None, np.ndarray]:
    """What the decoding tables are fitted on, for ``Tokenizer.fit`` and
    ``Tokenizer.with_decoding`` alike: the INSIDE orders' (ticks, spread), the training
    books' median spread, their orders per second at the touch and their orders' sizes
    (all of the ``decoding_rows``)."""
    # picked once: on these rows each helper's own ``decoding_rows`` keeps them all
    picked = train.filter(pa.array(decoding_rows(train)))
    return (
        inside_depths(picked),
        training_spread(picked),
        training_touch_rate(picked),
        picked["size"].to_numpy(),
    )


def weighted_sample(
    values: np.ndarray, sources: np.ndarray, weights: Mapping[str, float]
) -> np.ndarray:
    """``values`` thinned per source so that each source's share is its share of the
    training draws (rows x weight): the most weighted source keeps every value, another
    an evenly spaced ``weight / top weight`` of its own (no randomness: the same corpus
    gives the same bins)."""
    names = sorted(set(sources.tolist()))
    top = max(weights.get(n, 1.0) for n in names)
    kept = []
    for name in names:
        own = values[sources == name]
        count = max(1, round(len(own) * weights.get(name, 1.0) / top))
        kept.append(own[np.linspace(0, len(own) - 1, count).round().astype(np.int64)])
    return np.concatenate(kept)


def decoding_rows(train: pa.Table) -> np.ndarray:
    """Which training rows the decoding tables are fitted on: the real days' where there
    are any (how deep orders go into a spread, and how wide it is, are habits of real
    markets that the agent simulator does not model), else every row."""
    real = train["source"].to_numpy(zero_copy_only=False) == "lobster"
    return real if real.any() else np.ones(train.num_rows, dtype=bool)


def inside_depths(train: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """(ticks, spread) of the INSIDE orders the depth quantiles are fitted on (the rows of
    ``decoding_rows``)."""
    rows = decoding_rows(train) & (train["price_level"].to_numpy() == INSIDE)
    picked = train.take(np.flatnonzero(rows))
    spread = np.rint(np.expm1(_spread_feature(picked))).astype(np.int64)
    return picked["inside_ticks"].to_numpy().astype(np.int64), spread


def training_spread(train: pa.Table) -> float | None:
    """The median spread (ticks) of the books before the ``decoding_rows`` orders."""
    return median_spread(_spread_feature(train.filter(pa.array(decoding_rows(train)))))


def training_touch_rate(train: pa.Table) -> float | None:
    """Orders per second at the touch (``touch_order_rate``) of the ``decoding_rows``
    units together: their touch orders over the sum of their spans (None without a span)."""
    picked = train.filter(pa.array(decoding_rows(train)))
    unit = pc.binary_join_element_wise(picked["source"], picked["instrument"], picked["day"], "/")
    names = unit.to_numpy(zero_copy_only=False)
    time_ns, level = picked["time_ns"].to_numpy(), picked["price_level"].to_numpy()
    orders, span_ns = 0, 0
    for name in np.unique(names):
        rows = names == name  # a unit's rows are contiguous and in time order
        count, span = touch_orders(level[rows], time_ns[rows])
        if span > 0:
            orders, span_ns = orders + count, span_ns + span
    return orders * 1e9 / span_ns if span_ns > 0 else None


def _spread_feature(table: pa.Table) -> np.ndarray:
    """Book feature 20 (log1p of the spread in ticks) of every row, as float64."""
    column = pc.list_element(table["book"], 20) if table.num_rows else pa.array([], pa.float32())
    return np.asarray(column.to_numpy(), dtype=np.float64).reshape(-1)


def tokenize(table: pa.Table, tokenizer: Tokenizer) -> TokenSplit:
    """Corpus rows (one split) -> token components, book features and unit boundaries."""
    n = table.num_rows
    components = tokenizer.encode(
        table["kind"].to_numpy(),
        table["price_level"].to_numpy(),
        table["size"].to_numpy(),
        table["gap_ns"].to_numpy(),
    )
    book_col = table["book"].combine_chunks() if n else None
    book = (
        book_col.values.to_numpy().reshape(n, N_BOOK).astype(np.float32)
        if n
        else np.zeros((0, N_BOOK), dtype=np.float32)
    )
    seq = table["sequence"].to_numpy()
    change = np.flatnonzero(np.diff(seq)) + 1 if n else np.zeros(0, dtype=np.int64)
    starts = np.concatenate([[0], change, [n]]).astype(np.int64) if n else np.zeros(1, np.int64)
    sources = table["source"].to_numpy(zero_copy_only=False)[starts[:-1]] if n else np.array([])
    return TokenSplit(components.astype(np.int64), book, starts, sources)
