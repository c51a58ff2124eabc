"""Realism of generated order flow: a simulated run against a real LOBSTER day it never saw.

Every source (the real day, the run under test, an agent-based baseline run) is
turned into orders by one code path, the corpus's: LOBSTER messages and the
top-of-book row after each message go through ``derive_orders``. A run's
events become messages with ``events_to_messages`` and its rows are rebuilt by
replaying them from an empty book (a simulated day starts empty); the real
day's messages and rows are read as LOBSTER ships them (its rows come from the
full book, which a replay from a 1-level start cannot reproduce).

The reference file holds one level, so only what level 1 shows is compared:
every source is first cut to its level-1 view (``level1_view``: the messages
that change level 1, which is what LOBSTER writes into a 1-level file, and the
level-1 rows). Only continuous trading counts (real day: 09:30-16:00; runs:
open to closing call).

Metrics (samples per source, pooled over days / trajectories):

- ``spread``: best ask - best bid in ticks, in the book before each order (two-sided books).
- ``inter_arrival``: log10 seconds between consecutive orders (floored at 1 us).
- ``order_size``: log10 shares of each order.
- ``type_mix``: shares of resting new buy / new sell / cancel buy / cancel sell / marketable.
- ``imbalance``: (bid size - ask size) / (bid size + ask size) at level 1 before each order.
- ``time_to_cancel``: log10 seconds from an order's submission to its full cancel (type 3),
  for cancels whose submission is in the messages (floored at 1 us).
- ``volume_per_level``: shares of new-order volume at each price level 0..23 (docs/lmm.md);
  at level 1 only marketable, inside and at-the-best orders show (or any, on an empty side).
- ``returns_1min``: 1-minute log returns of the mid, divided by their own standard
  deviation per day / trajectory (instruments differ in price and volatility).

Continuous samples are compared by the Wasserstein-1 distance (in the metric's
unit), categorical ones by the L1 distance between normalised histograms (0..2).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from mars_ray.data.lobster import (
    EXECUTE,
    LobsterFormatError,
    Messages,
    book_before_first,
    find_pairs,
    parse_name,
    read_pair,
)
from mars_ray.lmm.corpus import CorpusError, UnitOrders, derive_orders
from mars_ray.lmm.tokenizer import (
    BEHIND,
    BOOK_LEVELS,
    DEEP,
    INSIDE,
    MARKETABLE,
    MAX_BEHIND,
    N_PRICE,
    OPEN_NS,
    SESSION_NS,
    Kind,
)
from mars_ray.reports.distances import l1_histograms, wasserstein1
from mars_ray.reports.lob_scores import cancel_lifetimes
from mars_ray.schema.clock import NS_PER_S

if TYPE_CHECKING:
    import pyarrow as pa

MINUTE_NS = 60 * NS_PER_S
MIN_SECONDS = 1e-6  # times below 1 us (simultaneous orders) count as 1 us before log10
REAL_WINDOW = (OPEN_NS, OPEN_NS + SESSION_NS)  # 09:30-16:00, the LOBSTER day's continuous part
LEVEL1 = 4  # columns of one orderbook level: ask px, ask size, bid px, bid size
SOURCES = ("reference", "lmm", "baseline")

TYPE_MIX = ("new buy", "new sell", "cancel buy", "cancel sell", "marketable")
LEVEL_NAMES = tuple(
    ["marketable", "inside"] + [f"{j} behind" for j in range(MAX_BEHIND + 1)] + ["deep"]
)
assert len(LEVEL_NAMES) == N_PRICE and LEVEL_NAMES[DEEP] == "deep"


@dataclass(frozen=True)
class Metric:
    """A compared quantity: W1 over samples, or L1 over a histogram of ``categories``."""

    name: str
    label: str
    distance: Literal["W1", "L1"]
    categories: tuple[str, ...] = ()
    discrete: bool = False  # integer-valued samples (histogram bins centred on integers)


METRICS: tuple[Metric, ...] = (
    Metric("spread", "spread (ticks)", "W1", discrete=True),
    Metric("inter_arrival", "inter-arrival time (log10 s)", "W1"),
    Metric("order_size", "order size (log10 shares)", "W1"),
    Metric("type_mix", "order type mix (share of orders)", "L1", TYPE_MIX),
    Metric("imbalance", "level-1 imbalance (bid-ask)/(bid+ask)", "W1"),
    Metric("time_to_cancel", "time to full cancel (log10 s)", "W1"),
    Metric("volume_per_level", "new volume per price level (share)", "L1", LEVEL_NAMES),
    Metric("returns_1min", "1-min mid log return (own std units)", "W1"),
)
METRIC_BY_NAME = {m.name: m for m in METRICS}

Samples = dict[str, np.ndarray]  # metric name -> values (W1) or category weights (L1)


class RealismError(ValueError):
    """An input the report cannot use; the message names the path or value."""


# ----------------------------------------------------------------------------- distances
def distance(metric: Metric, a: np.ndarray, b: np.ndarray) -> float:
    return wasserstein1(a, b) if metric.distance == "W1" else l1_histograms(a, b)


# ----------------------------------------------------------------------------- one book
def _log10_seconds(ns: np.ndarray) -> np.ndarray:
    return np.log10(np.maximum(np.asarray(ns, dtype=np.float64) / NS_PER_S, MIN_SECONDS))


def minute_returns(time_ns: np.ndarray, rows: np.ndarray, window: tuple[int, int]) -> np.ndarray:
    """Log returns of the mid between consecutive whole minutes of ``window`` (from its
    start, up to the last message), each minute's mid the last two-sided one at or before
    it; divided by their own standard deviation so instruments of different price and
    volatility compare."""
    start, end = window
    ask, bid = rows[:, 0], rows[:, 2]
    ok = (ask > 0) & (bid > 0) & (ask > bid) & (time_ns < end)
    t = time_ns[ok]
    mid = (ask[ok] + bid[ok]) / 2.0
    last = min(end, int(time_ns[-1])) if len(time_ns) else start - 1  # no mid after the data
    marks = np.arange(start, last + 1, MINUTE_NS, dtype=np.int64)
    at = np.searchsorted(t, marks, side="right") - 1
    prices = np.full(len(marks), np.nan)
    prices[at >= 0] = mid[at[at >= 0]]
    r = np.diff(np.log(prices))
    r = r[np.isfinite(r)]
    sd = float(r.std()) if len(r) else 0.0
    return r / sd if sd > 0 else r


def order_samples(orders: UnitOrders) -> Samples:
    """The per-order metrics of one book's orders (``derive_orders``'s output).

    Spread and level-1 sizes are read back from each order's book features, so they
    are the book before the order exactly as the model sees it.
    """
    book = np.asarray(orders.book, dtype=np.float64)
    spread = np.rint(np.expm1(book[:, 2 * BOOK_LEVELS])) if len(book) else np.zeros(0)
    ask1 = np.expm1(book[:, 0]) * 100 if len(book) else np.zeros(0)
    bid1 = np.expm1(book[:, BOOK_LEVELS]) * 100 if len(book) else np.zeros(0)
    depth = ask1 + bid1
    kind, level = orders.kind, orders.price_level
    size = orders.size.astype(np.float64)
    new = (kind == Kind.BUY) | (kind == Kind.SELL)
    marketable = new & (level == MARKETABLE)
    mix = np.array(
        [
            np.sum((kind == Kind.BUY) & ~marketable),
            np.sum((kind == Kind.SELL) & ~marketable),
            np.sum(kind == Kind.CANCEL_BUY),
            np.sum(kind == Kind.CANCEL_SELL),
            np.sum(marketable),
        ],
        dtype=np.float64,
    )
    return {
        "spread": spread[spread > 0],  # 0: a side is empty (or the book is crossed)
        "inter_arrival": _log10_seconds(orders.gap_ns[1:]),  # the first gap is no gap
        "order_size": np.log10(np.maximum(size, 1.0)),
        "type_mix": mix,
        "imbalance": ((bid1 - ask1) / np.where(depth > 0, depth, 1.0))[depth > 0],
        "volume_per_level": np.bincount(
            level[new].astype(np.int64), weights=size[new], minlength=N_PRICE
        ).astype(np.float64),
    }


def level1_view(
    msgs: Messages, rows: np.ndarray, initial: np.ndarray | None = None
) -> tuple[Messages, np.ndarray, np.ndarray]:
    """What a 1-level LOBSTER file would hold: ``depth_view`` of the level-1 rows."""
    rows = np.asarray(rows, dtype=np.int64)[:, :LEVEL1]
    first = np.zeros(LEVEL1, dtype=np.int64)
    if initial is not None:
        first = np.asarray(initial, dtype=np.int64).reshape(-1)[:LEVEL1]
    view, kept = depth_view(msgs, rows, first)
    return view, kept, first


def depth_view(msgs: Messages, rows: np.ndarray, first: np.ndarray) -> tuple[Messages, np.ndarray]:
    """What a LOBSTER file of ``rows``' depth would hold: the messages that change those
    rows (``first``: the book before message 0), and their rows.

    LOBSTER writes a book-side message (types 1-4) into an N-level file only when it
    changes the top N levels; types 5-7 are always written. Applied to the 10-level
    excerpt at level 1 this gives exactly the 1-level file's messages
    (tests/test_realism.py).
    """
    rows = np.asarray(rows, dtype=np.int64)
    before = np.vstack([np.asarray(first, np.int64)[None, :], rows[:-1]]) if len(rows) else rows
    keep = (rows != before).any(axis=1) | (msgs.type > EXECUTE)
    view = Messages(
        time_ns=msgs.time_ns[keep],
        type=msgs.type[keep],
        order_id=msgs.order_id[keep],
        size=msgs.size[keep],
        price=msgs.price[keep],
        direction=msgs.direction[keep],
        subtick=msgs.subtick[keep],
    )
    return view, rows[keep]


def unit_samples(
    msgs: Messages,
    rows: np.ndarray,
    initial: np.ndarray | None,
    reference: int,
    window: tuple[int, int],
) -> tuple[Samples, int]:
    """Every metric of one book (a day or a trajectory) and its number of orders.

    ``rows`` is the orderbook after each message, ``initial`` the book before the first
    message (None: empty), ``reference`` the price levels are measured from while the
    book is empty. Only the level-1 view (``level1_view``) of continuous trading
    (``window``) counts, whatever the number of levels given.
    """
    if len(rows) != len(msgs):
        raise RealismError(f"{len(rows):,} orderbook rows for {len(msgs):,} messages")
    msgs, rows, first = level1_view(msgs, rows, initial)
    try:
        orders = derive_orders(msgs, rows, first, reference, window)
    except CorpusError as exc:
        raise RealismError(str(exc)) from None
    out = order_samples(orders)
    out["time_to_cancel"] = _log10_seconds(cancel_lifetimes(msgs, window))
    out["returns_1min"] = minute_returns(msgs.time_ns, rows, window)
    return out, len(orders)


def merge_samples(parts: Sequence[Samples]) -> Samples:
    """Pool books: concatenate continuous samples, add histograms."""
    out: Samples = {}
    for m in METRICS:
        values = [p[m.name] for p in parts]
        if m.distance == "L1":
            out[m.name] = (
                np.sum(values, axis=0) if values else np.zeros(len(m.categories), dtype=np.float64)
            )
        else:
            out[m.name] = np.concatenate(values) if values else np.zeros(0)
    return out


def sample_counts(samples: Samples) -> dict[str, int]:
    """What each metric rests on: samples, orders (type mix) or shares (volume per level)."""
    return {
        m.name: round(float(samples[m.name].sum())) if m.distance == "L1" else len(samples[m.name])
        for m in METRICS
    }


# ----------------------------------------------------------------------------- sources
@dataclass
class Source:
    """One side of the comparison: its pooled samples and what it was made of."""

    samples: Samples
    info: dict[str, Any] = field(default_factory=dict)


def reference_pairs(directory: str | Path, ticker: str | None = None) -> list[tuple[Path, Path]]:
    """The LOBSTER file pairs of ``directory`` to compare with: one per (ticker, day).

    A day found twice (e.g. a slice of it in a sub-folder) is taken from the shallowest
    folder. Several tickers need ``ticker``: pooling a ticker the model trained on would
    leak.
    """
    root = Path(directory)
    if not root.is_dir():
        raise RealismError(f"reference folder not found: {str(root)!r}")
    days: dict[tuple[str, str], tuple[Path, Path]] = {}
    for message, orderbook in sorted(
        find_pairs(root), key=lambda p: (len(p[0].relative_to(root).parts), str(p[0]))
    ):
        name = parse_name(message)
        assert name is not None  # find_pairs keeps parsed names only
        days.setdefault((name.ticker, name.date), (message, orderbook))
    if not days:
        raise RealismError(f"no LOBSTER message/orderbook pairs in {str(root)!r}")
    tickers = sorted({t for t, _ in days})
    if ticker is None and len(tickers) > 1:
        raise RealismError(
            f"{str(root)!r} holds several tickers {tickers}: choose one with --ticker "
            "(the one the model never saw)"
        )
    if ticker is not None and ticker not in tickers:
        raise RealismError(f"ticker {ticker!r} not in {str(root)!r}; found {tickers}")
    chosen = ticker or tickers[0]
    return [days[k] for k in sorted(days) if k[0] == chosen]


def lobster_source(pairs: Sequence[tuple[Path, Path]], skip_bad_rows: bool = False) -> Source:
    """The real days' samples: messages and rows as LOBSTER ships them, 09:30-16:00.

    ``info["reads"]`` says, per message file, what reading tolerated (``ReadReport``).
    """
    parts, orders, files, reads = [], 0, [], {}
    for message, orderbook in pairs:
        try:
            msgs, book = read_pair(message, orderbook, skip_bad_rows=skip_bad_rows)
        except LobsterFormatError as exc:
            raise RealismError(str(exc)) from None
        initial = book_before_first(book, msgs)
        reference = int(msgs.price[0])
        samples, n = unit_samples(msgs, book, initial, reference, REAL_WINDOW)
        parts.append(samples)
        orders += n
        files.append(str(message))
        reads[str(message)] = msgs.report.summary()
    samples = merge_samples(parts)
    info = {"files": files, "orders": orders, "window": _clock(REAL_WINDOW), "reads": reads}
    return Source(samples, info)


def events_unit_samples(
    events: pa.Table, reference: int, window: tuple[int, int]
) -> tuple[Samples, int]:
    """One simulated book's samples: events -> LOBSTER messages -> replayed level-1 rows."""
    from mars_ray.data.lobster_replay import replay_orderbook
    from mars_ray.data.lobster_write import events_to_messages

    msgs, _ = events_to_messages(events)
    rows = replay_orderbook(msgs, 1)  # a simulated day starts from an empty book
    return unit_samples(msgs, rows, None, reference, window)


