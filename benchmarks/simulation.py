"""Agent-simulation throughput: events per second with 1 shard and with 2 shards.

Runs the same config (default: configs/bench.yaml, ~1,000 agents, 4 instruments, a full
session) with 1 and with 2 shards, each run on a fresh embedded local Ray (so that each
starts with the same idle worker processes), and reports exchange events per wall-clock
second. Ray start-up is not timed; actor creation, the session and gathering the event
tables are, and the table shows each part. Shared machines vary by tens of percent from
minute to minute, so the shard counts alternate for ``--rounds`` rounds and the figures
are the medians (the speed-up: median 2-shard over median 1-shard events/s).

    python benchmarks/simulation.py [--config CONFIG] [--seed N] [--rounds N] [--json OUT]
                                    [--expect-digest SHA256]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import ray
from provenance import write_json

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mars_ray.schema.events import event_digest  # noqa: E402
from mars_ray.sim.config import load_config  # noqa: E402
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
        "digest": event_digest(events),  # not timed
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "bench.yaml")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3, help="alternating 1/2-shard rounds")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument(
        "--expect-digest", help="fail unless the runs' event digest is this (sha256 hex)"
    )
    args = parser.parse_args()

    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    rows = [measure(args.config, n, args.seed) for _ in range(args.rounds) for n in (1, 2)]
    digests = {r["digest"] for r in rows}
    if len(digests) != 1:
        raise SystemExit(f"event digests differ between runs (shard counts): {sorted(digests)}")
    digest = digests.pop()
    if args.expect_digest and digest != args.expect_digest:
        raise SystemExit(f"event digest {digest} is not the expected {args.expect_digest}")

    print(
        f"{'round':>5} {'shards':>6} {'events':>11} {'start s':>8} {'run s':>6} "
        f"{'collect s':>9} {'total s':>8} {'events/s':>11} {'run-only ev/s':>14}"
    )
    for i, r in enumerate(rows):
        print(
            f"{i // 2 + 1:>5} {r['shards']:>6} {r['events']:>11,} {r['start_seconds']:>8.2f} "
            f"{r['run_seconds']:>6.2f} {r['collect_seconds']:>9.2f} {r['total_seconds']:>8.2f} "
            f"{r['events_per_s']:>11,.0f} {r['events_per_s_run_only']:>14,.0f}"
        )
    median = {
        n: statistics.median(r["events_per_s"] for r in rows if r["shards"] == n) for n in (1, 2)
    }
    pairs = zip(rows[::2], rows[1::2], strict=True)
    per_round = [two["events_per_s"] / one["events_per_s"] for one, two in pairs]
    speedup = median[2] / median[1]
    print(
        f"median events/s: 1 shard {median[1]:,.0f}, 2 shards {median[2]:,.0f}; "
        f"2-shard speed-up {speedup:.2f}x (rounds: {', '.join(f'{x:.2f}' for x in per_round)})"
    )
    print(f"event digest (identical in every run): {digest}")
    result = {
        "events_per_s_1_shard": median[1],
        "events_per_s_2_shards": median[2],
        "speedup_2_shards": speedup,
        "speedup_per_round": per_round,
        "events": rows[0]["events"],
        "digest": digest,
        "seed": args.seed,
        "runs": rows,
        "config": str(
            args.config.relative_to(ROOT) if args.config.is_relative_to(ROOT) else args.config
        ),
    }
    write_json(args.json, result)


if __name__ == "__main__":
    main()
