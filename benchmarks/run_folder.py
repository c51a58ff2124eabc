"""Runs that write their own folder: what checkpoints cost, how long a lost shard takes to come
back, and how the driver's memory and the event rate go with the number of trajectories.

    python benchmarks/run_folder.py [--config CONFIG] [--rounds N] [--trajectories 1,4,16]
                                    [--json OUT]

- checkpoint overhead: the config's day into a run folder with ``output.checkpoints`` on and
  off, alternating for ``--rounds`` rounds on one embedded Ray; the session's wall time
  (shard start-up excluded), medians;
- recovery: the same day with shard 1's process killed (SIGKILL) halfway through the
  session; the time from the first failed call to the shard being back where the others
  are, and the whole run's time against an undisturbed one;
- scale: ``mars-ray simulate`` as a user runs it, with ``kernel.trajectories`` set to each
  of ``--trajectories``, in a subprocess whose resident memory (the driver process alone,
  not the shards) is sampled every 50 ms: its peak, and events per second.

Every run of one config must give the same event digest (checked).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import ray
import yaml
from provenance import ROOT, write_json

from mars_ray.schema.events import event_digest
from mars_ray.sim.config import load_config
from mars_ray.sim.kernel import Simulation
from mars_ray.sim.run_files import read_events, read_manifest


def session(config_path: Path, out: Path, overrides: dict, kill_at: int | None = None) -> dict:
    """One day into ``out`` on the current Ray; the session's wall time (and the recovery)."""
    cfg = load_config(config_path, overrides)
    sim = Simulation(cfg, out=out)
    killed: list[int] = []

    def kill(t: int, totals: dict) -> None:
        if kill_at is not None and t >= kill_at and not killed:
            killed.append(sim.locations()[1]["pid"])
            os.kill(killed[0], signal.SIGKILL)

    try:
        sim.progress()  # the shards are up
        start = time.perf_counter()
        sim.run(on_progress=kill)
        seconds = time.perf_counter() - start
        sim.finish()
    finally:
        sim.close()
    return {
        "seconds": seconds,
        "recoveries": sim.recoveries,
        "digest": event_digest(read_events(out)),
    }


def checkpoint_overhead(config_path: Path, rounds: int) -> dict:
    runs: dict[str, list[float]] = {"on": [], "off": []}
    digests = set()
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(rounds):
            for mode in ("off", "on"):
                overrides = {"output.checkpoints": mode == "on", "output.plot": False}
                result = session(config_path, Path(tmp) / mode, overrides)
                runs[mode].append(result["seconds"])
                digests.add(result["digest"])
    if len(digests) != 1:
        raise SystemExit(f"checkpoints changed the events: {sorted(digests)}")
    median = {mode: statistics.median(values) for mode, values in runs.items()}
    return {
        "seconds": runs,
        "median_s": median,
        "overhead": median["on"] / median["off"] - 1,
        "digest": digests.pop(),
    }


def recovery(config_path: Path) -> dict:
    cfg = load_config(config_path)
    halfway = cfg.session.pre_open + (cfg.session.close - cfg.session.pre_open) // 2
    with tempfile.TemporaryDirectory() as tmp:
        calm = session(config_path, Path(tmp) / "calm", {})
        hit = session(config_path, Path(tmp) / "hit", {}, kill_at=halfway)
    if calm["digest"] != hit["digest"]:
        raise SystemExit("the run with a lost shard ended with other events")
    return {
        "recovery_s": [r["seconds"] for r in hit["recoveries"]],
        "run_s": hit["seconds"],
        "undisturbed_run_s": calm["seconds"],
        "digest": hit["digest"],
    }


def driver_peak(config_path: Path, trajectories: int) -> dict:
    """`mars-ray simulate` with ``trajectories``: the driver's peak RSS and events/s."""
    raw = yaml.safe_load(config_path.read_text())
    raw.setdefault("kernel", {})["trajectories"] = trajectories
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config.yaml"
        config.write_text(yaml.safe_dump(raw))
        out = Path(tmp) / "run"
        command = [sys.executable, "-m", "mars_ray.cli", "simulate", str(config), "--out", str(out)]
        start = time.perf_counter()
        child = subprocess.Popen([*command, "--quiet", "--no-plot"], stdout=subprocess.DEVNULL)
        peak = [0]

        def sample() -> None:
            proc = psutil.Process(child.pid)
            while child.poll() is None:
                try:
                    peak[0] = max(peak[0], proc.memory_info().rss)
                except psutil.NoSuchProcess:
                    return
                time.sleep(0.05)

        sampler = threading.Thread(target=sample)
        sampler.start()
        if child.wait() != 0:
            raise SystemExit(f"mars-ray simulate failed with {trajectories} trajectories")
        sampler.join()
        seconds = time.perf_counter() - start
        events = sum(row["events"] for row in read_manifest(out)["summary"])
    return {
        "trajectories": trajectories,
        "events": events,
        "seconds": seconds,
        "events_per_s": events / seconds,
        "driver_peak_rss_mb": peak[0] / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "bench.yaml")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--trajectories", default="1,4,16")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        overhead = checkpoint_overhead(args.config, args.rounds)
        print(
            f"checkpoints: {overhead['median_s']['on']:.2f} s on, "
            f"{overhead['median_s']['off']:.2f} s off (medians of {args.rounds}): "
            f"{overhead['overhead']:+.1%}"
        )
        lost = recovery(args.config)
        back = ", ".join(f"{s:.2f}" for s in lost["recovery_s"])
        print(
            f"a shard killed halfway: back in {back} s; the run {lost['run_s']:.2f} s "
            f"against {lost['undisturbed_run_s']:.2f} s undisturbed"
        )
    finally:
        ray.shutdown()
    scale = [driver_peak(args.config, int(n)) for n in args.trajectories.split(",")]
    print(f"{'trajectories':>12} {'events':>12} {'seconds':>8} {'events/s':>10} {'driver MB':>10}")
    for row in scale:
        print(
            f"{row['trajectories']:>12} {row['events']:>12,} {row['seconds']:>8.1f} "
            f"{row['events_per_s']:>10,.0f} {row['driver_peak_rss_mb']:>10.0f}"
        )
    write_json(
        args.json,
        {
            "config": str(args.config.relative_to(ROOT))
            if args.config.is_relative_to(ROOT)
            else str(args.config),
            "checkpoint_overhead": overhead,
            "recovery": lost,
            "scale": scale,
        },
    )


if __name__ == "__main__":
    main()
