"""Controllable generation: steer the order model's flow toward a target mid path or volatility.

The ensemble has two models at two time scales. The order model (model.py) writes each
order (kind, price level, size, gap) and so carries the micro-structure; the order-batch
model (batch_model.py) predicts the next interval's aggregate flow: how many orders of
each kind, and the mid drift they usually make. The controller combines that expectation
with the book's current distance from the target and tilts the order model's kind
distribution, and nothing else, by exponential tilting:

    p'(kind) ∝ p(kind) · exp(θ · φ_kind),   kind_bias = θ · φ  (added to the kind logits)

where φ is the mean mid change per order of each kind (ticks, measured on the corpus:
buys and cancelled sells push the mid up, sells and cancelled buys push it down). Each
round, per book, with m the mid, T the target and H the look-ahead:

    needed   D = gain · (T(t + H) - m)                (error now + the target's own slope)
    expected n = orders in H,  d = model drift in H    (from the order-batch model)
    θ solves n · (E_θ[φ] - E_0[φ]) = D - d            (E under the batch model's kind mix)

bounded so that no kind's logit moves by more than ``max_bias``. Re-solving every round
from the measured mid closes the loop: whatever the order model does in response (refill
the book, revert), the next round sees it. Price levels, sizes and gaps stay the order
model's own.

Targets: ``MidPath`` (a mid price through (time, ticks) points, absolute or relative to
the mid at the start), ``Volatility`` (a std of the mid change per interval: below the
measured one the book is thickened by a "depth" tilt toward new orders and away from
cancels; above it the mid is steered along a random walk; see the class) and ``Volume``
(an order rate). Volume cannot be steered through the kind logits, since the gap
component sets the rate: its lever is a bias on the gap logits (``OrderModel.sample``'s
``gap_bias``), moved by integral control on the realised count per interval.

The LMM agent steers with one call per round, before its generator draws the next orders:
``kind, gap = controller.biases(times, rows, last, active)`` with the arrays it already
builds there, passed on to ``OrderModel.sample(..., kind_bias=kind, gap_bias=gap)``.

What the controller achieves is measured through the clearing house, with the real agent
and its decoding loop: ``mars_ray/reports/control.py``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mars_ray.lmm.batch_model import (
    MID,
    N_CAT,
    N_FEATURES,
    BatchModel,
    expected_counts,
    interval_vectors,
    order_categories,
    time_of_day,
)
from mars_ray.lmm.tokenizer import N_KINDS, N_PRICE, Tokenizer

# categories (batch_model.CATEGORIES) -> kind: new buys, buy cancels, new sells, sell cancels
_KIND_OF_CATEGORY = np.array([0, 0, 0, 0, 2, 2, 2, 1, 1, 1, 1, 3, 3, 3])
DEPTH = np.array([1.0, 1.0, -1.0, -1.0])  # the depth tilt: new orders up, cancels down


# ----------------------------------------------------------------------------- targets


@dataclass(frozen=True)
class MidPath:
    """Target mid (ticks) through (time ns since midnight, ticks) points; linear between
    them, flat before the first and after the last. ``relative``: ticks are offsets from
    each book's mid when the controller first sees it."""

    times_ns: Sequence[int]
    ticks: Sequence[float]
    relative: bool = False

    def __post_init__(self) -> None:
        t = np.asarray(self.times_ns, dtype=np.float64)
        if t.ndim != 1 or len(t) == 0 or len(t) != len(self.ticks):
            raise ValueError("MidPath needs as many times as ticks, at least one point")
        if (np.diff(t) <= 0).any():
            raise ValueError("MidPath times must be strictly increasing")

    def at(self, t_ns: np.ndarray) -> np.ndarray:
        return np.interp(
            np.asarray(t_ns, dtype=np.float64),
            np.asarray(self.times_ns, dtype=np.float64),
            np.asarray(self.ticks, dtype=np.float64),
        )

    @classmethod
    def ramp(cls, start_ns: int, seconds: float, ticks: float) -> MidPath:
        """From the start mid, ``ticks`` up (or down) linearly over ``seconds``."""
        return cls((start_ns, start_ns + round(seconds * 1e9)), (0.0, ticks), relative=True)


