"""The LMM's training corpus: one row per order, from real LOBSTER days and simulated days.

Both sources go through one code path, ``derive_orders``: a LOBSTER message file
and the orderbook rows after each message. A real day is read as it ships; a
simulated day (one seed, one instrument) is first written as LOBSTER messages and
its orderbook rebuilt by replaying them (``mars_ray.pipelines.corpus`` runs those
simulations), so real and simulated flow are turned into orders by the very same rules:

- type 1 (a limit order came to rest) -> BUY / SELL at its price;
- types 2 / 3 (partial cancel / delete) -> CANCEL_BUY / CANCEL_SELL at the order's price;
- a run of consecutive type 4 executions with one timestamp and one resting side is
  ONE marketable order from the other side (size: the run's total, level MARKETABLE);
  executions at the time of an auction cross (type 6) are the auction's fills, not
  orders, and make none;
- types 5, 6, 7 (hidden executions, crosses, halts) make no order.

The book before message i is orderbook row i - 1 (before message 0: the
``initial`` row, ``book_before_first`` for a real file, empty for a simulated
day, which starts from an empty book). An order's gap is the time since the
previous order of the same unit (0 for the first). A whole unit goes to one split,
so no order of a test day is ever seen in training. The corpus is written as Parquet
(the config it was built from in its metadata) plus ``corpus.json`` with the counts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mars_ray.data.lobster import (
    CROSS,
    DELETE,
    EXECUTE,
    HIDDEN,
    PARTIAL_CANCEL,
    SUBMIT,
    Messages,
    book_before_first,
    read_pair,
)
from mars_ray.data.lobster_replay import replay_orderbook
from mars_ray.data.lobster_write import events_to_messages
from mars_ray.lmm.tokenizer import (
    BOOK_LEVELS,
    INSIDE,
    MARKETABLE,
    N_BOOK,
    N_KINDS,
    N_PRICE,
    Kind,
    book_features,
    price_levels,
)

CORPUS_FILE = "corpus.parquet"
COUNTS_FILE = "corpus.json"
SPLITS = ("train", "validation", "test")
SOURCES = ("lobster", "synthetic")
Split = Literal["train", "validation", "test"]

CORPUS_SCHEMA = pa.schema(
    [
        pa.field("sequence", pa.int32(), nullable=False),  # one per (source, day, instrument)
        pa.field("source", pa.string(), nullable=False),  # lobster | synthetic
        pa.field("instrument", pa.string(), nullable=False),
        pa.field("day", pa.string(), nullable=False),  # YYYY-MM-DD, or seed-<n>
        pa.field("split", pa.string(), nullable=False),  # train | validation | test
        pa.field("time_ns", pa.int64(), nullable=False),  # ns since midnight
        pa.field("kind", pa.int8(), nullable=False),  # tokenizer.Kind
        pa.field("price_level", pa.int8(), nullable=False),  # 0..23, see tokenizer
        pa.field("inside_ticks", pa.int16(), nullable=False),  # INSIDE: ticks better, else 0
        pa.field("size", pa.int64(), nullable=False),  # shares
        pa.field("gap_ns", pa.int64(), nullable=False),  # since the unit's previous order
        pa.field("book", pa.list_(pa.float32(), N_BOOK), nullable=False),  # the book before
    ]
)


class CorpusError(ValueError):
    """A corpus (or its inputs) that cannot be used; says which file, column, row and value."""


# ----------------------------------------------------------------------------- orders
@dataclass
class UnitOrders:
    """One unit's orders as columns, in order."""

    time_ns: np.ndarray  # int64
    kind: np.ndarray  # int8
    price_level: np.ndarray  # int8
    size: np.ndarray  # int64
    gap_ns: np.ndarray  # int64
    book: np.ndarray  # float32 (n, N_BOOK)
    inside_ticks: np.ndarray  # int16: how far an INSIDE order improves its own best, else 0

    def __len__(self) -> int:
        return len(self.kind)

    def last(self, n: int) -> UnitOrders:
        """The last ``n`` orders (all of them when there are fewer)."""
        keep = slice(max(0, len(self) - n), len(self))
        cols = (
            self.time_ns,
            self.kind,
            self.price_level,
            self.size,
            self.gap_ns,
            self.book,
            self.inside_ticks,
        )
        return UnitOrders(*(c[keep] for c in cols))


