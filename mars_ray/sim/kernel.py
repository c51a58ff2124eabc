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

With a run folder (``out``) the shards write the events themselves and the driver
holds only progress and the run log (``run_log``): the barriers and injections it
gave. A shard actor that dies is restarted by Ray (``kernel.max_restarts``) from its
newest checkpoint, and the driver gives it again what it gave after that checkpoint,
until it is where the others are; the run then ends with the events of an undisturbed
run. ``Simulation(..., resume=True)`` does the same for every shard of a run whose
driver stopped.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import ray
from ray.exceptions import ActorDiedError, RayActorError

from agents.lmm import GeneratorBackend
from mars_ray.exchange.orders import OrderBatch
from mars_ray.schema.events import concat_books
from mars_ray.schema.validation import ConfigError
from mars_ray.sim.config import SimulationConfig
from mars_ray.sim.output import summary_json, summary_rows
from mars_ray.sim.ray_runtime import ensure_ray
from mars_ray.sim.real_start import real_start
from mars_ray.sim.run_files import CHECKPOINTS
from mars_ray.sim.run_log import RunLog, clear
from mars_ray.sim.shard import ExchangeShard, ShardRuntime, shard_instruments

# Barriers per call: as many as took about this long lately, within [1, the maximum]
CALL_SECONDS = 0.25
MAX_BARRIERS_PER_CALL = 32
RESTART_WAIT_S = 120.0  # how long a lost shard may take to come back before the run fails

Progress = Callable[[int, dict], None]


@dataclass
class SimulationResult:
    """A finished run: the events in memory, or (with a run folder) their count and where
    the shards wrote them; the summary per instrument either way."""

    config: SimulationConfig
    wall_seconds: float
    summary: list[dict]
    events: pa.Table | None = None
    snapshots: pa.Table | None = None
    run_dir: Path | None = None
    recoveries: list[dict] = field(default_factory=list)

    @property
    def event_count(self) -> int:
        return sum(row["events"] for row in self.summary)

    @property
    def events_per_second(self) -> float:
        return self.event_count / self.wall_seconds if self.wall_seconds > 0 else float("nan")


class ShardLost(RuntimeError):
    """A shard that did not come back within ``RESTART_WAIT_S`` or its restarts."""


