"""Shared fixtures: one local Ray for the whole session, and the LOBSTER data folder."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]

# The tests' Ray runs Serve as `mars-ray serve` does (set before anything imports Ray).
from mars_ray.sim.ray_runtime import enable_fast_path  # noqa: E402

enable_fast_path()


def data_dir() -> Path:
    """../shared/data beside the project (MARS_RAY_DATA overrides). Missing data fails loudly."""
    path = Path(os.environ.get("MARS_RAY_DATA", PROJECT_ROOT.parent / "shared" / "data"))
    if not (path / "lobster").is_dir():
        raise FileNotFoundError(
            f"market data not found at {path}/lobster; put ../shared/data beside the project "
            "or set MARS_RAY_DATA"
        )
    return path


def write_lines(path: Path, lines: list[str]) -> Path:
    """Write a small csv (a LOBSTER file made for a test), gzipped if the name ends in .gz."""
    text = "".join(line + "\n" for line in lines)
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


@pytest.fixture(scope="session")
def ray_session():
    """A small local Ray cluster shared by every test that needs one."""
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
