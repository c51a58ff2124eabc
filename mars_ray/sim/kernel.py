"""The simulation driver: shard actors, time-stepped synchronisation, results.

Time advances in sync intervals (``kernel.sync_ms``). The driver asks every
shard to run up to the same simulated times (``run_through``, see below): each
barrier is where progress is reported, and ``run(until)`` returns
only when every shard has reached ``until``, the point where orders from outside
(users, RL policies) enter. Inside an interval a shard steps its own agents
(``kernel.step_ms``).

Shards meet only through the driver (a book's input is its own agents, the
calendar and the orders injected between runs), so within one ``run`` a shard
need not wait at every barrier for the slowest: the driver keeps up to
``kernel.run_ahead`` calls queued on every shard, which hides the call round
trips and the shards' uneven pace without changing a single event. And one call
covers as many barriers as took about ``CALL_SECONDS`` of wall time lately (at
most ``MAX_BARRIERS_PER_CALL``): each call costs both the shard and the driver
CPU time, which on a machine with as many cores as shards is taken from the
shards, while slow stretches (an LMM agent's window) still report every barrier.
Progress is reported for every barrier, in order, as the calls return.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import pyarrow as pa
import ray

from agents.lmm import GeneratorBackend
from mars_ray.exchange.orders import OrderBatch
from mars_ray.schema.events import concat_books
from mars_ray.schema.validation import ConfigError
from mars_ray.sim.config import SimulationConfig
from mars_ray.sim.ray_runtime import ensure_ray
from mars_ray.sim.shard import ExchangeShard, ShardRuntime, shard_instruments

# Barriers per call: as many as took about this long lately, within [1, the maximum]
CALL_SECONDS = 0.25
MAX_BARRIERS_PER_CALL = 32


@dataclass
class SimulationResult:
    config: SimulationConfig
    events: pa.Table
    snapshots: pa.Table
    wall_seconds: float

    @property
    def events_per_second(self) -> float:
        return self.events.num_rows / self.wall_seconds if self.wall_seconds > 0 else float("nan")


class Simulation:
    """Drive shards (Ray actors, or in-process runtimes with ``local=True``) through a session.

    ``backends``: generators for LMM agents beyond the built-in ``local`` one (the served
    model's: ``mars_ray.serve.generator.SERVE_BACKENDS``), checked against the config here.
    """

    def __init__(
        self,
        config: SimulationConfig,
        local: bool = False,
        backends: Mapping[str, GeneratorBackend] | None = None,
    ) -> None:
        self.config = config
        self.local = local
        check_backends(config, backends)
        n = config.kernel.shards
        self.shard_of = {
            inst: k
            for k, insts in enumerate(shard_instruments(len(config.instruments), n))
            for inst in insts
        }
        if local:
            self.shards = [ShardRuntime(config, k, backends) for k in range(n)]
        else:
            ensure_ray(config.ray.address, config.ray.num_cpus or max(os.cpu_count() or 1, n))
            # one CPU per shard where the cluster has them; share the CPUs rather than wait forever
            cpus = ray.cluster_resources().get("CPU", 1.0)
            per_shard = min(1.0, cpus / n)
            self.shards = [
                ExchangeShard.options(num_cpus=per_shard).remote(config, k, backends)
                for k in range(n)
            ]
        self.t = config.session.pre_open
        self.end = config.session.close

    def _start(self, method: str, args: list[tuple] | None = None) -> list:
        """Call ``method`` on every shard (with its own args) without waiting; in process
        the calls run now and these are their results."""
        args = args or [()] * len(self.shards)
        pairs = zip(self.shards, args, strict=True)
        if self.local:
            return [getattr(s, method)(*a) for s, a in pairs]
        return [getattr(s, method).remote(*a) for s, a in pairs]

    def _results(self, calls: list) -> list:
        return calls if self.local else ray.get(calls)

    def _call(self, method: str, args: list[tuple] | None = None) -> list:
        """Call ``method`` on every shard (with its own args) and wait for all of them."""
        return self._results(self._start(method, args))

    def locations(self) -> list[dict]:
        """Each shard's process id and node (``ShardRuntime.location``)."""
        return self._call("location")

    def progress(self) -> list[dict]:
        """Each shard's simulated time and event and trade counts (waits until it is up)."""
        return self._call("progress")

    def inject(self, batch: OrderBatch) -> None:
        """Queue outside orders; each goes to the shard that owns its instrument.

        Orders for an instrument no shard owns go to shard 0, which rejects them.
        """
        shard_index = [self.shard_of.get(int(i), 0) for i in batch.instrument]
        parts = [
            (batch.take([j for j, s in enumerate(shard_index) if s == k]),)
            for k in range(len(self.shards))
        ]
        self._call("submit_orders", parts)

    def run(
        self, until: int | None = None, on_progress: Callable[[int, dict], None] | None = None
    ) -> None:
        until = self.end if until is None else min(until, self.end)
        sync = self.config.kernel.sync_ns
        targets = [min(t, until) for t in range(self.t + sync, until + sync, sync)]
        ahead = 1 if self.local else self.config.kernel.run_ahead
        queued: deque[tuple[list[int], list]] = deque()  # calls started, oldest first
        per_call, sent = 1, 0
        last = time.perf_counter()
        while sent < len(targets) or queued:
            if sent < len(targets) and len(queued) < ahead:
                barriers = targets[sent : sent + per_call]
                sent += len(barriers)
                queued.append(
                    (barriers, self._start("run_through", [(barriers,)] * len(self.shards)))
                )
                continue
            barriers, calls = queued.popleft()
            self._reached(barriers, calls, on_progress)
            now = time.perf_counter()
            per_barrier = max((now - last) / len(barriers), 1e-9)
            per_call = max(1, min(MAX_BARRIERS_PER_CALL, int(CALL_SECONDS / per_barrier)))
            last = now

    def _reached(
        self,
        barriers: list[int],
        calls: list,
        on_progress: Callable[[int, dict], None] | None,
    ) -> None:
        """Wait for every shard's reports from one call's ``barriers``; report each."""
        reports = self._results(calls)
        for i, target in enumerate(barriers):
            self.t = target
            if on_progress:
                totals = {k: sum(r[i][k] for r in reports) for k in ("events", "trades")}
                on_progress(self.t, totals)

    def collect(self) -> tuple[pa.Table, pa.Table]:
        parts = self._call("collect")
        events = concat_books([table for p in parts for table in p[0]])
        snapshots = pa.concat_tables([p[1] for p in parts]).sort_by(
            [("time_ns", "ascending"), ("trajectory_id", "ascending"), ("instrument", "ascending")]
        )
        return events, snapshots

    def close(self) -> None:
        try:
            self._call("close")
        except ray.exceptions.RayError:
            pass  # a shard that died holds nothing to release; the run's own error is reported
        if not self.local:
            for s in self.shards:
                ray.kill(s)
        self.shards = []


def check_backends(
    config: SimulationConfig, backends: Mapping[str, GeneratorBackend] | None
) -> None:
    """Every LMM agent's ``backend`` has a generator here (``local`` always has)."""
    available = {"local", *(backends or {})}
    for k, group in enumerate(config.agents):
        wanted = getattr(group.parsed_params(), "backend", None)
        if wanted is not None and wanted not in available:
            raise ConfigError(
                f"agents.{k}.params.backend: no generator for {wanted!r} here (available: "
                f"{sorted(available)}); `mars-ray simulate` and the Serve app hand the served "
                "model to a simulation (Simulation(..., backends=SERVE_BACKENDS))"
            )


def run_simulation(
    config: SimulationConfig,
    local: bool = False,
    on_progress: Callable[[int, dict], None] | None = None,
    backends: Mapping[str, GeneratorBackend] | None = None,
) -> SimulationResult:
    start = time.perf_counter()
    sim = Simulation(config, local=local, backends=backends)
    try:
        sim.run(on_progress=on_progress)
        events, snapshots = sim.collect()
    finally:
        sim.close()
    return SimulationResult(config, events, snapshots, time.perf_counter() - start)