def derive_orders(
    msgs: Messages,
    orderbook: np.ndarray,
    initial: np.ndarray | None = None,
    reference: int = 0,
    window: tuple[int, int] | None = None,
) -> UnitOrders:
    """A unit's orders from its LOBSTER messages and the orderbook row after each one.

    ``initial`` is the book before message 0 (one row; None = empty). ``reference``
    is the price (ticks) that levels are measured from while both sides are empty
    and nothing has traded yet; after a trade, its price is the reference. With
    ``window`` (start, end) ns, only orders at start <= time < end are kept (the
    book still evolves through every message) and the first kept order has gap 0.
    """
    n = len(msgs)
    orderbook = np.asarray(orderbook, dtype=np.int64)
    if orderbook.ndim != 2 or orderbook.shape[0] != n or orderbook.shape[1] % 4:
        raise CorpusError(
            f"orderbook must have one row of 4 * levels columns per message: "
            f"{n} messages, orderbook shape {orderbook.shape}"
        )
    width = orderbook.shape[1]
    first = np.zeros(width, dtype=np.int64) if initial is None else np.asarray(initial).reshape(-1)
    if first.shape != (width,):
        raise CorpusError(f"initial book has {first.size} columns, the orderbook {width}")
    typ, t, direction = msgs.type, msgs.time_ns, msgs.direction
    price, size = msgs.price, msgs.size

    execute = typ == EXECUTE
    auction = execute & np.isin(t, t[typ == CROSS])
    visible = execute & ~auction
    continues = np.zeros(n, dtype=bool)
    continues[1:] = visible[:-1] & (t[1:] == t[:-1]) & (direction[1:] == direction[:-1])
    run_start = visible & ~continues
    run_of = np.cumsum(run_start) - 1  # the run each visible execution belongs to
    run_size = np.bincount(run_of[visible], weights=size[visible], minlength=int(run_start.sum()))

    new = typ == SUBMIT
    cancel = (typ == PARTIAL_CANCEL) | (typ == DELETE)
    idx = np.flatnonzero(new | cancel | run_start)
    if window is not None:
        idx = idx[(t[idx] >= window[0]) & (t[idx] < window[1])]
    buy = direction[idx] == 1
    kind = np.where(
        new[idx],
        np.where(buy, Kind.BUY, Kind.SELL),
        np.where(
            cancel[idx],
            np.where(buy, Kind.CANCEL_BUY, Kind.CANCEL_SELL),
            np.where(buy, Kind.SELL, Kind.BUY),
        ),  # an execution's side is the resting one
    ).astype(np.int8)
    order_size = size[idx].copy()
    is_run = run_start[idx]
    order_size[is_run] = np.rint(run_size[run_of[idx[is_run]]]).astype(np.int64)

    before = orderbook[np.maximum(idx - 1, 0)]
    before[idx == 0] = first
    traded = np.where(execute | (typ == CROSS) | (typ == HIDDEN), np.arange(n), -1)
    last_trade = np.maximum.accumulate(traded) if n else traded
    prior = np.where(idx > 0, last_trade[np.maximum(idx - 1, 0)], -1)
    ref = np.where(prior >= 0, price[np.maximum(prior, 0)], reference)
    level = price_levels(kind, price[idx], before[:, 2], before[:, 0], ref)
    level[is_run] = MARKETABLE
    own = np.where(buy, before[:, 2], before[:, 0])
    better = np.where(buy, price[idx] - own, own - price[idx])
    inside = (level == INSIDE) & (own > 0)

    times = t[idx].astype(np.int64)
    gap = np.zeros(len(idx), dtype=np.int64)
    gap[1:] = np.diff(times)
    return UnitOrders(
        time_ns=times,
        kind=kind,
        price_level=level.astype(np.int8),
        size=order_size.astype(np.int64),
        gap_ns=gap,
        book=book_features(before, times),
        inside_ticks=np.where(inside, better, 0).astype(np.int16),
    )


def simulated_orders(
    events: pa.Table, reference: int, window: tuple[int, int] | None = None
) -> UnitOrders:
    """One simulated book's orders from its events (one instrument, one trajectory), by the
    rules a real day goes through: written as LOBSTER messages, the orderbook rebuilt by
    replaying them (``replay_orderbook``), then ``derive_orders`` from an empty book."""
    msgs, _ = events_to_messages(events)
    rows = replay_orderbook(msgs, BOOK_LEVELS)
    return derive_orders(msgs, rows, None, reference, window)


@dataclass(frozen=True)
class Unit:
    """One (source, day, instrument) order sequence and its split."""

    source: str
    instrument: str
    day: str
    split: str