@dataclass(frozen=True)
class Run:
    """What the report needs of a ``mars-ray simulate`` output folder."""

    path: Path
    name: str
    instruments: tuple[str, ...]
    reference_ticks: Mapping[str, int]
    window: tuple[int, int]


def read_run(run_dir: str | Path) -> Run:
    """Check a run folder and read its config from its manifest."""
    from mars_ray.sim.run_files import RunFilesError, read_manifest

    path = Path(run_dir)
    if not path.is_dir():
        raise RealismError(f"run folder not found: {str(path)!r}")
    try:
        cfg = read_manifest(path)["config"]
        instruments = cfg["instruments"]
        ticks = {
            i["name"]: round(float(i["reference_price"]) / float(i["tick_size"]))
            for i in instruments
        }
        window = (int(cfg["session"]["open"]), int(cfg["session"]["closing_call"]))
    except RunFilesError as exc:
        raise RealismError(f"{exc}: not a mars-ray simulate output") from None
    except (ValueError, KeyError, TypeError, OSError) as exc:
        raise RealismError(f"{str(path)!r}: cannot read the run's config ({exc})") from None
    if not ticks:
        raise RealismError(f"{str(path)!r}: the run has no instruments")
    return Run(path, str(cfg.get("name", path.name)), tuple(ticks), ticks, window)