class Simulation:
    """Drive shards (Ray actors, or in-process runtimes with ``local=True``) through a session.

    ``backends``: generators for LMM agents beyond the built-in ``local`` one (the served
    model's: ``mars_ray.serve.generator.SERVE_BACKENDS``), checked against the config here.
    ``out``: a run folder the shards write to (``run_files``); ``resume``: continue the
    unfinished run in ``out`` (the config is then the run's own).
    """

    def __init__(
        self,
        config: SimulationConfig,
        local: bool = False,
        backends: Mapping[str, GeneratorBackend] | None = None,
        out: str | Path | None = None,
        resume: bool = False,
    ) -> None:
        check_backends(config, backends)
        if resume and out is None:
            raise ValueError("resume needs the run folder (out)")
        if out is not None and uses_served_model(config) and config.output.checkpoints:
            # a served model's generation state lives in the server: it cannot be saved here
            output = config.output.model_copy(update={"checkpoints": False})
            config = config.model_copy(update={"output": output})
        self.log = RunLog.open(Path(out)) if resume else RunLog(config)
        if resume:
            config = self.log.config
        elif out is not None:
            self.log = RunLog.create(config, Path(out))
        self.config = config
        self.local = local
        self.run_dir = self.log.run
        self.recoveries: list[dict] = []  # each shard rebuilt: when, and how long it took
        self.pids: dict[int, int] = {}  # each rebuilt shard's new process
        self.log_chunk = 0  # the newest chunk every shard has written (in the manifest)
        n = config.kernel.shards
        self.shard_of = {
            inst: k
            for k, insts in enumerate(shard_instruments(len(config.instruments), n))
            for inst in insts
        }
        # a real start is read once here (a bad one fails before any shard starts)
        start = real_start(config.start.lobster) if config.start is not None else None
        args = [(config, k, backends, self.run_dir, start) for k in range(n)]
        if local:
            self.shards = [ShardRuntime(*a) for a in args]
        else:
            ensure_ray(config.ray.address, config.ray.num_cpus or max(os.cpu_count() or 1, n))
            # one CPU per shard where the cluster has them; share the CPUs rather than wait forever
            cpus = ray.cluster_resources().get("CPU", 1.0)
            restarts = config.kernel.max_restarts if self.recoverable else 0
            options = {"num_cpus": min(1.0, cpus / n), "max_restarts": restarts}
            self.shards = [ExchangeShard.options(**options).remote(*a) for a in args]
        self.t = config.session.pre_open
        self.end = config.session.close
        if resume:
            self._catch_up()

    @property
    def recoverable(self) -> bool:
        """A lost shard can be rebuilt: its checkpoints are written beside the run."""
        return self.run_dir is not None and self.config.output.checkpoints

    # ---------------------------------------------------------------- calls
    def _start(self, method: str, args: list[tuple] | None = None) -> list:
        """Call ``method`` on every shard (with its own args) without waiting; in process
        the calls run now and these are their results."""
        args = args or [()] * len(self.shards)
        pairs = zip(self.shards, args, strict=True)
        if self.local:
            return [getattr(s, method)(*a) for s, a in pairs]
        return [getattr(s, method).remote(*a) for s, a in pairs]

    def _call(self, method: str, args: list[tuple] | None = None) -> list:
        """Call ``method`` on every shard (with its own args) and wait for all of them; a
        shard lost meanwhile is rebuilt to where the others are and asked again."""
        args = args or [()] * len(self.shards)
        calls = self._start(method, args)
        if self.local:
            return calls
        return [self._get(k, call, method, args[k]) for k, call in enumerate(calls)]

    def _get(self, k: int, call: Any, method: str, args: tuple) -> Any:
        try:
            return ray.get(call)
        except RayActorError:
            if not self.recoverable:
                raise
        self._recover(k, self.t)
        return self._on(k, method, *args)

    def locations(self) -> list[dict]:
        """Each shard's process id and node (``ShardRuntime.location``)."""
        return self._call("location")

    def progress(self) -> list[dict]:
        """Each shard's simulated time and event and trade counts (waits until it is up)."""
        return self._call("progress")

    # ---------------------------------------------------------------- inputs
    def _parts(self, batch: OrderBatch) -> list[OrderBatch]:
        """A batch split by the shard that owns each order's instrument (shard 0, which
        rejects them, for an instrument no shard owns)."""
        shard_index = [self.shard_of.get(int(i), 0) for i in batch.instrument]
        return [
            batch.take([j for j, s in enumerate(shard_index) if s == k])
            for k in range(len(self.shards))
        ]

    def inject(self, batch: OrderBatch) -> None:
        """Queue outside orders; each goes to the shard that owns its instrument. The batch
        is logged first: a shard lost before it took its part gets it when rebuilt."""
        self.log.inject(self.t, batch)
        index = len(self.log.batches) - 1
        calls = self._start("submit_orders", [(part, index) for part in self._parts(batch)])
        if self.local:
            return
        for k, call in enumerate(calls):
            try:
                ray.get(call)
            except RayActorError:
                if not self.recoverable:
                    raise
                self._recover(k, self.t)

    def run(self, until: int | None = None, on_progress: Progress | None = None) -> None:
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
                for t in barriers:
                    self.log.barrier(t)
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

    def _reached(self, barriers: list[int], calls: list, on_progress: Progress | None) -> None:
        """Wait for every shard's reports from one call's ``barriers``; report each."""
        if self.local:
            reports = calls
        else:
            reports = [self._report(k, call, barriers) for k, call in enumerate(calls)]
        chunk = min(r[-1].get("chunk", 0) for r in reports)
        for i, target in enumerate(barriers):
            self.t = target
            if on_progress:
                totals = {k: sum(r[i][k] for r in reports) for k in ("events", "trades")}
                on_progress(self.t, totals)
        if self.run_dir is not None and chunk > self.log_chunk:
            self.log_chunk = chunk
            self.log.save("running", chunks=chunk)

    # ---------------------------------------------------------------- lost shards
    def _report(self, k: int, call: Any, barriers: list[int]) -> list[dict]:
        """Shard ``k``'s reports for ``barriers``, rebuilding the shard if it was lost."""
        try:
            return ray.get(call)
        except RayActorError:
            if not self.recoverable:
                raise
        reports = self._recover(k, barriers[-1])
        by_time = {r["t"]: r for r in reports}
        latest = reports[-1] if reports else self._alive(k)
        return [by_time.get(t, latest) for t in barriers]

    def _recover(self, k: int, through: int) -> list[dict]:
        """Bring lost shard ``k`` back (restarted by Ray at its newest checkpoint) to the
        barrier ``through``, as often as it is lost on the way; its reports."""
        started = time.perf_counter()
        while True:
            try:
                reports = self._replay(k, through)
                pid = self._alive(k)["pid"]
                break
            except RayActorError:
                continue  # lost again while catching up: it restarts from its checkpoint
        if self.pids.get(k) != pid:  # not a call that was only queued on the lost process
            self.pids[k] = pid
            self.recoveries.append(
                {"shard": k, "barrier": through, "seconds": time.perf_counter() - started}
            )
        return reports

    def _on(self, k: int, method: str, *args: Any) -> Any:
        """Call ``method`` on shard ``k`` alone and wait for it."""
        shard = self.shards[k]
        if self.local:
            return getattr(shard, method)(*args)
        return ray.get(getattr(shard, method).remote(*args))

    def _alive(self, k: int) -> dict:
        """Shard ``k``'s progress once Ray has restarted it (ShardLost if it does not)."""
        deadline = time.monotonic() + RESTART_WAIT_S
        while True:
            try:
                return self._on(k, "progress")
            except ActorDiedError as exc:  # no restart left
                raise ShardLost(f"shard {k} is lost for good: {exc}") from exc
            except RayActorError as exc:  # restarting
                if time.monotonic() > deadline:
                    raise ShardLost(f"shard {k} did not come back in {RESTART_WAIT_S} s") from exc
                time.sleep(0.2)

    def _replay(self, k: int, through: int) -> list[dict]:
        """Give shard ``k`` (restored at its newest checkpoint) every barrier and injection
        the log has after it, up to the barrier ``through``; its reports, in order."""
        at = self._alive(k)["t"]
        reports: list[dict] = []
        stops: list[int] = []
        for op in self.log.after(at, through):
            if op.batch is None:
                stops.append(op.t)
                continue
            if stops:
                reports += self._on(k, "run_through", stops)
                stops = []
            self._on(k, "submit_orders", self._parts(self.log.batches[op.batch])[k], op.batch)
        if stops:
            reports += self._on(k, "run_through", stops)
        return reports

    def _catch_up(self) -> None:
        """After a resume: bring every shard (each at its own newest checkpoint) to the last
        barrier the run log names, with the injections given until then."""
        last = self.log.last_barrier
        if last is None:
            return
        for k in range(len(self.shards)):
            self._replay(k, last)
        self.t = last

    # ---------------------------------------------------------------- results
    def collect(self) -> tuple[pa.Table, pa.Table]:
        """All events (canonical order) and snapshots, gathered in the driver: for runs
        without a run folder, whose shards keep their events."""
        parts = self._call("collect")
        events = concat_books([table for p in parts for table in p[0]])
        snapshots = pa.concat_tables([p[1] for p in parts]).sort_by(
            [("time_ns", "ascending"), ("trajectory_id", "ascending"), ("instrument", "ascending")]
        )
        return events, snapshots

    def summary(self) -> list[dict]:
        """Per instrument: events, trades, volume, rejects, VWAP and last price."""
        stats = [item for part in self._call("book_stats") for item in part.items()]
        return summary_rows(self.config, stats)

    def finish(self) -> list[dict]:
        """The summary; with a run folder, the manifest says the run is complete (and its
        checkpoints, needed no more, are removed)."""
        rows = self.summary()
        if self.run_dir is not None:
            self.log.save("complete", chunks=self.log_chunk, summary=summary_json(rows))
            clear(self.run_dir.root / CHECKPOINTS)
        return rows

    def close(self) -> None:
        try:
            self._call("close")
        except ray.exceptions.RayError:
            pass  # a shard that died holds nothing to release; the run's own error is reported
        if not self.local:
            for s in self.shards:
                ray.kill(s)
        self.shards = []


def uses_served_model(config: SimulationConfig) -> bool:
    return any(getattr(g.parsed_params(), "backend", None) == "serve" for g in config.agents)


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
    on_progress: Progress | None = None,
    backends: Mapping[str, GeneratorBackend] | None = None,
    out: str | Path | None = None,
    resume: bool = False,
) -> SimulationResult:
    """Run a whole session. Without ``out`` the events come back in memory; with it the
    shards write them to that run folder (``resume``: continue the run there)."""
    start = time.perf_counter()
    sim = Simulation(config, local=local, backends=backends, out=out, resume=resume)
    try:
        sim.run(on_progress=on_progress)
        if sim.run_dir is None:
            events, snapshots = sim.collect()
            summary = sim.summary()
            return SimulationResult(
                sim.config, time.perf_counter() - start, summary, events, snapshots
            )
        summary = sim.finish()
        return SimulationResult(
            sim.config,
            time.perf_counter() - start,
            summary,
            run_dir=sim.run_dir.root,
            recoveries=sim.recoveries,
        )
    finally:
        sim.close()
