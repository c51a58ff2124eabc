"""Simple baselines whose losses are reported beside the model's, in the same units.

Both score the same (previous order, next order) pairs as the model's evaluation,
as the negative log-likelihood of the joint token in nats per order:

- ``unigram``: how often each token occurs in the training split;
- ``markov``: a first-order Markov chain over tokens, smoothed towards the
  unigram by Witten-Bell interpolation (counts are sparse: 24,576^2 transitions).

A model that does not beat the Markov chain has learned nothing about context
beyond the last order.
"""

from __future__ import annotations

import numpy as np

from mars_ray.lmm.tokenizer import VOCAB_SIZE


class UnigramBaseline:
    def __init__(self, train_ids: np.ndarray, alpha: float = 0.5) -> None:
        counts = np.bincount(train_ids, minlength=VOCAB_SIZE).astype(np.float64) + alpha
        self.log_p = np.log(counts / counts.sum())

    def nll(self, prev_ids: np.ndarray, next_ids: np.ndarray) -> float:
        return float(-self.log_p[next_ids].mean())


class MarkovBaseline:
    """P(next | prev) = (c(prev, next) + T(prev) P_unigram(next)) / (c(prev) + T(prev)),
    T(prev) = the number of distinct tokens seen after prev (Witten-Bell)."""

    def __init__(self, train_ids: np.ndarray, unit_starts: np.ndarray) -> None:
        self.unigram = UnigramBaseline(train_ids)
        is_start = np.zeros(len(train_ids), dtype=bool)
        is_start[unit_starts[:-1]] = True
        keep = ~is_start[1:]  # no transition across a unit boundary
        prev, nxt = train_ids[:-1][keep], train_ids[1:][keep]
        pair = prev * VOCAB_SIZE + nxt
        self.pairs, self.pair_counts = np.unique(pair, return_counts=True)
        self.prev_counts = np.bincount(prev, minlength=VOCAB_SIZE)
        self.successors = np.bincount(self.pairs // VOCAB_SIZE, minlength=VOCAB_SIZE)

    def nll(self, prev_ids: np.ndarray, next_ids: np.ndarray) -> float:
        pair = prev_ids * VOCAB_SIZE + next_ids
        pos = np.minimum(np.searchsorted(self.pairs, pair), len(self.pairs) - 1)
        joint = np.where(self.pairs[pos] == pair, self.pair_counts[pos], 0)
        p_uni = np.exp(self.unigram.log_p[next_ids])
        t = np.maximum(self.successors[prev_ids], 1)
        p = (joint + t * p_uni) / (self.prev_counts[prev_ids] + t)
        return float(-np.log(p).mean())
