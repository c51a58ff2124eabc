"""The 11 stylized facts of returns (Cont 2001), as MarS reports them: a statistic and a verdict.

Each fact is a function of a return series ``r`` (log returns of the mid over equal
intervals) and, for one fact, the traded volume ``v`` over the same intervals; it
returns the statistic and whether the fact is present by the stated rule. ``band`` is
the 95% band of a sample autocorrelation under no correlation, 2 / sqrt(n).

=================================  ===========================================  ==============
fact                               statistic                                    present when
=================================  ===========================================  ==============
absence_of_autocorrelation         mean |ACF(r)| over lags 1..5                 < max(band, .1)
heavy_tails                        excess kurtosis of r                         > 1
gain_loss_asymmetry                skewness of r                                < 0
aggregational_gaussianity          excess kurtosis of r minus that of r summed  > 0
                                   over AGG intervals
intermittency                      share of |z| > 3 over the Gaussian's 0.27%   > 1
volatility_clustering              mean ACF(|r|) over lags 1..5                 > band
conditional_heavy_tails            excess kurtosis of r / (rolling std of the   > 0
                                   previous 10 returns)
slow_decay_of_abs_autocorrelation  ACF(|r|) at lag 10                           > band
leverage_effect                    mean corr(r_t, r_{t+k}^2) over k = 1..5      < 0
volume_volatility_correlation      corr(v_t, |r_t|)                             > .1
asymmetry_in_timescales            corr(coarse vol, next fine vol) - corr(fine  > 0
                                   vol, next coarse vol), over AGG intervals
=================================  ===========================================  ==============
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

AGG = 5  # intervals aggregated for the coarse scale
ROLL = 10  # past returns in the rolling volatility of conditional tails
GAUSS_BEYOND_3 = 0.0027  # P(|z| > 3) of a standard normal


def acf(x: np.ndarray, lag: int) -> float:
    x = np.asarray(x, np.float64)
    if len(x) <= lag + 1:
        return float("nan")
    return _corr(x[:-lag], x[lag:])


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 3 or np.std(a) == 0 or np.std(b) == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def _mean(values: list[float]) -> float:
    """Mean of the finite values; NaN when there are none."""
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    return float(v.mean()) if len(v) else float("nan")


def _band(r: np.ndarray) -> float:
    return 2.0 / np.sqrt(max(len(r), 1))


def excess_kurtosis(x: np.ndarray) -> float:
    x = np.asarray(x, np.float64)
    sd = x.std() if len(x) > 3 else 0.0
    return float(np.mean(((x - x.mean()) / sd) ** 4) - 3.0) if sd > 0 else np.nan


def skewness(x: np.ndarray) -> float:
    x = np.asarray(x, np.float64)
    sd = x.std() if len(x) > 2 else 0.0
    return float(np.mean(((x - x.mean()) / sd) ** 3)) if sd > 0 else np.nan


def aggregate(r: np.ndarray, k: int = AGG) -> np.ndarray:
    n = len(r) // k
    return np.asarray(r[: n * k], np.float64).reshape(n, k).sum(axis=1)


Fact = Callable[[np.ndarray, np.ndarray], tuple[float, bool]]


def absence_of_autocorrelation(r: np.ndarray, v: np.ndarray) -> tuple[float, bool]:
    s = _mean([abs(acf(r, k)) for k in range(1, 6)])
    return s, s < max(_band(r), 0.1)


def heavy_tails(r: np.ndarray, v: np.ndarray) -> tuple[float, bool]:
    s = excess_kurtosis(r)
    return s, s > 1


def gain_loss_asymmetry(r: np.ndarray, v: np.ndarray) -> tuple[float, bool]:
    s = skewness(r)
    return s, s < 0


def aggregational_gaussianity(r: np.ndarray, v: np.ndarray) -> tuple[float, bool]:
    s = excess_kurtosis(r) - excess_kurtosis(aggregate(r))
    return s, s > 0


def intermittency(r: np.ndarray, v: np.ndarray) -> tuple[float, bool]:
    r = np.asarray(r, np.float64)
    sd = r.std()
    if len(r) == 0 or sd == 0:
        return float("nan"), False
    s = float(np.mean(np.abs((r - r.mean()) / sd) > 3) / GAUSS_BEYOND_3)
    return s, s > 1


def volatility_clustering(r: np.ndarray, v: np.ndarray) -> tuple[float, bool]:
    s = _mean([acf(np.abs(r), k) for k in range(1, 6)])
    return s, s > _band(r)


def conditional_heavy_tails(r: np.ndarray, v: np.ndarray) -> tuple[float, bool]:
    r = np.asarray(r, np.float64)
    if len(r) <= ROLL + 3:
        return float("nan"), False
    past = np.lib.stride_tricks.sliding_window_view(r[:-1], ROLL).std(axis=1)
    z = r[ROLL:][past > 0] / past[past > 0]
    s = excess_kurtosis(z)
    return s, s > 0


def slow_decay_of_abs_autocorrelation(r: np.ndarray, v: np.ndarray) -> tuple[float, bool]:
    s = acf(np.abs(r), 10)
    return s, s > _band(r)


def leverage_effect(r: np.ndarray, v: np.ndarray) -> tuple[float, bool]:
    r = np.asarray(r, np.float64)
    s = _mean([_corr(r[:-k], r[k:] ** 2) for k in range(1, 6)])
    return s, s < 0


def volume_volatility_correlation(r: np.ndarray, v: np.ndarray) -> tuple[float, bool]:
    s = _corr(np.asarray(v, np.float64), np.abs(r))
    return s, s > 0.1


def asymmetry_in_timescales(r: np.ndarray, v: np.ndarray) -> tuple[float, bool]:
    r = np.asarray(r, np.float64)
    coarse = np.abs(aggregate(r))  # |sum of AGG returns|
    fine = np.sqrt(aggregate(r**2))  # sqrt of the sum of their squares
    s = _corr(coarse[:-1], fine[1:]) - _corr(fine[:-1], coarse[1:])
    return s, s > 0


FACTS: dict[str, Fact] = {
    f.__name__: f
    for f in (
        absence_of_autocorrelation,
        heavy_tails,
        gain_loss_asymmetry,
        aggregational_gaussianity,
        intermittency,
        volatility_clustering,
        conditional_heavy_tails,
        slow_decay_of_abs_autocorrelation,
        leverage_effect,
        volume_volatility_correlation,
        asymmetry_in_timescales,
    )
}


def stylized_facts(r: np.ndarray, v: np.ndarray) -> dict[str, dict[str, float | bool | None]]:
    """{fact: {"statistic", "present"}} of one return series and its volumes (NaN: None,
    absent)."""
    out: dict[str, dict[str, float | bool | None]] = {}
    for name, fact in FACTS.items():
        s, present = fact(np.asarray(r, np.float64), np.asarray(v, np.float64))
        ok = bool(np.isfinite(s))
        out[name] = {"statistic": float(s) if ok else None, "present": bool(present) and ok}
    return out
