"""Order sizes in the instrument's own distribution: a quantile map (docs/lmm.md, The sizes).

The model's size bins are fitted on its training days, and it generates their mix: on
GOOG 2012-06-21 a third of the orders are 9 to 14 shares; on AAPL the same day under a
tenth are. A real start's context tells the instrument's sizes. A size bin of the model
stands for a band of quantiles of its training days' sizes (``Tokenizer.size_mix``); the
context's sizes at the same quantiles are the instrument's. Real sizes go to the model by
their rank in the context, generated bins come back as context sizes of the same rank: the
model keeps choosing small or large, the instrument says how many shares that is.
"""

from __future__ import annotations

import numpy as np

MIN_CONTEXT_SIZES = 100  # fewer sized orders than this tell too little of a distribution


class SizeRegime:
    """The quantile map between a model's training sizes and one instrument's."""

    def __init__(self, size_mix: np.ndarray, sizes: np.ndarray) -> None:
        mix = np.asarray(size_mix, dtype=np.float64)
        self.edges = np.concatenate([[0.0], np.cumsum(mix) / mix.sum()])  # bin b: [b, b + 1]
        shares = np.asarray(sizes, dtype=np.int64).reshape(-1)
        self.sizes = np.sort(shares[shares > 0])
        if len(self.sizes) == 0:
            raise ValueError("sizes: no order with a positive size")

    @classmethod
    def from_context(cls, size_mix: np.ndarray | None, sizes: np.ndarray) -> SizeRegime | None:
        """The map for a context's sizes; None without the model's mix or with fewer than
        ``MIN_CONTEXT_SIZES`` sized orders."""
        if size_mix is None or int((np.asarray(sizes) > 0).sum()) < MIN_CONTEXT_SIZES:
            return None
        return cls(size_mix, sizes)

    def bins(self, sizes: np.ndarray) -> np.ndarray:
        """The model's size bin of each real size: its mid rank among the context's sizes
        (ties share one quantile, so a round lot stays one bin) read on the training mix."""
        s = np.asarray(sizes, dtype=np.int64)
        n = len(self.sizes)
        rank = np.searchsorted(self.sizes, s, "left") + np.searchsorted(self.sizes, s, "right")
        quantile = np.minimum(rank / (2.0 * n), np.nextafter(1.0, 0.0))  # the largest: < 1
        return np.searchsorted(self.edges, quantile, "right") - 1  # the bin whose band holds it

    def shares(self, size_bin: int, u: float) -> int:
        """Shares for a generated ``size_bin``: the context's size at a quantile drawn
        (``u`` in [0, 1)) within the bin's band of the training mix."""
        lo, hi = self.edges[size_bin], self.edges[size_bin + 1]
        n = len(self.sizes)
        return int(self.sizes[min(n - 1, int((lo + u * (hi - lo)) * n))])