def real_day_orders(msgs: Messages, book: np.ndarray) -> UnitOrders:
    """One real day's orders from its messages and orderbook rows (``read_pair``); the book
    before the first message is rebuilt from row 0."""
    first_price = int(msgs.price[0]) if len(msgs) else 0
    return derive_orders(msgs, book, book_before_first(book, msgs), first_price)


def lobster_orders(message: Path, orderbook: Path, skip_bad_rows: bool = False) -> UnitOrders:
    """One real day's orders, read from its LOBSTER file pair."""
    return real_day_orders(*read_pair(message, orderbook, skip_bad_rows=skip_bad_rows))


def corpus_table(parts: list[tuple[Unit, UnitOrders]], metadata: dict[str, str]) -> pa.Table:
    """Units (in the order given) -> one table of CORPUS_SCHEMA; ``sequence`` numbers them."""
    tables = []
    for seq, (unit, orders) in enumerate(parts):
        n = len(orders)
        book = np.ascontiguousarray(orders.book, dtype=np.float32).reshape(-1)
        columns = {
            "sequence": pa.array(np.full(n, seq, dtype=np.int32)),
            "source": pa.repeat(pa.scalar(unit.source, pa.string()), n),
            "instrument": pa.repeat(pa.scalar(unit.instrument, pa.string()), n),
            "day": pa.repeat(pa.scalar(unit.day, pa.string()), n),
            "split": pa.repeat(pa.scalar(unit.split, pa.string()), n),
            "time_ns": pa.array(orders.time_ns.astype(np.int64)),
            "kind": pa.array(orders.kind.astype(np.int8)),
            "price_level": pa.array(orders.price_level.astype(np.int8)),
            "inside_ticks": pa.array(orders.inside_ticks.astype(np.int16)),
            "size": pa.array(orders.size.astype(np.int64)),
            "gap_ns": pa.array(orders.gap_ns.astype(np.int64)),
            "book": pa.FixedSizeListArray.from_arrays(pa.array(book), N_BOOK),
        }
        tables.append(pa.table([columns[f.name] for f in CORPUS_SCHEMA], schema=CORPUS_SCHEMA))
    table = pa.concat_tables(tables) if tables else CORPUS_SCHEMA.empty_table()
    return table.replace_schema_metadata({k.encode(): v.encode() for k, v in metadata.items()})


def corpus_counts(table: pa.Table) -> dict[str, Any]:
    """Orders and units per source and split, and in all."""
    units = table.group_by(["source", "split", "sequence"]).aggregate([([], "count_all")])
    per: dict[str, dict[str, dict[str, int]]] = {}
    for source, split, count in zip(
        units["source"].to_pylist(),
        units["split"].to_pylist(),
        units["count_all"].to_pylist(),
        strict=True,
    ):
        cell = per.setdefault(source, {}).setdefault(split, {"orders": 0, "units": 0})
        cell["orders"] += count
        cell["units"] += 1
    sources = {s: {sp: per[s][sp] for sp in SPLITS if sp in per[s]} for s in SOURCES if s in per}
    splits = {
        sp: {
            "orders": sum(v[sp]["orders"] for v in sources.values() if sp in v),
            "units": sum(v[sp]["units"] for v in sources.values() if sp in v),
        }
        for sp in SPLITS
    }
    return {
        "orders": table.num_rows,
        "units": units.num_rows,
        "sources": sources,
        "splits": splits,
    }


def write_corpus(table: pa.Table, out_dir: Path, counts: dict[str, Any]) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"corpus": out_dir / CORPUS_FILE, "counts": out_dir / COUNTS_FILE}
    meta = dict(table.schema.metadata or {})
    meta[b"mars_ray.corpus_counts"] = json.dumps(counts, sort_keys=True).encode()
    pq.write_table(table.replace_schema_metadata(meta), paths["corpus"], compression="zstd")
    paths["counts"].write_text(json.dumps(counts, indent=2) + "\n")
    return paths


# ----------------------------------------------------------------------------- reading
def load_corpus(path: str | Path) -> pa.Table:
    """Read a corpus (``corpus.parquet`` or the folder holding it) and validate it.

    Raises CorpusError naming missing or mistyped columns, and for each rule a
    row breaks, the first such row, its value and how many rows break it.
    """
    path = Path(path)
    if path.is_dir():
        path = path / CORPUS_FILE
    if not path.is_file():
        raise CorpusError(f"corpus not found: {path}")
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise CorpusError(f"{path}: not a readable Parquet file ({exc})") from None
    validate_corpus(table, str(path))
    return table


