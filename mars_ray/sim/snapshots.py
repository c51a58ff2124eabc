"""Top-N book snapshots, written in LOBSTER's column order (prices in ticks)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa


def snapshot_schema(levels: int) -> pa.Schema:
    fields = [
        pa.field("time_ns", pa.int64()),
        pa.field("instrument", pa.string()),
        pa.field("trajectory_id", pa.int32()),
        pa.field("phase", pa.int8()),
    ]
    for k in range(1, levels + 1):
        fields += [
            pa.field(f"ask_price_{k}", pa.int64()),
            pa.field(f"ask_size_{k}", pa.int64()),
            pa.field(f"bid_price_{k}", pa.int64()),
            pa.field(f"bid_size_{k}", pa.int64()),
        ]
    return pa.schema(fields)


class SnapshotRecorder:
    def __init__(self, levels: int) -> None:
        self.levels = levels
        self._keys: list[tuple[int, int, int, int]] = []  # time, trajectory, instrument, phase
        self._depth: list[np.ndarray] = []

    def add(self, t: int, key: tuple[int, int], phase: int, depth: np.ndarray) -> None:
        self._keys.append((t, key[0], key[1], int(phase)))
        self._depth.append(depth.reshape(-1))

    def table(self, instruments: Sequence) -> pa.Table:
        schema = snapshot_schema(self.levels)
        if not self._keys:
            return schema.empty_table()
        keys = np.array(self._keys, dtype=np.int64)
        depth = np.stack(self._depth)
        names = np.array([spec.name for spec in instruments], dtype=object)
        columns = [
            pa.array(keys[:, 0]),
            pa.array(names[keys[:, 2]].tolist(), type=pa.string()),
            pa.array(keys[:, 1].astype(np.int32)),
            pa.array(keys[:, 3].astype(np.int8)),
        ]
        columns += [pa.array(depth[:, j]) for j in range(depth.shape[1])]
        table = pa.table(columns, schema=schema)
        return table.sort_by(
            [("time_ns", "ascending"), ("trajectory_id", "ascending"), ("instrument", "ascending")]
        )
