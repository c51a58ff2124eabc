"""Shard checkpoints: a shard's whole state, pickled beside its run, to rebuild a lost shard.

The simulation is deterministic, so a shard restored from the state it had at the end of a
chunk and run forward again with the same inputs writes the same events. A checkpoint is
taken right after the shard has written that chunk's part files, so it holds no event that
is not on disk yet. The two newest checkpoints of a shard are kept: a shard killed while
writing one still has the one before.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

from mars_ray.sim.run_files import write_atomically

_NAME = re.compile(r"^chunk-(\d+)\.pkl$")
KEEP = 2


def checkpoints(folder: Path) -> list[tuple[int, Path]]:
    """A shard's finished checkpoints, (chunk, path), oldest first."""
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return sorted(found)


def save(folder: Path, chunk: int, state: dict[str, Any]) -> Path:
    """Write the state after ``chunk`` atomically; drop all but the ``KEEP`` newest."""
    path = folder / f"chunk-{chunk:06d}.pkl"
    write_atomically(path, pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL))
    for _, old in checkpoints(folder)[:-KEEP]:
        old.unlink(missing_ok=True)
    return path


def latest(folder: Path) -> tuple[int, dict[str, Any]] | None:
    """The newest checkpoint's chunk and state, or None when the shard has none."""
    found = checkpoints(folder)
    if not found:
        return None
    chunk, path = found[-1]
    return chunk, pickle.loads(path.read_bytes())
