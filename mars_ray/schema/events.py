"""The one event schema: what is ingested, simulated, matched and written.

Every layer (LOBSTER reader, matching engine, simulation kernel, Parquet writer)
speaks these columns, so real and simulated flow can be compared row for row.

Books record events as plain tuples (cheap to append in the hot path) in the
order of ``ROW_FIELDS``; ``rows_to_table`` turns them into an Arrow table and
adds the per-book constants (instrument, trajectory), by way of a numpy structured
array of integers (``rows_to_records``, then ``records_to_table``) that callers may also
keep, and that the compiled book writes directly.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from enum import IntEnum
from typing import Any

import numpy as np
import pyarrow as pa

from mars_ray.schema import reasons


class EventType(IntEnum):
    """What happened. Stored as int8; the names are written into file metadata."""

    SUBMIT = 0  # an order was accepted
    CANCEL = 1  # size left the book without trading (full or partial cancel, IOC rest)
    MODIFY = 2  # an order changed price and/or size (price/size columns: new values)
    TRADE = 3  # a fill: order_id is the resting (or sell, in auctions) order
    REJECT = 4  # an order or request was refused; ``reason`` says why
    AUCTION = 5  # a call auction uncrossed: price and total volume
    HALT = 6  # trading halted
    RESUME = 7  # quoting (reason "quote") or trading (reason "trade") resumed
    HIDDEN_TRADE = 8  # an execution against hidden liquidity (LOBSTER type 5)
    PHASE = 9  # the session phase changed; reason names the new phase


class Side(IntEnum):
    BUY = 1
    SELL = -1
    NONE = 0


class OrderType(IntEnum):
    LIMIT = 0
    MARKET = 1
    IOC = 2  # immediate-or-cancel limit order
    CANCEL = 3  # a request: cancel ``size`` shares (0 = all) of ``order_id``
    MODIFY = 4  # a request: set ``order_id`` to ``price`` / ``size``


# A book appends one tuple per event, in this order; ``seq`` is added on conversion.
ROW_FIELDS: tuple[str, ...] = (
    "time_ns",
    "event_type",
    "order_id",
    "side",
    "price",
    "size",
    "agent_id",
    "contra_order_id",
    "contra_agent_id",
    "reason",
)

NO_ID = -1  # order/agent id column value when there is none
NO_PRICE = 0  # price column value when there is none (market orders, cancels of unknown ids)

EVENT_SCHEMA = pa.schema(
    [
        pa.field("time_ns", pa.int64(), nullable=False),  # ns since midnight of the session date
        pa.field("instrument", pa.string(), nullable=False),
        pa.field("trajectory_id", pa.int32(), nullable=False),
        pa.field("seq", pa.int64(), nullable=False),  # per-book event sequence, ties in time
        pa.field("event_type", pa.int8(), nullable=False),
        pa.field("order_id", pa.int64(), nullable=False),
        pa.field("side", pa.int8(), nullable=False),
        pa.field("price", pa.int64(), nullable=False),  # integer ticks
        pa.field("size", pa.int64(), nullable=False),
        pa.field("agent_id", pa.int64(), nullable=False),
        pa.field("contra_order_id", pa.int64(), nullable=False),
        pa.field("contra_agent_id", pa.int64(), nullable=False),
        pa.field("reason", pa.string(), nullable=True),  # why (rejects, cancels, phases)
    ],
    metadata={
        "mars_ray.event_types": json.dumps({e.name.lower(): int(e) for e in EventType}),
        "mars_ray.sides": json.dumps({s.name.lower(): int(s) for s in Side}),
    },
)

_NUMPY_TYPES = {f.name: f.type.to_pandas_dtype() for f in EVENT_SCHEMA if f.name != "reason"}


def empty_table() -> pa.Table:
    return EVENT_SCHEMA.empty_table()


# One event per record: the ``ROW_FIELDS`` as int64 (narrowed on conversion to a table), the
# reason as its code (``reasons``): a plain integer array, so the compiled book's event rows
# are records as they are, and records of millions of events hold no Python objects.
EVENT_RECORD = np.dtype([(name, np.int64) for name in ROW_FIELDS])
# A book's event tuples as numpy reads them in one C loop, the reason still a string or None.
_TUPLE_RECORD = np.dtype([(name, np.int64) for name in ROW_FIELDS[:-1]] + [("reason", object)])


def rows_to_records(rows: Sequence[tuple]) -> np.ndarray:
    """One book's event tuples as a structured array of ``EVENT_RECORD``."""
    records = np.empty(len(rows), dtype=EVENT_RECORD)
    if not rows:
        return records
    read = np.array(rows, dtype=_TUPLE_RECORD)
    for name in ROW_FIELDS[:-1]:
        records[name] = read[name]
    code = reasons.code
    records["reason"] = [code(r) for r in read["reason"].tolist()]
    return records