def trajectory_events(run: Run, instrument: str) -> list[pa.Table]:
    """One instrument's events of a run, one table per trajectory (in trajectory order)."""
    import pyarrow.compute as pc

    from mars_ray.sim.run_files import RunFilesError, read_events

    if instrument not in run.instruments:
        raise RealismError(
            f"instrument {instrument!r} not in run {str(run.path)!r}; "
            f"it has {list(run.instruments)}"
        )
    try:
        events = read_events(run.path, filter=pc.field("instrument") == instrument)
    except (RunFilesError, OSError, ValueError) as exc:
        raise RealismError(f"{str(run.path)!r}: unreadable ({exc})") from None
    trajectories = sorted(set(events["trajectory_id"].to_pylist()))
    return [events.filter(pc.equal(events["trajectory_id"], k)) for k in trajectories]


def run_source(run: Run, instrument: str) -> Source:
    """A run's samples for one instrument, every trajectory a book of its own, pooled."""
    parts, orders = [], 0
    books = trajectory_events(run, instrument)
    for book in books:
        samples, n = events_unit_samples(book, run.reference_ticks[instrument], run.window)
        parts.append(samples)
        orders += n
    info = {
        "run": str(run.path),
        "name": run.name,
        "instrument": instrument,
        "trajectories": len(books),
        "orders": orders,
        "window": _clock(run.window),
    }
    return Source(merge_samples(parts), info)


