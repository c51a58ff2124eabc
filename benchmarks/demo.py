"""The README's first command, timed end to end: `mars-ray simulate configs/demo.yaml`.

    python benchmarks/demo.py [--runs N] [--config CONFIG] [--json OUT]

Each run is the command a user types (a fresh embedded Ray, the day, the Parquet files and
the plot) in a subprocess, into a temporary folder; the figure is the median wall time.
Every run must write the same events (their digest is checked and recorded).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.compute as pc
from provenance import ROOT, write_json

from mars_ray.schema.events import EventType, event_digest
from mars_ray.sim.run_files import read_events


def run_once(config: Path) -> dict:
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, "-m", "mars_ray.cli", "simulate", str(config), "--out", out]
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, cwd=ROOT)
        seconds = time.perf_counter() - start
        events = read_events(out)
    trades = pc.sum(pc.equal(events["event_type"], int(EventType.TRADE))).as_py()
    return {
        "seconds": seconds,
        "events": events.num_rows,
        "trades": trades,
        "digest": event_digest(events),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "demo.yaml")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error(f"--runs must be at least 1, got {args.runs}")
    runs = []
    for k in range(args.runs):
        runs.append(run_once(args.config))
        print(f"run {k + 1}: {runs[-1]['seconds']:.1f} s, {runs[-1]['events']:,} events")
    digests = {r["digest"] for r in runs}
    if len(digests) != 1:
        raise SystemExit(f"runs wrote different events: {sorted(digests)}")
    median = statistics.median(r["seconds"] for r in runs)
    print(f"median {median:.1f} s end to end; events digest {runs[0]['digest']}")
    write_json(
        args.json,
        {
            "seconds_median": median,
            "seconds": [r["seconds"] for r in runs],
            "events": runs[0]["events"],
            "trades": runs[0]["trades"],
            "digest": runs[0]["digest"],
            "config": str(args.config.relative_to(ROOT))
            if args.config.is_relative_to(ROOT)
            else str(args.config),
        },
    )


if __name__ == "__main__":
    main()
