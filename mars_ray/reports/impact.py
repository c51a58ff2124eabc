"""Price-response (impact) curves by event type, as LOB-Bench scores them.

The response of event type p at lag l (in events) is the mean of eps_t * (m_{t+l} - m_t)
over the events t of that type (Eisler, Bouchaud and Kockelkoren 2012), in ticks: m_t the
mid before event t (two-sided books only), eps_t the sign the event pushes the price:

- market (type 4 executions): the aggressor's side, minus the resting order's direction;
- limit (type 1 submissions): the order's direction;
- cancel (types 2 and 3): minus the cancelled order's direction.

Each type is split by whether the event itself moved the mid ("1") or not ("0"): six
curves. Two sources' curves are compared by the mean absolute deviation over the lags
both define.

Much of a market order's lasting response is the memory of order flow: the next market
orders tend to come from the same side (Lillo and Farmer 2004). ``sign_autocorrelation``
measures it beside the curves, as the correlation of market orders' signs some orders
apart.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from mars_ray.data.lobster import DELETE, EXECUTE, PARTIAL_CANCEL, SUBMIT, Messages

LAGS = (1, 2, 5, 10, 20, 50, 100, 200)
SIGN_LAGS = (1, 2, 5, 10, 20)  # in market orders
EVENTS = {
    "market": ((EXECUTE,), -1),
    "limit": ((SUBMIT,), 1),
    "cancel": ((PARTIAL_CANCEL, DELETE), -1),
}
CURVES = tuple(f"{name}_{moved}" for name in EVENTS for moved in (0, 1))

Sums = dict[str, tuple[np.ndarray, np.ndarray]]  # curve -> (sum of responses, counts) per lag


def response_sums(
    msgs: Messages, rows: np.ndarray, before: np.ndarray, lags: Sequence[int] = LAGS
) -> Sums:
    """Per curve, the summed responses and their counts at each lag, for one book."""

    def mid(r: np.ndarray) -> np.ndarray:
        ok = (r[:, 0] > 0) & (r[:, 2] > 0)
        return np.where(ok, (r[:, 0] + r[:, 2]) / 2.0, np.nan)

    m_before, m_after = mid(before), mid(rows)
    n = len(m_before)
    moved = m_after != m_before
    out: Sums = {}
    for name, (types, sign) in EVENTS.items():
        is_type = np.isin(msgs.type, types)
        eps = sign * msgs.direction.astype(np.float64)
        for flag in (0, 1):
            at = np.flatnonzero(is_type & (moved == bool(flag)))
            sums, counts = np.zeros(len(lags)), np.zeros(len(lags))
            for k, lag in enumerate(lags):
                t = at[at + lag < n]
                d = eps[t] * (m_before[t + lag] - m_before[t])
                d = d[np.isfinite(d)]
                sums[k], counts[k] = d.sum(), len(d)
            out[f"{name}_{flag}"] = (sums, counts)
    return out


def pooled_curves(parts: Sequence[Sums]) -> dict[str, list[float | None]]:
    """Mean response per curve and lag over several books (None: no events at that lag)."""
    out: dict[str, list[float | None]] = {}
    for curve in CURVES:
        sums = np.sum([p[curve][0] for p in parts], axis=0) if parts else np.zeros(len(LAGS))
        counts = np.sum([p[curve][1] for p in parts], axis=0) if parts else np.zeros(len(LAGS))
        out[curve] = [float(s / c) if c > 0 else None for s, c in zip(sums, counts, strict=True)]
    return out


def curve_deviation(a: Sequence[float | None], b: Sequence[float | None]) -> float | None:
    """Mean absolute deviation of two curves over the lags both define (None: none)."""
    both = [abs(x - y) for x, y in zip(a, b, strict=True) if x is not None and y is not None]
    return float(np.mean(both)) if both else None


def deviations(
    real: Mapping[str, Sequence[float | None]], other: Mapping[str, Sequence[float | None]]
) -> dict[str, float | None]:
    return {c: curve_deviation(real[c], other[c]) for c in CURVES}


def market_order_signs(msgs: Messages) -> np.ndarray:
    """The aggressor's sign (+1 buy, -1 sell) of each market order, in order: executions
    (type 4) at one time against one side are one order sweeping several resting ones."""
    ex = np.flatnonzero(msgs.type == EXECUTE)
    sign = -msgs.direction[ex].astype(np.int64)
    t = msgs.time_ns[ex]
    first = np.r_[True, (t[1:] != t[:-1]) | (sign[1:] != sign[:-1])] if len(ex) else []
    return sign[first]


def sign_autocorrelation(
    signs: Sequence[np.ndarray], lags: Sequence[int] = SIGN_LAGS
) -> list[float | None]:
    """Per lag, the correlation of the signs of market orders ``lag`` orders apart, over
    the pairs of every book (never across two); None where there are too few pairs or one
    side never traded."""
    out: list[float | None] = []
    for lag in lags:
        a = np.concatenate([s[:-lag] for s in signs if len(s) > lag] or [np.zeros(0)])
        b = np.concatenate([s[lag:] for s in signs if len(s) > lag] or [np.zeros(0)])
        if len(a) < 3 or a.std() == 0 or b.std() == 0:
            out.append(None)
        else:
            out.append(float(np.corrcoef(a, b)[0, 1]))
    return out