@dataclass(frozen=True)
class Volatility:
    """Target std of the mid change over one interval of the batch model (ticks).

    One integral state z per book, moved after every interval by ``rate`` times the log
    ratio of the realised std (a moving average over ``window`` intervals) to the target,
    drives two levers:

    - too volatile (z > 0): the depth tilt z · (+1, +1, -1, -1), more new orders and
      fewer cancels, which thickens the book (the flicker of the touch is what the
      directional lever cannot calm); the reverse tilt, thinning, is never used: a few
      tenths of it can empty a side and the mid then jumps by tens of ticks;
    - too calm (z < 0): the mid is steered along a random walk whose steps have std
      ``-z * 2 * sigma`` per interval (and lean back toward the mid by ``follow``), with
      the same directional tilt as a ``MidPath``.
    """

    sigma: float
    window: float = 6.0
    rate: float = 0.15
    follow: float = 0.2

    def __post_init__(self) -> None:
        if not (self.sigma > 0 and self.window >= 1 and self.rate > 0 and 0 <= self.follow <= 1):
            raise ValueError(f"bad {self}")


@dataclass(frozen=True)
class Volume:
    """Target order rate per book (orders per second, all kinds), steered through the gaps.

    One integral state z per book moves after every interval by ``rate`` times the log
    ratio of the target count to the realised one; the gap bias is z · ψ, with ψ the
    standardised negative log gap of each inter-arrival bin, so z > 0 favours short gaps (a
    faster flow) and z < 0 long ones. Kinds, prices and sizes stay the model's own. The
    log target is lowered by how far the book's mean log count has sat below the log of
    its mean count (moving averages over ``window`` intervals): a bursty flow, steered on
    log counts alone, would settle with its mean rate above the target.
    """

    orders_per_s: float
    rate: float = 0.5
    window: int = 30

    def __post_init__(self) -> None:
        if not (self.orders_per_s > 0 and self.rate > 0 and self.window >= 1):
            raise ValueError(f"bad {self}")


Target = MidPath | Volatility | Volume


@dataclass(frozen=True)
class ControlConfig:
    """How hard to steer. ``horizon_s``: look-ahead (the gap is closed over this long)."""

    horizon_s: float = 10.0
    gain: float = 1.0
    max_bias: float = 2.0  # cap on any kind's logit shift: odds change at most e^(2 * cap)
    skip_first: bool = True  # the agent's first ``last`` token is a made-up opening order

    def __post_init__(self) -> None:
        if not (self.horizon_s > 0 and self.gain >= 0 and self.max_bias >= 0):
            raise ValueError(f"bad ControlConfig {self}")


def tilt(p: np.ndarray, phi: np.ndarray, delta: np.ndarray, theta_max: float) -> np.ndarray:
    """θ (B,) with E_θ[φ] - E_0[φ] = δ under p (B, K) tilted by exp(θ φ), |θ| <= theta_max.

    The tilted mean rises monotonically with θ (its derivative is the tilted variance),
    so bisection finds it; a δ beyond reach gets the bound.
    """
    p = np.maximum(p, 1e-12)
    base = (p * phi).sum(-1)

    def shift(theta: np.ndarray) -> np.ndarray:
        w = p * np.exp(theta[:, None] * phi)
        return (w * phi).sum(-1) / w.sum(-1) - base

    lo = np.full(len(p), -theta_max)
    hi = np.full(len(p), theta_max)
    for _ in range(24):  # the bracket shrinks 2^24-fold: far finer than logits need
        mid = 0.5 * (lo + hi)
        above = shift(mid) > delta
        hi = np.where(above, mid, hi)
        lo = np.where(above, lo, mid)
    return 0.5 * (lo + hi)


