"""Serve load: many concurrent simulations against the model deployment, batched vs not.

Each simulated client is one generation session of ``--rows`` books (a
simulation's LMM agent, minus its clearing house): it sends one step at a time,
feeds the sampled orders back as the next step's input, and measures each
request's latency. ``--sims`` clients run concurrently (asyncio tasks on one
DeploymentHandle), first against a deployment with ``max_batch_size`` from
``--max-batch-size`` (batched), then with ``max_batch_size=1`` (unbatched).
The clearing house is left out on purpose: this measures what batching buys the
model deployment; `POST /v1/trajectories` adds matching on top. A third run
("no model") answers the same requests from a batched deployment that does no
work: Serve's own cost per request, the ceiling of the batched figure here.

    python benchmarks/serve_load.py [--sims 64] [--rows 4] [--steps 100] [--json OUT]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

import numpy as np
from provenance import write_json

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mars_ray.sim.ray_runtime import FAST_PATH_ENV, enable_fast_path  # noqa: E402

enable_fast_path()  # as `mars-ray serve` runs it, before Ray Serve is imported

import ray  # noqa: E402
from ray import serve  # noqa: E402

from mars_ray.lmm.tokenizer import book_features  # noqa: E402
from mars_ray.serve.app import build_model  # noqa: E402
from mars_ray.serve.settings import MODEL_DEPLOYMENT, parse_settings  # noqa: E402
from mars_ray.serve.wire import pack_step  # noqa: E402

APP = "mars-ray-load"


def start_book(rows: int) -> np.ndarray:
    """The balanced preset's top 10 levels, as book features for every row."""
    levels = np.zeros((rows, 10, 4), dtype=np.int64)
    k = np.arange(10)
    levels[:, :, 0], levels[:, :, 1] = 10_001 + k, 200 + 100 * k
    levels[:, :, 2], levels[:, :, 3] = 10_000 - k, 200 + 100 * k
    return book_features(levels, np.full(rows, 36_000 * 10**9))


async def client(handle, rows: int, steps: int, seed: int, latencies: list[float]) -> int:
    rng = np.random.default_rng(seed)
    session = await handle.open.remote(rows)
    book = start_book(rows)
    last = np.zeros((rows, 4), dtype=np.int64)
    active = np.ones(rows, dtype=bool)
    try:
        for _ in range(steps):
            request = (session, pack_step(last, book, rng.random((rows, 4)), active))
            t = time.perf_counter()
            last = await handle.step.remote(request)
            latencies.append(time.perf_counter() - t)
    finally:
        await handle.close.remote(session)
    return rows * steps


async def drive(handle, sims: int, rows: int, steps: int) -> dict:
    await client(handle, rows, 3, 0, [])  # warm-up: first forward, allocation
    latencies: list[float] = []
    start = time.perf_counter()
    orders = await asyncio.gather(
        *(client(handle, rows, steps, s + 1, latencies) for s in range(sims))
    )
    seconds = time.perf_counter() - start
    stats = await handle.stats.remote()
    ms = np.array(latencies) * 1e3
    return {
        "orders_per_s": sum(orders) / seconds,
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "orders": int(sum(orders)),
        "seconds": seconds,
        "mean_batch": stats["steps"] / max(stats["batches"], 1),
        # the model's own compute per order, apart from request handling
        "forward_us_per_order": stats["forward_s"] / max(stats["orders"], 1) * 1e6,
    }


@serve.deployment(ray_actor_options={"num_cpus": 0}, logging_config={"enable_access_log": False})
class NoModel:
    """The model deployment's request path with no model: what Serve alone costs per step."""

    def __init__(self) -> None:
        self.steps = self.batches = self.orders = 0

    async def open(self, rows: int) -> str:
        return "session"

    async def close(self, session: str) -> bool:
        return True

    @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.03)
    async def step(self, requests: list) -> list:
        self.batches += 1
        self.steps += len(requests)
        self.orders += sum(len(packed) for _, packed in requests)
        return [np.zeros((len(packed), 4), dtype=np.int64) for _, packed in requests]

    async def stats(self) -> dict:
        return {"steps": self.steps, "batches": self.batches, "orders": self.orders, "forward_s": 0}


async def measure_floor(args: argparse.Namespace) -> dict:
    app = NoModel.options(max_ongoing_requests=args.sims + 8)
    return await run_app(app.bind(), "NoModel", args)


async def run_app(app, deployment: str, args: argparse.Namespace) -> dict:
    """Deploy ``app``, drive it, delete it. Every run shares the one event loop: with
    RAY_SERVE_THROUGHPUT_OPTIMIZED the handles' router lives on the caller's loop."""
    await asyncio.to_thread(serve.run, app, name=APP, route_prefix=None)
    handle = serve.get_deployment_handle(deployment, app_name=APP)
    try:
        return await drive(handle, args.sims, args.rows, args.steps)
    finally:
        await asyncio.to_thread(serve.delete, APP)


async def measure(max_batch_size: int, args: argparse.Namespace) -> dict:
    settings = parse_settings(
        {
            "app_name": APP,
            "model": {
                "max_batch_size": max_batch_size,
                "batch_wait_timeout_s": args.wait,
                "threads": args.threads,
                "max_ongoing_requests": max(args.sims, max_batch_size) + 8,
            },
        },
        "serve_load",
    )
    return await run_app(build_model(settings), MODEL_DEPLOYMENT, args)


async def measure_all(args: argparse.Namespace) -> tuple[dict, dict, dict]:
    batched = await measure(args.max_batch_size, args)
    unbatched = await measure(1, args)
    floor = await measure_floor(args)
    await asyncio.to_thread(serve.shutdown)  # while the loop the routers live on still runs
    return batched, unbatched, floor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sims", type=int, default=64, help="concurrent simulations")
    parser.add_argument("--rows", type=int, default=4, help="books per simulation")
    parser.add_argument("--steps", type=int, default=100, help="steps per simulation")
    parser.add_argument("--max-batch-size", type=int, default=64)
    parser.add_argument("--wait", type=float, default=0.03, help="batch_wait_timeout_s")
    parser.add_argument("--threads", type=int, default=1, help="torch threads in the replica")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    serve.start(proxy_location="Disabled")
    try:
        batched, unbatched, floor = asyncio.run(measure_all(args))
    finally:
        ray.shutdown()

    print(f"{args.sims} simulations x {args.rows} books x {args.steps} steps")
    print(
        f"{'mode':>10} {'orders/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'mean batch':>11} "
        f"{'forward us/order':>17}"
    )
    for name, r in (("batched", batched), ("unbatched", unbatched), ("no model", floor)):
        print(
            f"{name:>10} {r['orders_per_s']:>10,.0f} {r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f} "
            f"{r['mean_batch']:>11.1f} {r['forward_us_per_order']:>17.0f}"
        )
    speedup = batched["orders_per_s"] / unbatched["orders_per_s"]
    print(f"batched / unbatched: {speedup:.1f}x")
    if args.json:
        result = {
            "batched": batched,
            "unbatched": unbatched,
            "no_model": floor,
            "speedup": speedup,
            "sims": args.sims,
            "rows_per_sim": args.rows,
            "steps_per_sim": args.steps,
            "max_batch_size": args.max_batch_size,
            "batch_wait_timeout_s": args.wait,
            "torch_threads": args.threads,
            "serve_env": {name: os.environ[name] for name in FAST_PATH_ENV},
        }
        write_json(args.json, result)


if __name__ == "__main__":
    main()
