"""Agent-simulation throughput: events per second with 1 shard and with 2 shards.

Runs the same config (default: configs/bench.yaml, ~1,000 agents, 4 instruments, a full
session) once per shard count, each on a fresh embedded local Ray (so that each starts
with the same idle worker processes), and reports exchange events per wall-clock second.
Ray start-up is not timed; actor creation, the session and gathering the event tables are,
and the table shows each part.

    python benchmarks/simulation.py [--config configs/demo.yaml] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import ray

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mars_ray.config import load_config  # noqa: E402
from mars_ray.sim.kernel import Simulation  # noqa: E402


def measure(config_path: Path, shards: int, seed: int) -> dict:
    cfg = load_config(config_path, {"kernel.shards": shards, "seed": seed})
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        start = time.perf_counter()
        sim = Simulation(cfg)
        sim.progress()  # the actors are up
        started = time.perf_counter()
        sim.run()
        run_end = time.perf_counter()
        events, _ = sim.collect()
        end = time.perf_counter()
        sim.close()
    finally:
        ray.shutdown()
    return {
        "shards": shards,
        "events": events.num_rows,
        "start_seconds": started - start,
        "run_seconds": run_end - started,
        "collect_seconds": end - run_end,
        "total_seconds": end - start,
        "events_per_s": events.num_rows / (end - start),
        "events_per_s_run_only": events.num_rows / (run_end - started),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "bench.yaml")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()

    rows = [measure(args.config, shards, args.seed) for shards in (1, 2)]
    if rows[0]["events"] != rows[1]["events"]:
        raise SystemExit(
            f"event counts differ between shard counts: {rows[0]['events']} vs {rows[1]['events']}"
        )

    print(
        f"{'shards':>6} {'events':>11} {'start s':>8} {'run s':>6} {'collect s':>9} "
        f"{'total s':>8} {'events/s':>11} {'run-only ev/s':>14}"
    )
    for r in rows:
        print(
            f"{r['shards']:>6} {r['events']:>11,} {r['start_seconds']:>8.2f} "
            f"{r['run_seconds']:>6.2f} {r['collect_seconds']:>9.2f} {r['total_seconds']:>8.2f} "
            f"{r['events_per_s']:>11,.0f} {r['events_per_s_run_only']:>14,.0f}"
        )
    speedup = rows[1]["events_per_s"] / rows[0]["events_per_s"]
    print(f"2-shard speed-up: {speedup:.2f}x")
    result = {
        "events_per_s_1_shard": rows[0]["events_per_s"],
        "events_per_s_2_shards": rows[1]["events_per_s"],
        "speedup_2_shards": speedup,
        "runs": rows,
        "config": str(
            args.config.relative_to(ROOT) if args.config.is_relative_to(ROOT) else args.config
        ),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
    }
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