def validate_corpus(table: pa.Table, where: str = "corpus") -> None:
    """Check columns, types and every row's values (see ``load_corpus``)."""
    problems = []
    names = set(table.column_names)
    missing = [f.name for f in CORPUS_SCHEMA if f.name not in names]
    if missing:
        problems.append(
            f"missing column(s) {missing} (a corpus written by an older mars-ray: "
            "rebuild it with `mars-ray data build-corpus CONFIG`)"
        )
    for f in CORPUS_SCHEMA:
        if f.name in names and not table.schema.field(f.name).type.equals(f.type):
            problems.append(
                f"column {f.name!r} has type {table.schema.field(f.name).type}, expected {f.type}"
            )
    if problems:
        raise CorpusError(f"{where}: " + "; ".join(problems))
    for f in CORPUS_SCHEMA:
        nulls = table.column(f.name).null_count
        if nulls:
            mask = table.column(f.name).is_null().to_numpy(zero_copy_only=False)
            problems.append(
                f"column {f.name!r}: null at row {int(np.flatnonzero(mask)[0])} ({nulls} rows)"
            )
    if problems:
        raise CorpusError(f"{where}: " + "; ".join(problems))

    def check(bad: np.ndarray, column: str, values: np.ndarray, rule: str) -> None:
        rows = np.flatnonzero(bad)
        if rows.size:
            r = int(rows[0])
            value = values[r]
            if isinstance(value, pa.Scalar):
                value = value.as_py()
            elif isinstance(value, np.generic):
                value = value.item()
            problems.append(
                f"row {r}: {column} {value!r} ({rule}; {rows.size:,} row"
                f"{'s' if rows.size > 1 else ''})"
            )

    col = {
        n: table.column(n).to_numpy()
        for n in ("sequence", "kind", "price_level", "size", "gap_ns", "time_ns", "inside_ticks")
    }
    check(col["size"] <= 0, "size", col["size"], "must be a positive number of shares")
    check(col["gap_ns"] < 0, "gap_ns", col["gap_ns"], "must not be negative")
    check(col["time_ns"] < 0, "time_ns", col["time_ns"], "must not be negative")
    kind, level = col["kind"], col["price_level"]
    check((kind < 0) | (kind >= N_KINDS), "kind", kind, f"must be in 0..{N_KINDS - 1}")
    check((level < 0) | (level >= N_PRICE), "price_level", level, f"must be in 0..{N_PRICE - 1}")
    inside = col["inside_ticks"]
    check(inside < 0, "inside_ticks", inside, "must not be negative")
    check((inside > 0) & (level != INSIDE), "inside_ticks", inside, "must be 0 off level INSIDE")
    seq = col["sequence"]
    back = np.zeros(len(seq), dtype=bool)
    back[1:] = seq[1:] < seq[:-1]
    check(back, "sequence", seq, "rows must be ordered by sequence")
    for column, allowed in (("split", SPLITS), ("source", SOURCES)):
        values = table.column(column)
        bad = pc.invert(pc.is_in(values, value_set=pa.array(allowed)))
        check(bad.to_numpy(zero_copy_only=False), column, values, f"must be one of {allowed}")
    offset, bad_rows, first = 0, 0, None
    for chunk in table.column("book").chunks:  # chunk by chunk: no copy of the whole column
        book = chunk.flatten().to_numpy(zero_copy_only=False).reshape(-1, N_BOOK)
        if not np.isfinite(book).all():
            rows = np.flatnonzero(~np.isfinite(book).all(axis=1))
            bad_rows += rows.size
            if first is None:
                k = int(np.flatnonzero(~np.isfinite(book[rows[0]]))[0])
                first = (offset + int(rows[0]), k, float(book[rows[0], k]))
        offset += len(chunk)
    if first is not None:
        problems.append(
            f"row {first[0]}: book[{first[1]}] {first[2]!r} "
            f"(book features must be finite; {bad_rows:,} row{'s' if bad_rows > 1 else ''})"
        )
    if not problems:  # a unit in two splits would leak; only meaningful on well-formed rows
        pairs = table.group_by(["sequence", "split"]).aggregate([])
        counts = pairs.group_by("sequence").aggregate([([], "count_all")])
        leaked = pc.filter(counts["sequence"], pc.greater(counts["count_all"], 1))
        if len(leaked):
            problems.append(f"sequence {leaked[0].as_py()} is in more than one split")
    if problems:
        raise CorpusError(f"{where}: " + "; ".join(problems))
