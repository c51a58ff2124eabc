"""A run on disk: what shards write as they go, and how a run is read back.

A run directory holds Parquet datasets that the shards write themselves, one part file per
(shard, trajectory, chunk of barriers), so that the driver never holds the events:

    RUN_DIR/run.json                         the manifest: config, seed, run id, progress
    RUN_DIR/events/part-tTTTTT-sSSS-cCCCCCC.parquet
    RUN_DIR/snapshots/part-tTTTTT-sSSS-cCCCCCC.parquet
    RUN_DIR/injected/batch-NNNNNN.parquet    orders the driver injected, with the time
    RUN_DIR/checkpoints/RUN_ID/shard-SSS/chunk-CCCCCC.pkl

Every part file carries the config, the seed and the run id in its schema metadata. A part
is written under a temporary name (a leading ``.``, which Arrow's dataset readers skip) and
renamed when complete, so a crash never leaves a half-written file that looks complete. A
part's name fixes its content: a shard that is rebuilt from a checkpoint writes the same
chunks again, byte for byte the same rows.

``read_events`` gives a run's events in the canonical order (trajectory, instrument,
``seq``), the same rows for any number of shards; ``pyarrow.dataset.dataset(RUN_DIR /
"events")`` and ``pandas.read_parquet(RUN_DIR / "events")`` read the same files directly.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from mars_ray.schema.events import CANONICAL_ORDER, EVENT_SCHEMA, EventType, with_metadata

MANIFEST = "run.json"
EVENTS = "events"
SNAPSHOTS = "snapshots"
INJECTED = "injected"
CHECKPOINTS = "checkpoints"
ORPHANS = -1  # the trajectory number of parts with events that belong to no book
_PART = re.compile(r"^part-t(-?\d+)-s(\d+)-c(\d+)\.parquet$")


class RunFilesError(ValueError):
    """A folder that is not a mars-ray run, or one whose files do not fit together."""


@dataclass(frozen=True)
class RunDir:
    """Where one run's files go. ``run_id`` tells this run's checkpoints from another's."""

    root: Path
    run_id: str

    def part(self, kind: str, trajectory: int, shard: int, chunk: int) -> Path:
        return self.root / kind / f"part-t{trajectory:05d}-s{shard:03d}-c{chunk:06d}.parquet"

    def checkpoint_dir(self, shard: int) -> Path:
        return self.root / CHECKPOINTS / self.run_id / f"shard-{shard:03d}"

    def shard_parts(self, shard: int) -> list[tuple[Path, int]]:
        """Every part file of one shard (finished or not) with its chunk number."""
        out = []
        for kind in (EVENTS, SNAPSHOTS):
            folder = self.root / kind
            if not folder.is_dir():
                continue
            for path in folder.iterdir():
                name = path.name.removeprefix(".tmp-")
                match = _PART.match(name)
                if match and int(match.group(2)) == shard:
                    out.append((path, int(match.group(3))))
        return out

    def drop_parts_after(self, shard: int, chunk: int) -> None:
        """Forget what one shard wrote after ``chunk`` (and any unfinished part): it will
        write those chunks again from its checkpoint."""
        for path, number in self.shard_parts(shard):
            if number > chunk or path.name.startswith("."):
                path.unlink(missing_ok=True)


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` under a temporary name beside ``path``, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".tmp-{path.name}")
    with open(temporary, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(temporary, path)


def write_part(path: Path, table: pa.Table, metadata: dict[str, str]) -> None:
    """One part file, atomically (see the module doc), zstd-compressed."""
    sink = pa.BufferOutputStream()
    pq.write_table(with_metadata(table, metadata), sink, compression="zstd")
    write_atomically(path, sink.getvalue().to_pybytes())


def write_manifest(root: Path, manifest: dict[str, Any]) -> None:
    write_atomically(root / MANIFEST, json.dumps(manifest, indent=2).encode())


def read_manifest(root: str | Path) -> dict[str, Any]:
    """A run's manifest; RunFilesError naming the folder when it is not a run."""
    path = Path(root) / MANIFEST
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise RunFilesError(f"{root} is not a mars-ray run (no {MANIFEST})") from None
    except json.JSONDecodeError as exc:
        raise RunFilesError(f"{path} is not valid JSON: {exc}") from None


def dataset(root: str | Path, kind: str = EVENTS) -> ds.Dataset:
    """The Arrow dataset of one kind of part file (events or snapshots) of a run."""
    folder = Path(root) / kind
    if not folder.is_dir():
        raise RunFilesError(f"{root} has no {kind}/ folder: not a mars-ray run")
    schema = EVENT_SCHEMA if kind == EVENTS else None
    return ds.dataset(folder, format="parquet", schema=schema)


def read_events(
    root: str | Path, columns: list[str] | None = None, filter: pc.Expression | None = None
) -> pa.Table:
    """A run's events in the canonical order (trajectory, instrument, ``seq``).

    ``columns`` and ``filter`` are Arrow's (``pc.field("instrument") == "ALPHA"``): only
    what they select is read. Rejects that belong to no book (an unknown instrument) sort
    under the instrument name they gave.
    """
    wanted = None if columns is None else sorted({*columns, "trajectory_id", "instrument", "seq"})
    table = dataset(root, EVENTS).to_table(columns=wanted, filter=filter)
    table = table.sort_by(CANONICAL_ORDER)
    return table if columns is None else table.select(columns)


def read_trades(root: str | Path, filter: pc.Expression | None = None) -> pa.Table:
    trades = pc.field("event_type") == int(EventType.TRADE)
    return read_events(root, filter=trades if filter is None else trades & filter)


def read_snapshots(root: str | Path, filter: pc.Expression | None = None) -> pa.Table:
    """A run's book snapshots, ordered by time, trajectory and instrument."""
    table = dataset(root, SNAPSHOTS).to_table(filter=filter)
    return table.sort_by(
        [("time_ns", "ascending"), ("trajectory_id", "ascending"), ("instrument", "ascending")]
    )