def concat_records(chunks: Sequence[np.ndarray]) -> np.ndarray:
    """``EVENT_RECORD`` arrays joined, as flat integers: numpy joins structured arrays
    field by field, which over a day's thousands of chunks costs more than the copy."""
    flat = np.concatenate([chunk.view(np.int64) for chunk in chunks])
    return flat.view(EVENT_RECORD)


def records_to_table(
    records: np.ndarray, instrument: str, trajectory_id: int, seq_base: int = 0
) -> pa.Table:
    """Turn one book's ``EVENT_RECORD`` array into an Arrow table of EVENT_SCHEMA.

    ``seq`` numbers the rows from ``seq_base``: the book's running event count.
    """
    n = len(records)
    if n == 0:
        return empty_table()
    arrays: dict[str, Any] = {
        name: pa.array(records[name].astype(_NUMPY_TYPES[name])) for name in ROW_FIELDS[:-1]
    }
    arrays["reason"] = reasons.to_arrow(records["reason"])
    arrays["seq"] = pa.array(np.arange(seq_base, seq_base + n, dtype=np.int64))
    arrays["instrument"] = pa.repeat(pa.scalar(instrument, type=pa.string()), n)
    arrays["trajectory_id"] = pa.array(np.full(n, trajectory_id, dtype=np.int32))
    return pa.table([arrays[f.name] for f in EVENT_SCHEMA], schema=EVENT_SCHEMA)


def rows_to_table(
    rows: Sequence[tuple], instrument: str, trajectory_id: int, seq_base: int = 0
) -> pa.Table:
    """Turn one book's event tuples into an Arrow table of EVENT_SCHEMA.

    ``seq`` numbers the rows from ``seq_base``: the book's running event count.
    """
    return records_to_table(rows_to_records(rows), instrument, trajectory_id, seq_base)


def concat_books(tables: Sequence[pa.Table]) -> pa.Table:
    """Concatenate per-book event tables in the canonical order: trajectory, instrument, seq.

    Each table holds one book's events in ``seq`` order (several tables of one book
    keep their order), so ordering the tables is enough: no row sort over millions of
    events. The order does not depend on how instruments were spread over shards,
    which is what makes output identical for any shard count.
    """
    tables = [t for t in tables if t.num_rows]
    if not tables:
        return empty_table()
    keyed = sorted(
        tables, key=lambda t: (t["trajectory_id"][0].as_py(), t["instrument"][0].as_py())
    )
    return pa.concat_tables(keyed)


def event_type_name(code: int) -> str:
    return EventType(code).name.lower()


def with_metadata(table: pa.Table, extra: dict[str, str]) -> pa.Table:
    """Return ``table`` with ``extra`` merged into its schema metadata."""
    meta = dict(table.schema.metadata or {})
    meta.update({k.encode(): v.encode() for k, v in extra.items()})
    return table.replace_schema_metadata(meta)


CANONICAL_ORDER = [
    ("trajectory_id", "ascending"),
    ("instrument", "ascending"),
    ("seq", "ascending"),
]


def event_digest(table: pa.Table) -> str:
    """sha256 of an event table's content in the canonical order: what "the same events"
    means across shard counts, book engines and machines (metadata is not part of it).

    The rows are sorted by trajectory, instrument and ``seq`` (exchange-level rejects that
    belong to no book keep their order), then every EVENT_SCHEMA column is hashed in schema
    order: integers as little-endian int64, strings as their distinct values in order of
    first appearance (each followed by a NUL byte) and one int64 code per row (-1: null).
    """
    table = table.select(EVENT_SCHEMA.names).sort_by(CANONICAL_ORDER)
    digest = hashlib.sha256()
    for field in EVENT_SCHEMA:
        column = table[field.name].combine_chunks()
        if pa.types.is_string(field.type):
            encoded = column.dictionary_encode()
            digest.update(b"".join(v.encode() + b"\0" for v in encoded.dictionary.to_pylist()))
            codes = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False)
            digest.update(codes.astype("<i8").tobytes())
        else:
            values = column.to_numpy(zero_copy_only=False)
            digest.update(values.astype("<i8").tobytes())
    return digest.hexdigest()
