"""Reading the trajectory API's answers back into tables (JSON or Arrow IPC)."""

from __future__ import annotations

from typing import Any

import pyarrow as pa


def read_arrow(body: bytes) -> tuple[pa.Table, pa.Table, dict[str, str]]:
    """An Arrow response -> (events, snapshots, metadata): the per-trajectory lists flattened
    into one events table and one snapshots table, each with its ``trajectory_id`` column."""
    table = pa.ipc.open_stream(body).read_all()
    meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
    return _flat(table, "events"), _flat(table, "snapshots"), meta


def _flat(table: pa.Table, column: str) -> pa.Table:
    rows = table.column(column).combine_chunks().flatten()
    return pa.Table.from_struct_array(rows)


def read_json(body: dict[str, Any]) -> tuple[pa.Table, pa.Table]:
    """A JSON response -> (events, snapshots), all trajectories in one table each."""
    trajectories = body["trajectories"]
    events = pa.concat_tables([pa.table(t["events"]) for t in trajectories])
    snapshots = pa.concat_tables([pa.table(t["snapshots"]) for t in trajectories])
    return events, snapshots