def _clock(window: tuple[int, int]) -> list[str]:
    def fmt(ns: int) -> str:
        s = ns // NS_PER_S
        return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"

    return [fmt(window[0]), fmt(window[1])]


# ----------------------------------------------------------------------------- comparison
NOTES = (
    "the metrics table compares the level-1 view of every source, whatever the reference's "
    "depth: only messages that change level 1 (as LOBSTER writes a 1-level file) and "
    "level-1 quotes; the LOB-Bench table below it compares at the reference's full depth",
    "continuous trading only: the reference 09:30-16:00, each run from its open to its "
    "closing call; trajectories of a run and days of the reference are pooled",
    "W1 is in each metric's unit (ticks, log10 s, log10 shares, imbalance, return std "
    "units); L1 is between normalised histograms (0 = same, 2 = disjoint)",
    "inter_arrival and time_to_cancel count times under 1 us (simultaneous orders) as 1 us",
    "returns_1min: 1-minute mid log returns divided by their own standard deviation, per day "
    "or trajectory",
    "reference rows are the file's own; run rows are rebuilt by replaying the run's events "
    "written as LOBSTER messages from an empty book; all then go through derive_orders",
)


def compare(
    reference: Samples, lmm: Samples, baseline: Samples | None
) -> dict[str, dict[str, float | None]]:
    """{metric: {"lmm": d, "baseline": d}}; None where a side has no samples (or no baseline)."""

    def clean(d: float) -> float | None:
        return d if np.isfinite(d) else None

    out: dict[str, dict[str, float | None]] = {}
    for m in METRICS:
        out[m.name] = {
            "lmm": clean(distance(m, reference[m.name], lmm[m.name])),
            "baseline": None
            if baseline is None
            else clean(distance(m, reference[m.name], baseline[m.name])),
        }
    return out


