"""Distances between a real and a generated sample of one score, with bootstrap intervals.

As LOB-Bench separates scores from distances, any score's samples (``lob_scores``) go
through the same two distances:

- ``wasserstein1``: W1 between the empirical distributions, in the score's unit;
- ``l1_binned``: L1 between the two samples' histograms on shared bins (unit bins for
  integer scores, else bins from the pooled sample), each normalised to 1: 0 = same,
  2 = disjoint (``l1_histograms`` for ready-made histograms).

``bootstrap_ci`` resamples both samples with replacement (seeded) and gives the 2.5 and
97.5 percentiles of the distance: a 95% interval of what the samples' sizes allow.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

MAX_BINS = 100  # bins of a continuous score's histogram at most


def wasserstein1(u: np.ndarray, v: np.ndarray) -> float:
    """W1 between two empirical distributions: the integral over p of |Q_u(p) - Q_v(p)|.

    The empirical quantile functions are step functions that change only at
    k/n and k/m, so the integral is an exact finite sum over those breakpoints.
    NaN when either sample is empty.
    """
    a = np.sort(np.asarray(u, dtype=np.float64).reshape(-1))
    b = np.sort(np.asarray(v, dtype=np.float64).reshape(-1))
    n, m = len(a), len(b)
    if n == 0 or m == 0:
        return float("nan")
    p = np.union1d(np.arange(1, n + 1) / n, np.arange(1, m + 1) / m)
    width = np.diff(p, prepend=0.0)
    mid = p - width / 2  # strictly inside each step of both quantile functions
    qa = a[np.minimum((mid * n).astype(np.int64), n - 1)]
    qb = b[np.minimum((mid * m).astype(np.int64), m - 1)]
    return float(np.sum(width * np.abs(qa - qb)))


def l1_histograms(p: np.ndarray, q: np.ndarray) -> float:
    """L1 distance between two histograms after normalising each to 1 (0 = same, 2 = disjoint).

    NaN when either histogram is empty.
    """
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    if p.shape != q.shape:
        raise ValueError(f"histograms differ in shape: {p.shape} and {q.shape}")
    sp, sq = p.sum(), q.sum()
    if sp <= 0 or sq <= 0:
        return float("nan")
    return float(np.abs(p / sp - q / sq).sum())


def shared_bins(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Bin edges both samples are counted on: unit bins centred on integers when every
    value is an integer, else Freedman-Diaconis bins of the pooled sample (at most
    ``MAX_BINS``)."""
    both = np.concatenate([np.asarray(u, np.float64), np.asarray(v, np.float64)])
    both = both[np.isfinite(both)]
    if len(both) == 0:
        return np.array([0.0, 1.0])
    lo, hi = float(both.min()), float(both.max())
    if np.all(both == np.rint(both)) and hi - lo < 10 * MAX_BINS:
        return np.arange(lo - 0.5, hi + 1.5)
    if hi <= lo:
        return np.array([lo - 0.5, lo + 0.5])
    edges = np.histogram_bin_edges(both, bins="fd")
    if len(edges) - 1 > MAX_BINS:
        edges = np.linspace(lo, hi, MAX_BINS + 1)
    return edges


def l1_binned(u: np.ndarray, v: np.ndarray) -> float:
    """L1 between the histograms of two samples on ``shared_bins`` (0..2; NaN if one is empty)."""
    u = np.asarray(u, np.float64).reshape(-1)
    v = np.asarray(v, np.float64).reshape(-1)
    if len(u) == 0 or len(v) == 0:
        return float("nan")
    edges = shared_bins(u, v)
    return l1_histograms(np.histogram(u, edges)[0], np.histogram(v, edges)[0])


DISTANCES: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "l1": l1_binned,
    "w1": wasserstein1,
}


def bootstrap_ci(
    u: np.ndarray,
    v: np.ndarray,
    dist: Callable[[np.ndarray, np.ndarray], float],
    *,
    n_boot: int = 100,
    seed: int = 0,
) -> tuple[float, float]:
    """95% bootstrap interval of ``dist(u, v)``: both samples resampled with replacement
    ``n_boot`` times (seeded). NaN, NaN when either sample is empty."""
    u = np.asarray(u, np.float64).reshape(-1)
    v = np.asarray(v, np.float64).reshape(-1)
    if len(u) == 0 or len(v) == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    values = np.array(
        [
            dist(rng.choice(u, len(u), replace=True), rng.choice(v, len(v), replace=True))
            for _ in range(n_boot)
        ]
    )
    lo, hi = np.percentile(values, [2.5, 97.5])
    return float(lo), float(hi)


def score_distances(
    real: np.ndarray, generated: np.ndarray, *, n_boot: int = 100, seed: int = 0
) -> dict[str, float | list[float] | None]:
    """{"l1", "w1", "l1_ci95", "w1_ci95"} of one score; None where a sample is empty."""

    def clean(x: float) -> float | None:
        return float(x) if np.isfinite(x) else None

    out: dict[str, float | list[float] | None] = {}
    for name, dist in DISTANCES.items():
        d = clean(dist(real, generated))
        out[name] = d
        lo, hi = bootstrap_ci(real, generated, dist, n_boot=n_boot, seed=seed)
        out[f"{name}_ci95"] = None if d is None else [lo, hi]
    return out


def conditional_distance(
    real: tuple[np.ndarray, np.ndarray],
    generated: tuple[np.ndarray, np.ndarray],
    dist: Callable[[np.ndarray, np.ndarray], float],
) -> float:
    """A conditional score's distance: ``dist`` within each group (the condition's bin) that
    both (values, groups) samples hold, averaged with the real sample's group weights.
    NaN when they share no group."""
    rv, rg = (np.asarray(x) for x in real)
    gv, gg = (np.asarray(x) for x in generated)
    shared = np.intersect1d(rg, gg)
    if len(shared) == 0:
        return float("nan")
    weights = np.array([np.sum(rg == g) for g in shared], dtype=np.float64)
    ds = np.array([dist(rv[rg == g], gv[gg == g]) for g in shared])
    return float(np.sum(weights * ds) / weights.sum())


def conditional_distances(
    real: tuple[np.ndarray, np.ndarray],
    generated: tuple[np.ndarray, np.ndarray],
    *,
    n_boot: int = 100,
    seed: int = 0,
) -> dict[str, float | list[float] | None]:
    """``score_distances`` for a conditional score: (value, group) pairs resampled together."""
    rng = np.random.default_rng(seed)
    out: dict[str, float | list[float] | None] = {}
    nr, ng = len(real[0]), len(generated[0])
    for name, dist in DISTANCES.items():
        d = conditional_distance(real, generated, dist)
        out[name] = float(d) if np.isfinite(d) else None
        if out[name] is None:
            out[f"{name}_ci95"] = None
            continue
        boots = []
        for _ in range(n_boot):
            i, j = rng.integers(0, nr, nr), rng.integers(0, ng, ng)
            boots.append(
                conditional_distance(
                    (real[0][i], real[1][i]), (generated[0][j], generated[1][j]), dist
                )
            )
        lo, hi = np.nanpercentile(boots, [2.5, 97.5])
        out[f"{name}_ci95"] = [float(lo), float(hi)]
    return out
