"""The order-batch model: one book's aggregate order flow, one time interval at a time.

Where the order model (model.py) writes a book's orders one by one, this model works
at a coarser grain, which is what a controller needs to plan with: per interval of
``interval_s`` seconds (default 10 s) a book's flow is one vector of D = 29 numbers,

    log1p(count)       of 14 categories (below)
    log1p(volume/100)  of the same 14 categories (shares, in round lots)
    mid change         over the interval, in ticks (a multiple of half a tick)

The 14 categories are side (buy, sell) x 7 kinds of order by price level (tokenizer):

    new marketable (level 0), new inside the spread (1), new at 0-2 ticks behind the best
    (2-4), new 3+ ticks behind (5+); cancel at the best (2), 1-2 behind (3-4), 3+ behind (5+)

(cancels are never at levels 0/1 in the corpus). A small GRU reads the last ``context``
intervals (plus the time of day of the interval it predicts) and outputs a diagonal
Gaussian over the next interval's vector: log-normal counts and volumes, Gaussian mid
change, each with its own predicted spread, so quiet and busy regimes both fit. Long
horizons come from ``rollout``: sample the next interval, append it, repeat.

The mid price is not stored in the corpus, but every order's effect on it is: only one
side of the book moves per order, and which one is fixed by the order (a new passive or
cancelled buy moves the bid, a marketable buy the ask, and mirrored for sells), so the
spread change after the order (from the book features) gives the mid change exactly:
``mid_changes``. On the GOOG day this reproduces the orderbook file's mid at all 142,320
orders. While a side is empty the mid is undefined and its change counts as 0.

Training (``train_batch_model``) aggregates the corpus into intervals first (a few
seconds for the default corpus) and then trains on random windows of intervals, which
is cheap: the model is a small GRU over a few dozen numbers per interval.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mars_ray.lmm.corpus import CorpusError
from mars_ray.lmm.tokenizer import (
    BOOK_LEVELS,
    INSIDE,
    MARKETABLE,
    N_KINDS,
    OPEN_NS,
    SESSION_NS,
    Kind,
)

SIDES = ("buy", "sell")
GROUPS = ("mkt", "inside", "near", "far", "cxl_touch", "cxl_near", "cxl_far")
CATEGORIES = tuple(f"{s}_{g}" for s in SIDES for g in GROUPS)
N_CAT = len(CATEGORIES)  # 14
COUNT = slice(0, N_CAT)  # log1p(count) columns
VOLUME = slice(N_CAT, 2 * N_CAT)  # log1p(volume / 100) columns
MID = 2 * N_CAT  # mid change column (ticks)
N_FEATURES = 2 * N_CAT + 1  # 29
LOT = 100.0  # volumes are modelled in round lots
FORMAT = "mars-ray-batch/1"
SHIPPED_BATCH = Path(__file__).resolve().parent / "checkpoints" / "batch-small.pt"

_SPREAD, _ASK1, _BID1 = 2 * BOOK_LEVELS, 0, BOOK_LEVELS  # book feature columns used here


@dataclass(frozen=True)
class BatchConfig:
    """Interval length, model shape and optimiser; the defaults train in seconds on CPU."""

    interval_s: float = 10.0
    context: int = 30  # intervals the model reads (5 minutes at 10 s)
    hidden: int = 64
    layers: int = 1
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    min_std: float = 0.1  # floor of every predicted std (transformed units): no point masses
    eval_every: int = 100

    def __post_init__(self) -> None:
        if not self.interval_s > 0:
            raise ValueError(f"BatchConfig.interval_s={self.interval_s} must be > 0")
        for name in ("context", "hidden", "layers", "batch_size", "eval_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"BatchConfig.{name}={getattr(self, name)} must be >= 1")
        if not self.min_std > 0:
            raise ValueError(f"BatchConfig.min_std={self.min_std} must be > 0")

    @property
    def interval_ns(self) -> int:
        return round(self.interval_s * 1e9)


# ----------------------------------------------------------------------------- features


def order_categories(kind: np.ndarray, price_level: np.ndarray) -> np.ndarray:
    """Category index 0..13 (``CATEGORIES``) of each order from its kind and price level."""
    kind = np.asarray(kind, dtype=np.int64)
    level = np.asarray(price_level, dtype=np.int64)
    sell = (kind == Kind.SELL) | (kind == Kind.CANCEL_SELL)
    cancel = kind >= Kind.CANCEL_BUY
    new_group = np.select([level == MARKETABLE, level == INSIDE, level <= 4], [0, 1, 2], 3)
    cancel_group = np.select([level <= 2, level <= 4], [4, 5], 6)
    return np.where(sell, len(GROUPS), 0) + np.where(cancel, cancel_group, new_group)


def mid_changes(
    kind: np.ndarray,
    price_level: np.ndarray,
    spread: np.ndarray,
    two_sided: np.ndarray,
    starts: np.ndarray,
) -> np.ndarray:
    """Mid change (ticks) caused by each order, from the spread before it and before the next.

    ``spread`` (ticks) and ``two_sided`` (both sides non-empty) describe the book before
    each order; ``starts`` are unit boundaries (no change is carried across them, and a
    unit's last order gets 0). The side an order moves is fixed by the order, so the mid
    moves by half the spread change, signed by that side (see the module docstring).
    """
    n = len(kind)
    kind = np.asarray(kind, dtype=np.int64)
    level = np.asarray(price_level, dtype=np.int64)
    out = np.zeros(n, dtype=np.float64)
    if n < 2:
        return out
    moves_bid = (
        ((kind == Kind.BUY) & (level != MARKETABLE))
        | (kind == Kind.CANCEL_BUY)
        | ((kind == Kind.SELL) & (level == MARKETABLE))
    )
    ds = np.diff(np.asarray(spread, dtype=np.float64))
    ok = two_sided[:-1] & two_sided[1:]
    out[:-1] = np.where(ok, np.where(moves_bid[:-1], -ds, ds) / 2.0, 0.0)
    last = np.asarray(starts, dtype=np.int64)[1:] - 1
    out[last[last >= 0]] = 0.0
    return out


def spread_from_features(book: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(spread ticks, two-sided) from book features (n, >= 21): inverts log1p exactly."""
    spread = np.rint(np.expm1(book[:, _SPREAD].astype(np.float64)))
    return spread, (book[:, _ASK1] > 0) & (book[:, _BID1] > 0)


def interval_vectors(counts: np.ndarray, volumes: np.ndarray, dmid: np.ndarray) -> np.ndarray:
    """Raw per-interval aggregates (n, 14), (n, 14), (n,) -> model vectors (n, 29) float32."""
    out = np.empty((len(dmid), N_FEATURES), dtype=np.float32)
    out[:, COUNT] = np.log1p(np.maximum(counts, 0))
    out[:, VOLUME] = np.log1p(np.maximum(volumes, 0) / LOT)
    out[:, MID] = dmid
    return out


def time_of_day(t_ns: np.ndarray | int) -> np.ndarray:
    """Same scale as the book features: 0 at 09:30, 1 at 16:00."""
    return ((np.asarray(t_ns, dtype=np.float64) - OPEN_NS) / SESSION_NS).astype(np.float32)


@dataclass
class IntervalData:
    """Every unit's intervals, in order; ``starts[u]:starts[u + 1]`` is unit u."""

    x: np.ndarray  # (n, 29) float32 model vectors
    tod: np.ndarray  # (n,) float32 time of day at each interval's start
    starts: np.ndarray  # (units + 1,) int64
    split: np.ndarray  # (units,) str
    impact: np.ndarray  # (4,) mean mid change per order of each kind (ticks), train split
    interval_s: float

    @property
    def units(self) -> int:
        return len(self.starts) - 1

    def unit_ids(self, split: str) -> np.ndarray:
        return np.flatnonzero(self.split == split)


def aggregate_orders(
    time_ns: np.ndarray,
    kind: np.ndarray,
    price_level: np.ndarray,
    size: np.ndarray,
    dmid: np.ndarray,
    starts: np.ndarray,
    interval_s: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Orders of consecutive units -> (vectors (n, 29), time of day (n,), interval starts).

    Intervals sit on a grid from midnight; a unit spans every interval from its first to
    its last order's, empty ones included (they are part of the flow's rhythm).
    """
    step = round(interval_s * 1e9)
    starts = np.asarray(starts, dtype=np.int64)
    time_ns = np.asarray(time_ns, dtype=np.int64)
    units = len(starts) - 1
    unit = np.repeat(np.arange(units), np.diff(starts))
    slot = time_ns // step
    first = slot[starts[:-1]] if units else np.zeros(0, np.int64)
    length = slot[starts[1:] - 1] - first + 1 if units else np.zeros(0, np.int64)
    offset = np.concatenate([[0], np.cumsum(length)]).astype(np.int64)
    row = offset[unit] + slot - first[unit]
    total = int(offset[-1])
    cat = order_categories(kind, price_level)
    flat = row * N_CAT + cat
    counts = np.bincount(flat, minlength=total * N_CAT).reshape(total, N_CAT)
    volumes = np.bincount(flat, weights=size, minlength=total * N_CAT).reshape(total, N_CAT)
    moves = np.bincount(row, weights=dmid, minlength=total)
    grid = np.concatenate(
        [np.arange(f, f + n, dtype=np.int64) for f, n in zip(first, length, strict=True)]
        or [np.zeros(0, np.int64)]
    )
    return interval_vectors(counts, volumes, moves), time_of_day(grid * step), offset


def aggregate_corpus(
    corpus: str | Path | pa.Table, interval_s: float = 10.0, sequences: list[int] | None = None
) -> IntervalData:
    """Aggregate a corpus: a corpus.parquet (only the columns needed, one row group at a
    time) or a table of CORPUS_SCHEMA in memory (``corpus.corpus_table``).

    ``sequences`` keeps only those units (a slice for quick experiments and tests).
    """
    columns = ["sequence", "split", "time_ns", "kind", "price_level", "size", "book"]
    parts: dict[str, list[np.ndarray]] = {c: [] for c in (*columns[:-1], "spread", "two")}
    for t in _corpus_parts(corpus, columns):
        if sequences is not None:
            t = t.filter(pc.is_in(t["sequence"], pa.array(sequences, pa.int32())))
        if t.num_rows == 0:
            continue
        book = t["book"].combine_chunks().values.to_numpy().reshape(t.num_rows, -1)
        spread, two = spread_from_features(book)
        parts["spread"].append(spread)
        parts["two"].append(two)
        for c in columns[:-1]:
            parts[c].append(t[c].to_numpy(zero_copy_only=False))
    if not parts["sequence"]:
        where = "table" if isinstance(corpus, pa.Table) else corpus
        raise CorpusError(f"corpus {where}: no orders (sequences={sequences})")
    cols = {k: np.concatenate(v) for k, v in parts.items()}
    seq = cols["sequence"]
    starts = np.concatenate([[0], np.flatnonzero(np.diff(seq)) + 1, [len(seq)]])
    dmid = mid_changes(cols["kind"], cols["price_level"], cols["spread"], cols["two"], starts)
    x, tod, offset = aggregate_orders(
        cols["time_ns"], cols["kind"], cols["price_level"], cols["size"], dmid, starts, interval_s
    )
    split = cols["split"][starts[:-1]].astype(str)
    train = np.repeat(split == "train", np.diff(starts))
    kind = cols["kind"].astype(np.int64)
    if not train.any():
        train = np.ones(len(kind), dtype=bool)
    impact = np.bincount(kind[train], weights=dmid[train], minlength=N_KINDS) / np.maximum(
        np.bincount(kind[train], minlength=N_KINDS), 1
    )
    return IntervalData(x, tod, offset, split, impact.astype(np.float32), interval_s)


def _corpus_parts(corpus: str | Path | pa.Table, columns: list[str]) -> Iterator[pa.Table]:
    """The corpus's ``columns``, a table at a time; names the columns it lacks."""
    if isinstance(corpus, pa.Table):
        where, names = "table", corpus.schema.names
    else:
        path = Path(corpus)
        if not path.is_file():
            raise CorpusError(f"corpus not found: {path}")
        pf = pq.ParquetFile(path)
        where, names = str(path), pf.schema_arrow.names
    missing = [c for c in columns if c not in names]
    if missing:
        raise CorpusError(f"corpus {where}: missing column(s) {missing}")
    if isinstance(corpus, pa.Table):
        yield corpus.select(columns)
        return
    for g in range(pf.metadata.num_row_groups):
        yield pf.read_row_group(g, columns=columns)


# ----------------------------------------------------------------------------- model


class BatchModel(nn.Module):
    """GRU over interval vectors -> diagonal Gaussian over the next interval's vector.

    Inputs are standardised by the training split's mean/std (buffers, saved with the
    weights); the input at position t is interval t plus the time of day of interval
    t + 1, and the output at t is the distribution of interval t + 1, in raw units.
    """

    def __init__(
        self,
        cfg: BatchConfig,
        mean: np.ndarray | None = None,
        std: np.ndarray | None = None,
        impact: np.ndarray | None = None,
    ) -> None:
        super().__init__()
        self.config = cfg
        D = N_FEATURES

        def buffer(value: np.ndarray | None, default: float, n: int) -> Tensor:
            return torch.full((n,), default) if value is None else torch.tensor(value).float()

        self.register_buffer("mean", buffer(mean, 0.0, D))
        self.register_buffer("std", buffer(std, 1.0, D))
        self.register_buffer("impact", buffer(impact, 0.0, N_KINDS))
        self.inp = nn.Linear(D + 1, cfg.hidden)
        self.gru = nn.GRU(cfg.hidden, cfg.hidden, cfg.layers, batch_first=True)
        self.out = nn.Linear(cfg.hidden, 2 * D)
        nn.init.zeros_(self.out.weight)  # start at the training mean/std: the mean baseline
        nn.init.zeros_(self.out.bias)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, x: Tensor, tod_next: Tensor) -> tuple[Tensor, Tensor]:
        """x (B, T, 29) raw vectors, tod_next (B, T) -> (mean, std) (B, T, 29) raw units."""
        z = (x - self.mean) / self.std
        h, _ = self.gru(F.gelu(self.inp(torch.cat((z, tod_next.unsqueeze(-1)), dim=-1))))
        mu, log_s = self.out(h).chunk(2, dim=-1)
        # The output is in standard units: mean = data mean + mu * std, std = exp(log_s) * std.
        std = torch.clamp(torch.exp(log_s) * self.std, min=self.config.min_std)
        return self.mean + mu * self.std, std

    @staticmethod
    def nll(mean: Tensor, std: Tensor, y: Tensor) -> Tensor:
        """Gaussian NLL summed over the 29 features, per interval (nats): shape y.shape[:-1]."""
        return (0.5 * ((y - mean) / std) ** 2 + torch.log(std) + 0.5 * math.log(2 * math.pi)).sum(
            -1
        )

    @torch.no_grad()
    def predict(self, history: np.ndarray, tod_next: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The next interval's (mean, std) (B, 29) from each row's history (B, T, 29).

        ``tod_next`` (B, T): the time of day of the interval after each history entry
        (the last one is the interval predicted). Only the last ``context`` entries are read.
        """
        k = self.config.context
        x = torch.as_tensor(np.asarray(history, dtype=np.float32)[:, -k:])
        tod = torch.as_tensor(np.asarray(tod_next, dtype=np.float32)[:, -k:])
        mean, std = self(x, tod)
        return mean[:, -1].numpy(), std[:, -1].numpy()

    @torch.no_grad()
    def rollout(
        self, history: np.ndarray, tod_next: np.ndarray, steps: int, rng: np.random.Generator
    ) -> np.ndarray:
        """Sample ``steps`` future intervals (B, steps, 29), each fed back as history.

        ``tod_next`` as in ``predict``; later intervals' times follow on the grid.
        """
        x = np.asarray(history, dtype=np.float32)
        tod = np.asarray(tod_next, dtype=np.float32)
        per = np.float32(self.config.interval_s * 1e9 / SESSION_NS)
        out = []
        for _ in range(steps):
            mean, std = self.predict(x, tod)
            draw = (mean + std * rng.standard_normal(mean.shape)).astype(np.float32)
            draw[:, : 2 * N_CAT] = np.maximum(draw[:, : 2 * N_CAT], 0.0)
            out.append(draw)
            x = np.concatenate([x, draw[:, None]], axis=1)[:, -self.config.context :]
            tod = np.concatenate([tod, tod[:, -1:] + per], axis=1)[:, -self.config.context :]
        return np.stack(out, axis=1)


def expected_counts(mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """E[count] per category from the log-normal (log1p) marginals: exp(mu + s^2/2) - 1."""
    m, s = mean[..., COUNT], std[..., COUNT]
    return np.maximum(np.exp(m + 0.5 * s**2) - 1.0, 0.0)


# ----------------------------------------------------------------------------- training


def _windows(data: IntervalData, units: np.ndarray, length: int) -> np.ndarray:
    """Start row of every window of ``length`` intervals inside the given units."""
    out = [
        np.arange(data.starts[u], data.starts[u + 1] - length + 1)
        for u in units
        if data.starts[u + 1] - data.starts[u] >= length
    ]
    return np.concatenate(out) if out else np.zeros(0, np.int64)


def _batch(data: IntervalData, begin: np.ndarray, length: int) -> tuple[Tensor, Tensor, Tensor]:
    idx = begin[:, None] + np.arange(length)
    x, tod = data.x[idx], data.tod[idx]
    return (
        torch.from_numpy(x[:, :-1]),
        torch.from_numpy(tod[:, 1:]),
        torch.from_numpy(x[:, 1:]),
    )


def baseline_nll(data: IntervalData, split: str, context: int, min_std: float) -> dict[str, float]:
    """NLL per interval of three baselines on the same targets as ``evaluate``, each a
    Gaussian with per-feature std fitted on the training split: ``mean`` (the training
    mean), ``last`` (repeat the last interval) and ``moving`` (the mean of the last
    ``context`` intervals)."""
    x = torch.from_numpy(data.x).double()
    csum = torch.cat((torch.zeros(1, N_FEATURES, dtype=x.dtype), x.cumsum(0)))

    def predictions(begin: np.ndarray) -> dict[str, Tensor]:
        t = torch.from_numpy(begin + context)
        moving = (csum[t] - csum[t - context]) / context
        return {"last": x[t - 1], "moving": moving}

    train = _windows(data, data.unit_ids("train"), context + 1)
    target = x[torch.from_numpy(train + context)]
    std = {"mean": x[torch.from_numpy(train + context)].std(0)}
    mean = target.mean(0)
    for name, pred in predictions(train).items():
        std[name] = (target - pred).pow(2).mean(0).sqrt()
    begin = _windows(data, data.unit_ids(split), context + 1)
    y = x[torch.from_numpy(begin + context)]
    preds = {"mean": mean.expand_as(y), **predictions(begin)}
    return {
        name: float(BatchModel.nll(pred, std[name].clamp(min=min_std), y).mean())
        for name, pred in preds.items()
    }


@torch.no_grad()
def evaluate(model: BatchModel, data: IntervalData, split: str) -> float:
    """Mean NLL (nats per interval) of every interval of a split that has a full context."""
    k = model.config.context
    begin = _windows(data, data.unit_ids(split), k + 1)
    if len(begin) == 0:
        raise ValueError(f"no {split} unit has more than context={k} intervals")
    model.eval()
    total = 0.0
    for chunk in np.array_split(begin, max(1, len(begin) // 2048)):
        x, tod, y = _batch(data, chunk, k + 1)
        mean, std = model(x, tod)
        total += float(BatchModel.nll(mean[:, -1], std[:, -1], y[:, -1]).sum())
    model.train()
    return total / len(begin)


def train_batch_model(
    corpus: str | Path | pa.Table | IntervalData,
    config: BatchConfig | None = None,
    steps: int = 600,
    seed: int = 0,
) -> tuple[BatchModel, list[dict[str, float]]]:
    """Train on the corpus's train split; history records train/validation NLL per interval.

    ``corpus``: a corpus.parquet path, a corpus table, or already aggregated ``IntervalData``.
    Held-out scores use the validation split (the test split when there is none); the last
    history record also holds the ``mean`` and ``last`` baselines on the same intervals.
    """
    cfg = config or BatchConfig()
    data = corpus if isinstance(corpus, IntervalData) else aggregate_corpus(corpus, cfg.interval_s)
    if not math.isclose(data.interval_s, cfg.interval_s):
        raise ValueError(
            f"data has interval_s={data.interval_s}, the config {cfg.interval_s}: re-aggregate"
        )
    held_out = next(
        (
            s
            for s in ("validation", "test", "train")
            if len(_windows(data, data.unit_ids(s), cfg.context + 1))
        ),
        "train",
    )
    length = cfg.context + 1
    begin = _windows(data, data.unit_ids("train"), length)
    if len(begin) == 0:
        raise ValueError(f"no train unit has at least context + 1 = {length} intervals")
    train_rows = np.concatenate(
        [np.arange(data.starts[u], data.starts[u + 1]) for u in data.unit_ids("train")]
    )
    x = data.x[train_rows].astype(np.float64)
    torch.manual_seed(seed)
    model = BatchModel(cfg, x.mean(0), np.maximum(x.std(0), cfg.min_std), data.impact)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    history: list[dict[str, float]] = []
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    for step in range(1, steps + 1):
        lr = cfg.lr * 0.5 * (1 + math.cos(math.pi * (step - 1) / steps))  # cosine to 0
        for group in opt.param_groups:
            group["lr"] = lr
        xb, tod, y = _batch(data, rng.choice(begin, cfg.batch_size), length)
        mean, std = model(xb, tod)
        loss = BatchModel.nll(mean, std, y).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % cfg.eval_every == 0 or step == steps:
            history.append(
                {
                    "step": step,
                    "train_nll": float(loss.detach()),
                    f"{held_out}_nll": evaluate(model, data, held_out),
                    "seconds": time.perf_counter() - t0,
                }
            )
    if history:
        base = baseline_nll(data, held_out, cfg.context, cfg.min_std)
        history[-1].update({f"{held_out}_{k}_baseline_nll": v for k, v in base.items()})
    model.eval()
    return model, history


# ----------------------------------------------------------------------------- files


def save_batch_model(
    path: str | Path, model: BatchModel, history: list[dict] | None = None
) -> None:
    """One torch file of plain types (config dict, tensors, history): loads weights_only."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "config": asdict(model.config),
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "history": history or [],
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


def load_batch_model(path: str | Path | None = None) -> tuple[BatchModel, list[dict[str, Any]]]:
    """A saved model and its training history; ``None``: the shipped one."""
    path = SHIPPED_BATCH if path is None else Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"order-batch model not found: {path}")
    raw = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise ValueError(f"{path}: not a {FORMAT} file")
    model = BatchModel(BatchConfig(**raw["config"]))
    model.load_state_dict(raw["model"])
    model.eval()
    return model, list(raw.get("history", []))