def closer(lmm: float | None, baseline: float | None) -> str:
    """Which run is nearer the real day on one metric."""
    if lmm is None or baseline is None:
        return "-"
    if np.isclose(lmm, baseline, rtol=1e-9, atol=1e-12):
        return "tie"
    return "lmm" if lmm < baseline else "baseline"


def format_table(metrics: Mapping[str, Mapping[str, float | None]]) -> str:
    """Metric | distance | LMM | baseline | closer, aligned."""

    def num(v: float | None) -> str:
        return "-" if v is None else f"{v:.4f}"

    rows = [("metric", "distance", "LMM", "baseline", "closer")]
    for m in METRICS:
        d = metrics[m.name]
        rows.append(
            (m.name, m.distance, num(d["lmm"]), num(d["baseline"]), closer(d["lmm"], d["baseline"]))
        )
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = []
    for k, row in enumerate(rows):
        lines.append(
            "  ".join(
                c.ljust(w) if i in (0, 1, 4) else c.rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            ).rstrip()
        )
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def empty_metrics(sources: Mapping[str, Source]) -> list[str]:
    """Notes on metrics a source has no samples for (their distances are null)."""
    notes = []
    for label, src in sources.items():
        empty = [
            m.name
            for m, n in zip(METRICS, sample_counts(src.samples).values(), strict=True)
            if n == 0
        ]
        if empty:
            notes.append(f"{label} has no samples of {', '.join(empty)}: its distances are null")
    return notes