def mids_of(
    depths: np.ndarray, last_spread: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(mid, spread) in ticks of (B, levels, 4) snapshot rows.

    A one-sided book's mid is its remaining quote moved half of ``last_spread`` (the
    book's last two-sided spread, default 1 tick) toward the empty side, so that it still
    moves with the flow where a stale mid would not; NaN when both sides are empty.
    """
    ask, bid = depths[:, 0, 0].astype(np.float64), depths[:, 0, 2].astype(np.float64)
    last = np.ones(len(ask)) if last_spread is None else np.asarray(last_spread, np.float64)
    two = (ask > 0) & (bid > 0)
    one_sided = np.where(ask > 0, ask - last / 2, np.where(bid > 0, bid + last / 2, np.nan))
    mid = np.where(two, (ask + bid) / 2, one_sided)  # np.select's order, at a third the cost
    return mid, np.where(two, ask - bid, last)


# ----------------------------------------------------------------------------- controller


class FlowController:
    """Per-book kind (and gap) biases toward per-book targets; call ``biases`` every round.

    ``targets``: one target for every book, or one per book (None: leave that book alone).
    ``impact`` overrides the batch model's per-kind mid impact φ (ticks per order).
    """

    def __init__(
        self,
        batch_model: BatchModel,
        tokenizer: Tokenizer,
        targets: Target | Sequence[Target | None] | None,
        books: int,
        config: ControlConfig | None = None,
        impact: np.ndarray | None = None,
        seed: int = 0,
    ) -> None:
        self.model = batch_model.eval()
        self.tokenizer = tokenizer
        self.config = config or ControlConfig()
        self.books = books
        if targets is None or isinstance(targets, MidPath | Volatility | Volume):
            targets = [targets] * books
        if len(targets) != books:
            raise ValueError(f"{len(targets)} targets for {books} books")
        self.targets = list(targets)
        phi = batch_model.impact.numpy() if impact is None else np.asarray(impact)
        self.phi = np.asarray(phi, dtype=np.float64).reshape(N_KINDS)
        if not np.abs(self.phi).max() > 0:
            raise ValueError("the per-kind mid impact is all zero: nothing to steer with")
        self.theta_max = self.config.max_bias / float(np.abs(self.phi).max())
        self.interval_ns = self.model.config.interval_ns
        k = self.model.config.context
        B = books
        # per-book state
        self.seen = np.zeros(B, dtype=bool)
        self.start_mid = np.full(B, np.nan)
        self.mid = np.full(B, np.nan)
        self.spread = np.ones(B)  # last two-sided spread (for a one-sided book's mid)
        self.slot = np.full(B, -1, dtype=np.int64)  # current interval on the grid
        self.slot_mid = np.full(B, np.nan)  # mid when the current interval began
        self.counts = np.zeros((B, N_CAT))
        self.volumes = np.zeros((B, N_CAT))
        self.hist = np.zeros((B, k, N_FEATURES), dtype=np.float32)
        self.hist_tod = np.zeros((B, k), dtype=np.float32)
        self.hist_len = np.zeros(B, dtype=np.int64)
        mean = self.model.mean.numpy().astype(np.float64)
        std = self.model.std.numpy().astype(np.float64)
        self.pred_mean = np.tile(mean, (B, 1))
        self.pred_std = np.tile(std, (B, 1))
        # volatility targets: integral state, moving average of squared mid changes, walk
        self.z = np.zeros(B)
        self.var = np.full(B, np.nan)
        self.walk: dict[int, tuple[int, list[float]]] = {}  # book -> (first slot, knots)
        self.rng = np.random.default_rng(seed)
        self.last_bias = np.zeros((B, N_KINDS), dtype=np.float32)
        self.abs_bias_sum = np.zeros((B, N_KINDS))  # over the rounds each book was active
        self.rounds = np.zeros(B, dtype=np.int64)
        # volume targets: integral state on the gap bias, over standardised -log(gap)
        neg_log_gap = -np.log(np.maximum(tokenizer.gap_values, 1_000).astype(np.float64))
        self.psi = (neg_log_gap - neg_log_gap.mean()) / max(neg_log_gap.std(), 1e-9)
        self.zv = np.zeros(B)
        self.closed = np.zeros(B, dtype=np.int64)  # intervals closed per book
        self.count_mean = np.zeros(B)  # moving averages of count and log(count + 1)
        self.log_count_mean = np.zeros(B)
        self.volume_rows = np.array([isinstance(t, Volume) for t in self.targets], dtype=bool)
        self.steer_rows = np.array(
            [isinstance(t, MidPath | Volatility) for t in self.targets], dtype=bool
        )
        # only order rates to steer: the order-batch model and the mids are not needed
        self.paces_only = bool(self.volume_rows.any() and not self.steer_rows.any())
        # category (batch_model.CATEGORIES) of every (kind, price level): one lookup per order
        kinds, levels = np.divmod(np.arange(N_KINDS * N_PRICE), N_PRICE)
        self.category = order_categories(kinds, levels).reshape(N_KINDS, N_PRICE)
        self.category_of = self.category.tolist()  # the same, for one order at a time
        self.size_values = tokenizer.size_values.tolist()

    # -------------------------------------------------------------- the round
    def biases(
        self,
        times_ns: np.ndarray,
        depths: np.ndarray,
        last_tokens: np.ndarray,
        active: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """(B, 4) float32 kind-logit biases for the next order of every book, and (B, n_gap)
        gap-logit biases (None when no book has a ``Volume`` target).

        ``times_ns`` (B,): time of each book's latest order; ``depths`` (B, levels, 4): the
        book after it (``OrderBook.snapshot`` layout); ``last_tokens`` (B, 4): that order
        (the ``last`` the agent feeds its generator); ``active`` (B,): rows generating now.
        Inactive rows are not observed (their last token was seen already) and get 0.
        """
        B = self.books
        times = np.asarray(times_ns, dtype=np.int64).reshape(B)
        active = np.ones(B, dtype=bool) if active is None else np.asarray(active, dtype=bool)
        if self.paces_only:
            return self._pace_round(times, np.asarray(last_tokens), active)
        mids, spread = mids_of(np.asarray(depths), self.spread)
        self.spread[active] = spread[active]
        rows = np.flatnonzero(active)
        new = ~self.seen[rows]
        if new.any():
            first = rows[new]
            self.seen[first] = True
            self.start_mid[first] = mids[first]
            self.slot[first] = times[first] // self.interval_ns
            self.slot_mid[first] = mids[first]
        observe = rows[~new] if self.config.skip_first else rows
        self._roll_intervals(observe, times)
        self._count(observe, np.asarray(last_tokens, dtype=np.int64))
        ok = rows[~np.isnan(mids[rows])]
        self.mid[ok] = mids[ok]
        fill = np.isnan(self.start_mid) & ~np.isnan(self.mid)
        self.start_mid[fill] = self.mid[fill]
        self.slot_mid[np.isnan(self.slot_mid)] = self.mid[np.isnan(self.slot_mid)]
        bias = np.zeros((B, N_KINDS), dtype=np.float32)
        steer = rows[self.steer_rows[rows] & ~np.isnan(self.mid[rows])]
        if len(steer):
            bias[steer] = self._bias(steer, times[steer])
            self.abs_bias_sum[rows] += np.abs(bias[rows])
        self.last_bias = bias
        self.rounds[rows] += 1
        if not self.volume_rows.any():
            return bias, None
        gap = np.zeros((B, len(self.psi)), dtype=np.float32)
        paced = rows[self.volume_rows[rows]]
        gap[paced] = self.zv[paced, None] * self.psi[None, :]
        return bias, gap

    def _pace_round(
        self, times: np.ndarray, last_tokens: np.ndarray, active: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """``biases`` when every target is a ``Volume`` (or none): count each active book's
        latest order into its interval and close the intervals it has passed, as the full
        round does, without the mids and the order-batch model that only kind targets use.
        A round per generated order, so plain Python over the few active books."""
        interval = self.interval_ns
        skip = self.config.skip_first
        gap = np.zeros((self.books, len(self.psi)), dtype=np.float32)
        sizes = self.size_values
        for b in np.flatnonzero(active).tolist():
            self.rounds[b] += 1
            slot = int(times[b]) // interval
            if not self.seen[b]:
                self.seen[b] = True
                self.slot[b] = slot
                if skip:
                    continue
            target = self.targets[b]
            volume = isinstance(target, Volume)
            if slot > self.slot[b]:
                if volume:
                    n_empty = min(slot - int(self.slot[b]) - 1, self.hist.shape[1])
                    self._pace(b, target, [float(self.counts[b].sum())] + [0.0] * n_empty)
                self.counts[b] = 0.0
                self.volumes[b] = 0.0
                self.slot[b] = slot
            kind, level, size = last_tokens[b, :3].tolist()
            category = self.category_of[kind][level]
            self.counts[b, category] += 1.0
            self.volumes[b, category] += sizes[size]
            if volume:
                gap[b] = self.zv[b] * self.psi
        return np.zeros((self.books, N_KINDS), dtype=np.float32), gap

    def mean_abs_bias(self) -> np.ndarray:
        """(B, 4) mean absolute kind bias per book over its rounds so far: what the targets
        asked of the kind logits (nothing, for a ``Volume`` target)."""
        return self.abs_bias_sum / np.maximum(self.rounds, 1)[:, None]

    # -------------------------------------------------------------- flow bookkeeping
    def _count(self, rows: np.ndarray, tokens: np.ndarray) -> None:
        if len(rows) == 0:
            return
        tok = tokens[rows]
        cat = self.category[tok[:, 0], tok[:, 1]]
        self.counts[rows, cat] += 1.0  # rows are distinct: no pair repeats
        self.volumes[rows, cat] += self.tokenizer.size_values[tok[:, 2]]

    def _roll_intervals(self, rows: np.ndarray, times: np.ndarray) -> None:
        """Close the intervals that ended before each row's latest order; re-predict."""
        slot = times // self.interval_ns
        moved = rows[slot[rows] > self.slot[rows]]
        if not len(moved):
            return
        empty = interval_vectors(np.zeros((1, N_CAT)), np.zeros((1, N_CAT)), np.zeros(1))[0]
        for b in moved:
            mid_end = self.mid[b]  # the mid before the order that opened the new interval
            dmid = mid_end - self.slot_mid[b]
            vec = interval_vectors(
                self.counts[b : b + 1], self.volumes[b : b + 1], np.array([np.nan_to_num(dmid)])
            )[0]
            n_empty = min(int(slot[b] - self.slot[b]) - 1, self.hist.shape[1])
            for j, v in enumerate([vec] + [empty] * n_empty):
                self._push(b, v, time_of_day((self.slot[b] + j + 1) * self.interval_ns))
            target = self.targets[b]
            if isinstance(target, Volatility):
                self._feedback(b, target, float(np.nan_to_num(dmid)))
            elif isinstance(target, Volume):
                counts = [float(self.counts[b].sum())] + [0.0] * n_empty
                self._pace(b, target, counts)
            self.counts[b] = 0.0
            self.volumes[b] = 0.0
            self.slot[b] = slot[b]
            self.slot_mid[b] = mid_end
        # the last entry's "next interval" is the one now starting (also after a long gap)
        self.hist_tod[moved, -1] = time_of_day(slot[moved] * self.interval_ns)
        for n in np.unique(self.hist_len[moved]):  # one batch per history length
            part = moved[self.hist_len[moved] == n]
            mean, std = self.model.predict(self.hist[part, -n:], self.hist_tod[part, -n:])
            self.pred_mean[part] = mean
            self.pred_std[part] = std

    def _push(self, b: int, vec: np.ndarray, tod_next: np.ndarray) -> None:
        self.hist[b, :-1] = self.hist[b, 1:]
        self.hist[b, -1] = vec
        self.hist_tod[b, :-1] = self.hist_tod[b, 1:]
        self.hist_tod[b, -1] = tod_next
        self.hist_len[b] = min(self.hist_len[b] + 1, self.hist.shape[1])

    def _feedback(self, b: int, target: Volatility, dmid: float) -> None:
        """Integral control of the volatility levers from one more interval's mid change."""
        sq = dmid * dmid
        if np.isnan(self.var[b]):  # start on target: only measured intervals move z
            self.var[b] = target.sigma**2
        self.var[b] += (sq - self.var[b]) / target.window
        floor = 0.05  # ticks: keeps the log finite through quiet intervals
        error = math.log(math.sqrt(self.var[b]) + floor) - math.log(target.sigma + floor)
        self.z[b] = min(max(self.z[b] + target.rate * error, -1.0), self.config.max_bias)

    def _pace(self, b: int, target: Volume, counts: list[float]) -> None:
        """Integral control of the gap bias from closed intervals' order counts. The first
        interval a book is seen in started before the controller did: it is not counted."""
        want = math.log(target.orders_per_s * self.interval_ns / 1e9 + 1.0)
        cap = self.config.max_bias
        for count in counts:
            if self.closed[b] > 0:
                log_count = math.log(count + 1.0)
                seen = int(self.closed[b])  # intervals averaged so far, this one included
                weight = 1.0 / min(seen, target.window)
                self.count_mean[b] += weight * (count - self.count_mean[b])
                self.log_count_mean[b] += weight * (log_count - self.log_count_mean[b])
                burst = max(math.log(self.count_mean[b] + 1.0) - self.log_count_mean[b], 0.0)
                step = target.rate * (want - burst - log_count)
                self.zv[b] = min(max(self.zv[b] + step, -cap), cap)
            self.closed[b] += 1

    def _walk_aim(self, b: int, target: Volatility, ahead: int) -> float:
        """The random-walk target at ``ahead``: knots on the interval grid, linear between."""
        slot = ahead / self.interval_ns
        first, knots = self.walk.setdefault(b, (int(slot), [float(self.mid[b])]))
        step = max(-self.z[b], 0.0) * 2.0 * target.sigma
        while first + len(knots) - 1 < slot + 1:
            last = knots[-1]
            lean = target.follow * (float(self.mid[b]) - last)
            knots.append(last + lean + step * float(self.rng.standard_normal()))
        i = min(int(slot) - first, len(knots) - 2)
        frac = slot - first - i
        return knots[i] + frac * (knots[i + 1] - knots[i])

    # -------------------------------------------------------------- steering
    def expected_flow(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per row: (orders per interval, kind mix (4,), mid drift per interval) expected
        by the batch model for the current interval."""
        counts = expected_counts(self.pred_mean[rows], self.pred_std[rows])
        per_kind = np.zeros((len(rows), N_KINDS))
        np.add.at(per_kind.T, _KIND_OF_CATEGORY, counts.T)
        total = per_kind.sum(-1)
        mix = per_kind / np.maximum(total, 1e-9)[:, None]
        return total, mix, self.pred_mean[rows, MID]

    def _bias(self, rows: np.ndarray, times: np.ndarray) -> np.ndarray:
        cfg = self.config
        ahead = times + round(cfg.horizon_s * 1e9)
        aim = np.empty(len(rows))
        gain = np.full(len(rows), cfg.gain)
        depth = np.zeros(len(rows))
        for i, b in enumerate(rows):
            target = self.targets[b]
            if isinstance(target, MidPath):
                base = self.start_mid[b] if target.relative else 0.0
                aim[i] = base + float(target.at(ahead[i]))
            else:
                assert isinstance(target, Volatility)
                depth[i] = max(self.z[b], 0.0)
                aim[i] = self._walk_aim(int(b), target, int(ahead[i]))
                gain[i] *= self.z[b] < 0  # steer along the walk only to add volatility
        per_interval = cfg.horizon_s * 1e9 / self.interval_ns
        total, mix, drift = self.expected_flow(rows)
        needed = gain * (aim - self.mid[rows])
        n = np.maximum(total * per_interval, 1.0)
        delta = (needed - gain * drift * per_interval) / n
        theta = tilt(mix, self.phi, delta, self.theta_max)
        out = theta[:, None] * self.phi[None, :] + depth[:, None] * DEPTH
        return out.astype(np.float32)
