"""OrderBatch: the columnar unit in which orders travel (agents → kernel → shard actors).

One batch carries many orders, for many instruments and trajectories. Prices
and sizes are float64 at this boundary on purpose: users and agents may send
NaN, negative or off-grid values, and the exchange turns those into reject
events rather than failing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from numba import njit

ORDER_SCHEMA = pa.schema(
    [
        pa.field("time_ns", pa.int64()),  # arrival time at the exchange
        pa.field("trajectory_id", pa.int32()),
        pa.field("instrument", pa.int32()),  # index into the simulation's instrument list
        pa.field("order_type", pa.int8()),  # OrderType
        pa.field("order_id", pa.int64()),  # for cancel / modify: the order to act on
        pa.field("side", pa.int8()),  # +1 buy, -1 sell (ignored for cancel / modify)
        pa.field("price", pa.float64()),  # currency units; NaN for market orders and cancels
        pa.field("size", pa.float64()),  # shares; for cancel 0 (or NaN) means all
        pa.field("agent_id", pa.int64()),
    ]
)

_DTYPES = {f.name: np.dtype(f.type.to_pandas_dtype()) for f in ORDER_SCHEMA}
_NAMES = tuple(_DTYPES)  # the columns, in field order
_DTYPE_ITEMS = tuple(_DTYPES.items())


@dataclass
class OrderBatch:
    time_ns: np.ndarray
    trajectory_id: np.ndarray
    instrument: np.ndarray
    order_type: np.ndarray
    order_id: np.ndarray
    side: np.ndarray
    price: np.ndarray
    size: np.ndarray
    agent_id: np.ndarray

    def __post_init__(self) -> None:
        n = None
        columns = vars(self)  # the fields, without getattr/setattr per column
        for name, dtype in _DTYPE_ITEMS:
            value = columns[name]
            if not (isinstance(value, np.ndarray) and value.dtype == dtype):
                value = columns[name] = np.asarray(value, dtype=dtype)
            if value.ndim != 1:
                raise ValueError(
                    f"OrderBatch.{name} must be one-dimensional, got shape {value.shape}"
                )
            if n is None:
                n = len(value)
            elif len(value) != n:
                raise ValueError(
                    f"OrderBatch.{name} has {len(value)} rows, expected {n} like the other columns"
                )

    def __len__(self) -> int:
        return len(self.time_ns)

    @classmethod
    def of_columns(cls, columns: tuple[np.ndarray, ...] | list[np.ndarray]) -> OrderBatch:
        """A batch of columns (in field order) already of their dtypes, one-dimensional and of
        one length, without checking them: for the kernel's own reshuffles of checked batches
        (``take``, ``concat``, the agents' compiled columns), where the checks cost more than
        the work."""
        batch = object.__new__(cls)
        d = batch.__dict__  # the fields unpacked in _NAMES order: the fastest way to set nine
        (d["time_ns"], d["trajectory_id"], d["instrument"], d["order_type"], d["order_id"],
         d["side"], d["price"], d["size"], d["agent_id"]) = columns  # fmt: skip
        return batch

    @classmethod
    def empty(cls) -> OrderBatch:
        return cls.of_columns([np.empty(0, dtype=dt) for dt in _DTYPES.values()])

    @classmethod
    def build(
        cls,
        time_ns,
        instrument,
        order_type,
        order_id,
        side,
        price,
        size,
        agent_id,
        trajectory_id=0,
    ) -> OrderBatch:
        """Broadcast scalars against the array arguments."""
        columns = dict(
            time_ns=time_ns,
            trajectory_id=trajectory_id,
            instrument=instrument,
            order_type=order_type,
            order_id=order_id,
            side=side,
            price=price,
            size=size,
            agent_id=agent_id,
        )
        arrays = [name for name, value in columns.items() if _ndim(value) == 1]
        n = max((len(columns[name]) for name in arrays), default=1)
        for name, dtype in _DTYPE_ITEMS:
            value = columns[name]
            if name in arrays:
                if not (isinstance(value, np.ndarray) and value.dtype == dtype):
                    columns[name] = np.asarray(value, dtype=dtype)
            else:  # np.full, without its overhead
                column = columns[name] = np.empty(n, dtype=dtype)
                column.fill(value)
        return cls(**columns)

    @classmethod
    def from_rows(cls, rows: list[tuple]) -> OrderBatch:
        """Orders as tuples in column order (time, trajectory, instrument, type, id, side,
        price, size, agent), for code that decides one order at a time."""
        if not rows:
            return cls.empty()
        columns = zip(*rows, strict=True)
        return cls(
            **{
                name: np.array(col, dtype=dt)
                for (name, dt), col in zip(_DTYPE_ITEMS, list(columns), strict=True)
            }
        )

    @classmethod
    def concat(cls, batches: list[OrderBatch]) -> OrderBatch:
        batches = [b for b in batches if len(b)]
        if not batches:
            return cls.empty()
        if len(batches) == 1:
            return batches[0]
        columns = [vars(b) for b in batches]
        return cls.of_columns([np.concatenate([c[name] for c in columns]) for name in _NAMES])

    def take(self, index: np.ndarray) -> OrderBatch:
        columns = vars(self)
        return OrderBatch.of_columns([columns[name][index] for name in _NAMES])

    def sorted(self) -> OrderBatch:
        """Deterministic processing order: arrival time, then agent, then batch position."""
        order = np.lexsort((self.agent_id, self.time_ns))  # stable: ties keep batch order
        return self.take(order)

    def sorted_split(self, t: int) -> tuple[OrderBatch, OrderBatch]:
        """``sorted().split_before(t)`` in one compiled call: (the rows arriving before ``t``,
        the rest), each in processing order, as views of one sorted copy."""
        columns = vars(self)
        *ordered, cut = _processing_sorted(*(columns[name] for name in _NAMES), t)
        return OrderBatch.of_columns(ordered).split_at(cut)

    def split_at(self, cut: int) -> tuple[OrderBatch, OrderBatch]:
        """(the first ``cut`` rows, the rest), as views of this batch's columns."""
        columns = vars(self)
        return (
            OrderBatch.of_columns([columns[name][:cut] for name in _NAMES]),
            OrderBatch.of_columns([columns[name][cut:] for name in _NAMES]),
        )

    def split_before(self, t: int) -> tuple[OrderBatch, OrderBatch]:
        """(orders arriving before t, the rest); assumes the batch is sorted."""
        cut = int(np.searchsorted(self.time_ns, t, side="left"))
        columns = vars(self)  # copies of slices: like take(), cheaper than an index array
        return (
            OrderBatch.of_columns([columns[name][:cut].copy() for name in _NAMES]),
            OrderBatch.of_columns([columns[name][cut:].copy() for name in _NAMES]),
        )

    def to_arrow(self) -> pa.Table:
        columns = vars(self)
        return pa.table({name: columns[name] for name in _NAMES}, schema=ORDER_SCHEMA)

    @classmethod
    def from_arrow(cls, table: pa.Table) -> OrderBatch:
        missing = [name for name in ORDER_SCHEMA.names if name not in table.column_names]
        if missing:
            raise ValueError(f"order table is missing column(s) {missing}")
        return cls(
            **{
                name: table.column(name).to_numpy(zero_copy_only=False)
                for name in ORDER_SCHEMA.names
            }
        )


@njit(cache=True)
def _processing_sorted(time_ns, trajectory_id, instrument, order_type, order_id, side, price,
                       size, agent_id, before):  # fmt: skip
    """The columns in ``OrderBatch.sorted``'s order: by time, then agent, then position (what
    the stable ``np.lexsort`` gives; a stable insertion sort for the usual few dozen rows),
    and the number of rows arriving before ``before``."""
    n = len(time_ns)
    if n <= 64:
        order = np.arange(n)
        for i in range(1, n):
            j, row = i, order[i]
            t, a = time_ns[row], agent_id[row]
            while j > 0 and (
                time_ns[order[j - 1]] > t
                or (time_ns[order[j - 1]] == t and agent_id[order[j - 1]] > a)
            ):
                order[j] = order[j - 1]
                j -= 1
            order[j] = row
    else:
        order = np.argsort(agent_id, kind="mergesort")
        order = order[np.argsort(time_ns[order], kind="mergesort")]
    cut = 0
    while cut < n and time_ns[order[cut]] < before:
        cut += 1
    return (
        time_ns[order], trajectory_id[order], instrument[order], order_type[order],
        order_id[order], side[order], price[order], size[order], agent_id[order], cut,
    )  # fmt: skip


def _ndim(value: object) -> int:
    """``np.ndim`` without its cost for the common arguments (arrays, Python scalars)."""
    if isinstance(value, np.ndarray):
        return value.ndim
    if isinstance(value, int | float):
        return 0
    return np.ndim(value)
