"""The driver's record of a run: enough to bring any shard back to where the others are.

Shards meet the driver only through two kinds of input: the barriers it runs them to, and
the orders it injects between runs. The log keeps both, in the order they were given
(``ops``), and writes them beside the run (injected batches as Parquet files, the barriers
in the manifest), so that a shard rebuilt from a checkpoint, or every shard of a resumed
run, can be given the same inputs again: the barriers after its checkpoint and the
injections it has not seen (those given at or after the checkpoint's time, since an
injection at time t is given after every shard has reached t and saved its checkpoint).

A resumed run replays the barriers the manifest names and then goes on along the sync
grid, which is where `mars-ray simulate` puts them; a driver that stops off the grid
(``Simulation.run(until)`` between barriers) and crashes before its next chunk can only
resume along the grid.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from mars_ray import __version__
from mars_ray.exchange.orders import OrderBatch
from mars_ray.sim.config import SimulationConfig, parse_config
from mars_ray.sim.output import run_metadata
from mars_ray.sim.run_files import (
    CHECKPOINTS,
    EVENTS,
    INJECTED,
    MANIFEST,
    SNAPSHOTS,
    RunDir,
    RunFilesError,
    read_manifest,
    write_manifest,
    write_part,
)

_BATCH = re.compile(r"^batch-(\d+)\.parquet$")
_TIME_KEY = "mars_ray.injected_at"


@dataclass(frozen=True)
class Op:
    """One input the driver gave every shard: a barrier (``batch`` None) or an injection."""

    t: int
    batch: int | None = None


@dataclass
class RunLog:
    """The barriers and injections of one run, in order (kept on disk with a run folder)."""

    config: SimulationConfig
    run: RunDir | None = None
    ops: list[Op] = field(default_factory=list)
    batches: list[OrderBatch] = field(default_factory=list)

    # ---------------------------------------------------------------- a run folder
    @classmethod
    def create(cls, config: SimulationConfig, root: Path) -> RunLog:
        """A fresh run in ``root``: a new run id; a previous run's files there are removed."""
        for folder in (EVENTS, SNAPSHOTS, INJECTED, CHECKPOINTS):
            clear(root / folder)
        (root / MANIFEST).unlink(missing_ok=True)
        log = cls(config, RunDir(root, uuid.uuid4().hex[:16]))
        log.save("running")
        return log

    @classmethod
    def open(cls, root: Path) -> RunLog:
        """The log of the unfinished run in ``root`` (its own config), to resume it."""
        manifest = read_manifest(root)
        if manifest.get("status") == "complete":
            raise RunFilesError(f"{root}: the run is complete; there is nothing to resume")
        config = parse_config(manifest["config"], f"{root / MANIFEST}")
        log = cls(config, RunDir(root, manifest["run_id"]))
        injections = []
        for path in sorted((root / INJECTED).glob("batch-*.parquet")):
            if _BATCH.match(path.name):
                table = pq.read_table(path)
                at = int((table.schema.metadata or {})[_TIME_KEY.encode()])
                log.batches.append(OrderBatch.from_arrow(table))
                injections.append(Op(at, len(log.batches) - 1))
        stops = [Op(t) for t in manifest.get("barriers", [])]
        # a barrier comes before the injections given once every shard had reached it
        log.ops = sorted([*stops, *injections], key=lambda op: (op.t, op.batch is not None))
        return log

    def save(self, status: str, **extra: Any) -> None:
        """Write the manifest (atomically): the config, the run id, the barriers so far."""
        if self.run is None:
            return
        manifest = {
            "mars_ray_version": __version__,
            "run_id": self.run.run_id,
            "status": status,
            "updated": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "seed": self.config.seed,
            "config": self.config.model_dump(mode="json"),
            "barriers": [op.t for op in self.ops if op.batch is None],
            "injected_batches": len(self.batches),
            **extra,
        }
        write_manifest(self.run.root, manifest)

    # ---------------------------------------------------------------- the inputs
    def barrier(self, t: int) -> None:
        self.ops.append(Op(t))

    def inject(self, t: int, batch: OrderBatch) -> None:
        """Log an injection given at driver time ``t`` (on disk first, with a run folder)."""
        index = len(self.batches)
        if self.run is not None:
            path = self.run.root / INJECTED / f"batch-{index:06d}.parquet"
            meta = {**run_metadata(self.config, self.run.run_id), _TIME_KEY: str(t)}
            write_part(path, batch.to_arrow(), meta)
        self.batches.append(batch)
        self.ops.append(Op(t, index))
        self.save("running")

    def after(self, t: int, through: int) -> list[Op]:
        """What a shard at time ``t`` (restored from a checkpoint taken then) has not been
        given, up to the barrier ``through`` and the injections given once every shard had
        reached it: later barriers, and injections at ``t`` or later."""
        out = []
        for op in self.ops:
            if op.batch is None and op.t > through:
                break
            if (op.batch is None and op.t > t) or (op.batch is not None and op.t >= t):
                out.append(op)
        return out

    @property
    def last_barrier(self) -> int | None:
        stops = [op.t for op in self.ops if op.batch is None]
        return stops[-1] if stops else None


def clear(folder: Path) -> None:
    """Remove everything under ``folder`` (the folder stays)."""
    if not folder.is_dir():
        return
    for path in sorted(folder.rglob("*"), reverse=True):
        if path.is_dir():
            path.rmdir()
        else:
            path.unlink()