# ----------------------------------------------------------------------------- plot
COLOURS = {"reference": "black", "lmm": "tab:blue", "baseline": "tab:orange"}
LEVEL_TICKS = {MARKETABLE: "M", INSIDE: "I", DEEP: "D"}


def plot_realism(
    sources: Mapping[str, Samples],
    metrics: Mapping[str, Mapping[str, float | None]],
    path: str | Path,
    title: str = "",
) -> Path:
    """One panel per metric: the real day's, the LMM run's and the baseline's distributions."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = 4
    rows = -(-len(METRICS) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax, m in zip(axes.flat, METRICS, strict=False):
        present = {k: v for k, v in sources.items() if v is not None}
        if m.distance == "L1":
            _bars(ax, m, present)
        else:
            _steps(ax, m, present)
        d = metrics.get(m.name, {})
        dist = ", ".join(
            f"{k} {v:.3g}"
            for k, v in (("lmm", d.get("lmm")), ("base", d.get("baseline")))
            if v is not None
        )
        ax.set_title(f"{m.label}\n{m.distance}: {dist or 'n/a'}", fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(METRICS) :]:
        ax.axis("off")
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=COLOURS.get(k), label=k) for k in sources]
    axes.flat[0].legend(handles=handles, fontsize=7, loc="upper right")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _steps(ax: Any, m: Metric, sources: Mapping[str, Samples]) -> None:
    values = [np.asarray(s[m.name], dtype=np.float64) for s in sources.values()]
    values = [v[np.isfinite(v)] for v in values]
    nonempty = [v for v in values if len(v)]
    if not nonempty:
        ax.text(0.5, 0.5, "no samples", ha="center", va="center", transform=ax.transAxes)
        return
    lo = min(float(np.quantile(v, 0.005)) for v in nonempty)
    hi = max(float(np.quantile(v, 0.995)) for v in nonempty)
    if m.name == "imbalance":
        lo, hi = -1.0, 1.0
    if m.discrete:
        hi = min(hi, lo + 60)
        bins = np.arange(np.floor(lo) - 0.5, np.ceil(hi) + 1.5)
    else:
        bins = np.linspace(lo, hi if hi > lo else lo + 1.0, 41)
    for label, v in zip(sources, values, strict=True):
        if len(v):
            ax.hist(
                np.clip(v, bins[0], bins[-1]),
                bins=bins,
                density=True,
                histtype="step",
                color=COLOURS.get(label, None),
                linewidth=1.1,
                label=f"{label} (n={len(v):,})",
            )
    ax.set_ylabel("density", fontsize=8)


def _bars(ax: Any, m: Metric, sources: Mapping[str, Samples]) -> None:
    k = len(m.categories)
    x = np.arange(k)
    width = 0.8 / max(len(sources), 1)
    for j, (label, s) in enumerate(sources.items()):
        h = np.asarray(s[m.name], dtype=np.float64)
        total = h.sum()
        share = h / total if total > 0 else h
        ax.bar(
            x + (j - (len(sources) - 1) / 2) * width,
            share,
            width,
            color=COLOURS.get(label),
            label=label,
        )
    if k <= 8:
        ax.set_xticks(x, m.categories, rotation=30, ha="right", fontsize=7)
    else:  # price levels: show up to the farthest one used
        used = [np.flatnonzero(np.asarray(s[m.name]) > 0) for s in sources.values()]
        top = max([int(u[-1]) for u in used if len(u)] + [BEHIND])
        ticks = [
            t
            for t in range(top + 1)
            if t in (MARKETABLE, INSIDE, DEEP) or (t % 5 == 2 and t < DEEP - 1)
        ]
        ax.set_xticks(ticks, [LEVEL_TICKS.get(t, str(t - BEHIND)) for t in ticks], fontsize=7)
        ax.set_xlim(-0.6, top + 0.6)
        ax.set_xlabel("level: M marketable, I inside, ticks behind best, D deep", fontsize=8)
    ax.set_ylabel("share", fontsize=8)
