"""A shard: some instruments' books (for every trajectory) and the agents that trade them.

The shard runs its own time steps between synchronisation points, so the
driver makes one remote call per shard per sync interval, not per order or per
step. Agents live next to the books they trade; every book's input depends only
on its own seeded agents and the calendar, which is why the event tables are
identical whatever the number of shards.

``ShardRuntime`` is plain Python (tests use it directly); ``ExchangeShard`` is
the same class as a Ray actor.

Given a run folder (``RunDir``), a shard writes its own events and snapshots there every
``output.chunk_barriers`` barriers and at the close (``run_files``), keeping only the
current chunk in memory, and saves its state beside them with each chunk
(``checkpoint``). A shard constructed again for the same run (Ray restarting a lost actor
with its original arguments, or a resumed run) starts from its newest checkpoint and
forgets the part files written after it: run forward with the same inputs, it writes them
again, the same rows.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import ray

from agents.base import AgentPopulation
from agents.kernels import pushed_history
from agents.lmm import LEVELS as SPANNING_LEVELS
from agents.lmm import BookSlot, GeneratorBackend
from agents.registry import AGENT_KINDS
from agents.view import (
    LAST,
    MID,
    N_FEATURES,
    Fills,
    MarketView,
)
from mars_ray.exchange.book import OrderBook
from mars_ray.exchange.compiled_book import CompiledOrderBook
from mars_ray.exchange.exchange import Exchange, InstrumentSpec
from mars_ray.exchange.orders import OrderBatch
from mars_ray.schema.events import (
    EVENT_RECORD,
    EventType,
    OrderType,
    concat_books,
    concat_records,
    records_to_table,
)
from mars_ray.schema.phases import Phase
from mars_ray.sim import checkpoint
from mars_ray.sim.book_events import book_totals, event_rows, route_fills, rows_of_agents_from
from mars_ray.sim.calendar import session_actions
from mars_ray.sim.config import SimulationConfig
from mars_ray.sim.output import run_metadata
from mars_ray.sim.real_start import RealStart, real_start
from mars_ray.sim.run_files import EVENTS, ORPHANS, SNAPSHOTS, RunDir, write_part
from mars_ray.sim.snapshots import SnapshotRecorder

_LIMIT = int(OrderType.LIMIT)
START_AGENT = 0  # lays a real start's book where no LMM agent trades it (ids start at 1)
_REJECT = int(EventType.REJECT)
_NO_RECORDS = np.empty(0, dtype=EVENT_RECORD)
_NO_RECORDS.flags.writeable = False
# what a checkpoint leaves out: given again to the constructor that restores it
_NOT_STATE = frozenset({"config", "backends", "run"})


def instrument_specs(config: SimulationConfig) -> list[InstrumentSpec]:
    return [InstrumentSpec(i.name, i.tick_size, i.reference_ticks) for i in config.instruments]


def shard_instruments(n_instruments: int, shards: int) -> list[list[int]]:
    """Round-robin assignment of instrument indices to shards."""
    return [list(range(k, n_instruments, shards)) for k in range(shards)]


@dataclass(frozen=True)
class AgentBlock:
    """One agent group's agents on one instrument: ids [first_id, first_id + count)."""

    group: int
    instrument: int
    first_id: int
    count: int


def agent_blocks(config: SimulationConfig) -> list[AgentBlock]:
    """Deterministic agent ids for the whole simulation (independent of sharding)."""
    names = config.instrument_names
    blocks, next_id = [], 1
    for g, group in enumerate(config.agents):
        targets = group.instruments or names
        for inst in sorted(names.index(n) for n in targets):
            blocks.append(AgentBlock(g, inst, next_id, group.count))
            next_id += group.count
    return blocks


def agent_rng(seed: int, trajectory: int, instrument: int, group: int) -> np.random.Generator:
    return np.random.default_rng(
        np.random.SeedSequence(seed, spawn_key=(trajectory, instrument, group))
    )


class FillReceiver(Protocol):
    """What ``_settle`` hands fills to: agents with consecutive ids from ``agent_ids[0]``."""

    agent_ids: np.ndarray
    n: int

    def on_fills(self, fills: Fills) -> None: ...


class SlotFills:
    """A book-spanning agent's fills on one book, routed to its slot for that book (``agent``
    is set once the agent exists: it is built from all its slots)."""

    def __init__(self, group: int, slot: int, agent_id: int) -> None:
        self.group, self.slot = group, slot
        self.agent: Any = None
        self.agent_ids = np.array([agent_id], dtype=np.int64)
        self.n = 1

    def on_fills(self, fills: Fills) -> None:
        self.agent.on_fills(self.slot, fills)


@dataclass
class BookStats:
    """What a run's summary needs of one book, kept as events settle (the driver never
    holds the events): counts, traded volume and notional (ticks x shares), last price."""

    events: int = 0
    trades: int = 0
    volume: int = 0
    notional: int = 0
    rejects: int = 0
    last: int | None = None


@dataclass(frozen=True)
class BookReport:
    """What an RL env reads of one book after a step (``ShardRuntime.env_step``): all of it,
    so that the env never reaches into a shard, in process or on an actor."""

    records: np.ndarray  # EVENT_RECORD rows of the learning agents since the last report
    volume: int  # shares traded on the book since the pre-open
    depth: np.ndarray  # ``snapshot(levels)``: (ask price, ask size, bid price, bid size) rows
    last_trade: int | None  # ticks; None before the book's first trade


class _BookState:
    """What the shard keeps per book besides the book: the agents and the view history."""

    def __init__(
        self,
        book: OrderBook | CompiledOrderBook,
        reference: int,
        history: int,
        start: int,
        step: int,
    ):
        self.book = book
        self.reference = reference
        self.populations: list[AgentPopulation] = []  # act once per step on this book
        # who gets this book's fills, sorted by first agent id (populations, book-spanning slots)
        self.receivers: list[FillReceiver] = []
        self.first_ids = np.empty(0, dtype=np.int64)
        self.end_ids = np.empty(0, dtype=np.int64)  # one past each receiver's last agent id
        self.history = np.zeros((history, N_FEATURES), dtype=np.float64)
        self.history[:, LAST] = reference
        self.history[:, MID] = reference
        self.times = start - step * np.arange(1, history + 1, dtype=np.int64)
        self.step_volume = 0
        # drained events not yet written or collected: (seq base, EVENT_RECORD array) per step
        self.chunks: list[tuple[int, np.ndarray]] = []
        self.stats = BookStats()

    def push_view(self, t: int, depth: np.ndarray) -> MarketView:
        book = self.book
        last = book.last_trade_price if book.last_trade_price is not None else self.reference
        self.history, self.times = pushed_history(
            self.history, self.times, depth, last, self.step_volume, t
        )
        self.step_volume = 0
        return MarketView(self.history, self.times, depth, book.phase)


class ShardRuntime:
    """One shard's books and agents (see the module doc). ``backends`` are what the layers
    above hand the book-spanning agent kinds (the served model's generator); pickled by
    reference, so they reach a shard actor in any process."""

    def __init__(
        self,
        config: SimulationConfig,
        shard_index: int,
        backends: Mapping[str, GeneratorBackend] | None = None,
        run: RunDir | None = None,
        start: RealStart | None = None,
    ) -> None:
        self.config = config
        self.backends = dict(backends or {})
        self.run = run
        self.shard_index = shard_index
        kernel = config.kernel
        self.instruments = shard_instruments(len(config.instruments), kernel.shards)[shard_index]
        specs = instrument_specs(config)
        self.exchange = Exchange(
            specs, self.instruments, range(kernel.trajectories), Phase.CLOSED, kernel.book
        )
        self.step = kernel.step_ns
        self.start = config.session.pre_open
        self.end = config.session.close
        self.t = self.start
        self.actions = session_actions(config.session)
        self.pending = OrderBatch.empty()
        self.orphan_tables: list[pa.Table] = []  # rejects that belong to no book, drained
        self.snapshot_every = max(1, round(config.output.snapshot_every_ms * 1e6 / self.step))
        self.snapshots = SnapshotRecorder(config.output.snapshot_levels)
        self.steps_done = 0
        self.state: dict[tuple[int, int], _BookState] = {}
        for key, book in self.exchange.books.items():
            self.state[key] = _BookState(
                book, specs[key[1]].reference_ticks, kernel.history_steps, self.start, self.step
            )
        self._build_agents(specs)
        if config.start is not None:  # the driver hands it in; read here when it did not
            self._lay_start(start if start is not None else real_start(config.start.lobster))
        self.event_count = 0
        self.trade_count = 0
        self.chunk = 0  # chunks written to the run folder
        self.injected_through = -1  # the driver's injections taken (submit_orders' index)
        self.chunk_ns = kernel.sync_ns * config.output.chunk_barriers
        if run is not None:
            self._restore()

    def _build_agents(self, specs: list[InstrumentSpec]) -> None:
        local = set(self.instruments)
        blocks = [b for b in agent_blocks(self.config) if b.instrument in local]
        # kinds that decide for all books of the shard at once: one object per group
        spanning: dict[int, list[BookSlot]] = {}
        for traj in range(self.config.kernel.trajectories):
            for b in blocks:
                group = self.config.agents[b.group]
                cls = AGENT_KINDS[group.kind]
                spec = specs[b.instrument]
                rng = agent_rng(self.config.seed, traj, b.instrument, b.group)
                st = self.state[(traj, b.instrument)]
                if getattr(cls, "spans_books", False):
                    slots = spanning.setdefault(b.group, [])
                    slot = BookSlot(
                        traj, b.instrument, b.first_id, spec.tick_size, spec.reference_ticks, rng
                    )
                    st.receivers.append(SlotFills(b.group, len(slots), b.first_id))
                    slots.append(slot)
                    continue
                population = cls(
                    group.parsed_params(),
                    np.arange(b.first_id, b.first_id + b.count, dtype=np.int64),
                    b.instrument,
                    traj,
                    spec.tick_size,
                    spec.reference_ticks,
                    group.latency,
                    rng,
                )
                st.populations.append(population)
                st.receivers.append(population)
        self.spanning = {
            g: AGENT_KINDS[self.config.agents[g].kind](
                self.config.agents[g].parsed_params(), slots, self.backends
            )
            for g, slots in spanning.items()
        }
        self._slot_books = {
            g: [self.state[(s.trajectory, s.instrument)].book for s in slots]
            for g, slots in spanning.items()
        }
        for st in self.state.values():
            for receiver in st.receivers:
                if isinstance(receiver, SlotFills):
                    receiver.agent = self.spanning[receiver.group]
            st.receivers.sort(key=lambda r: int(r.agent_ids[0]))
            st.first_ids = np.array([r.agent_ids[0] for r in st.receivers], dtype=np.int64)
            st.end_ids = st.first_ids + np.array([r.n for r in st.receivers], dtype=np.int64)

    def _lay_start(self, start: RealStart) -> None:
        """A real start on every book of the shard, laid at the pre-open (a call phase: the
        orders rest). A book that an LMM agent trades gets them as that agent's own orders,
        since it cancels only its own (``LMMBackground.own_orders``), and its model gets the
        real orders before as context; other books get them from agent ``START_AGENT``, a
        wall that only trades and the agents' own cancels near it wear down."""
        t = self.config.session.pre_open
        owned: set[tuple[int, int]] = set()
        batches = [self.pending]
        for agent in self.spanning.values():
            if not hasattr(agent, "own_orders"):
                continue
            books = [(s.trajectory, s.instrument) for s in agent.slots]
            mine = [b not in owned for b in books]
            batches.append(agent.own_orders(t, [start.orders if m else [] for m in mine]))
            for i in range(len(books)):
                agent.set_context(i, start.context)
            owned.update(books)
        rows = []
        for traj, inst in self.state:
            if (traj, inst) in owned:
                continue
            tick = self.config.instruments[inst].tick_size
            for k, (side, price, size) in enumerate(start.orders):
                oid = (START_AGENT << 32) | (k + 1)
                rows.append((t, traj, inst, _LIMIT, oid, side, price * tick, size, START_AGENT))
        batches.append(OrderBatch.from_rows(rows))
        self.pending = OrderBatch.concat(batches)

    # ---------------------------------------------------------------- API
    def submit_orders(self, batch: OrderBatch, index: int | None = None) -> int:
        """Queue orders from outside (users, RL policies); they are processed at their time.

        ``index`` numbers the driver's injections: one this shard has already taken is
        ignored, so the driver may give it again when it cannot tell (a lost call)."""
        if index is not None:
            if index <= self.injected_through:
                return 0
            self.injected_through = index
        self.pending = OrderBatch.concat([self.pending, batch])
        return len(batch)

    def execute(self, orders: OrderBatch | pa.Table) -> pa.Table:
        """Process a batch of orders now, in time order, and return the events they caused.

        The direct, batched way into the books (many orders, instruments and
        trajectories per call, as an OrderBatch or an Arrow table of ORDER_SCHEMA),
        for callers that drive the exchange themselves instead of through agents.
        The events also stay in the run's record.
        """
        batch = orders if isinstance(orders, OrderBatch) else OrderBatch.from_arrow(orders)
        self.exchange.process(batch.sorted())
        tables = []
        for (traj, inst), st in self.state.items():
            before = len(st.chunks)
            self._settle(st)
            for base, records in st.chunks[before:]:
                name = self.exchange.instruments[inst].name
                tables.append(records_to_table(records, name, traj, base))
        orphans = [t for t in self.exchange.drain_tables() if t.num_rows]
        self.orphan_tables.extend(orphans)
        return concat_books(tables + orphans)

    def run_until(self, t_end: int) -> dict:
        t_end = min(t_end, self.end)
        while self.t < t_end:
            t1 = min(self.t + self.step, t_end)
            self._step(self.t, t1)
            self.t = t1
        chunk = self._chunk_ending_now()
        if chunk is not None and chunk > self.chunk:
            self._write_chunk(chunk)
        return self.progress()

    def env_step(
        self, orders: OrderBatch | None, until: int, levels: int, learners_from: int
    ) -> dict[tuple[int, int], BookReport]:
        """Queue ``orders``, run to ``until`` and report every book, by (trajectory,
        instrument): an RL env's one call per step (one round trip to an actor). The events
        of agents below id ``learners_from`` are dropped, not kept: an env has no run
        folder, and its learning agents have the market's highest ids."""
        if orders is not None and len(orders):
            self.submit_orders(orders)
        self.run_until(until)
        out = {}
        for key, st in self.state.items():
            chunks, st.chunks = st.chunks, []
            parts = []
            for _, records in chunks:
                ours = rows_of_agents_from(event_rows(records), learners_from)
                if len(ours):
                    parts.append(records[ours])
            if not parts:
                records = _NO_RECORDS
            else:
                records = parts[0] if len(parts) == 1 else concat_records(parts)
            book = st.book
            out[key] = BookReport(
                records=records,
                volume=st.stats.volume,
                depth=book.snapshot(levels),
                last_trade=book.last_trade_price,
            )
        return out

    def restart(self, seed: int) -> None:
        """Begin the same market again from the pre-open under ``seed``, in this process: an
        RL env's next episode, without a new actor for each. Not for a run with a folder."""
        if self.run is not None:
            raise ValueError("a shard that writes a run folder cannot restart")
        self.close()
        config = self.config.model_copy(update={"seed": seed})
        self.__init__(config, self.shard_index, self.backends)  # type: ignore[misc]

    def run_through(self, barriers: list[int]) -> list[dict]:
        """Run to each barrier in turn: one call, a progress report per barrier."""
        return [self.run_until(t) for t in barriers]

    def location(self) -> dict:
        """Where this shard runs: its process id and, on a Ray worker, its node's id (to check
        placement across nodes, and to find a shard's process)."""
        node = ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
        return {"pid": os.getpid(), "node": node}

    def progress(self) -> dict:
        return {
            "t": self.t,
            "events": self.event_count,
            "trades": self.trade_count,
            "chunk": self.chunk,
            "pid": os.getpid(),
        }

    def book_stats(self) -> dict[tuple[int, int], BookStats]:
        """Every book's running summary, by (trajectory, instrument index)."""
        return {key: st.stats for key, st in self.state.items()}

    def collect(self) -> tuple[list[pa.Table], pa.Table]:
        """All events (one table per book) and snapshots so far."""
        tables = []
        for (traj, inst), st in self.state.items():
            name = self.exchange.instruments[inst].name
            if st.chunks:  # chunks are consecutive in seq: one conversion per book
                records = concat_records([chunk for _, chunk in st.chunks])
                tables.append(records_to_table(records, name, traj, st.chunks[0][0]))
        tables.extend(self.orphan_tables)  # exchange-level rejects
        tables.extend(self.exchange.drain_tables())
        return tables, self.snapshots.table(self.exchange.instruments)

    def close(self) -> None:
        """Release what agents hold outside this process (served model sessions)."""
        for agent in self.spanning.values():
            agent.close()

    # ---------------------------------------------------------------- the run folder
    def _chunk_ending_now(self) -> int | None:
        """The chunk that ends at this shard's time: a multiple of ``chunk_ns`` after the
        pre-open, or the close (the last chunk, however short). None between them, and
        without a run folder."""
        if self.run is None:
            return None
        if self.t >= self.end:
            return -(-(self.end - self.start) // self.chunk_ns)
        span = self.t - self.start
        return span // self.chunk_ns if span > 0 and span % self.chunk_ns == 0 else None

    def _write_chunk(self, chunk: int) -> None:
        """Write the events and snapshots since the last chunk as this chunk's part files (one
        per trajectory), forget them here, then save the state that goes with them."""
        assert self.run is not None
        meta = run_metadata(self.config, self.run.run_id)
        books: dict[int, list[pa.Table]] = {}
        for (traj, inst), st in self.state.items():
            if st.chunks:  # consecutive in seq: one conversion per book
                records = concat_records([records for _, records in st.chunks])
                name = self.exchange.instruments[inst].name
                table = records_to_table(records, name, traj, st.chunks[0][0])
                books.setdefault(traj, []).append(table)
                st.chunks = []
        orphans = self.orphan_tables + [t for t in self.exchange.drain_tables() if t.num_rows]
        self.orphan_tables = []
        for traj, tables in sorted(books.items()):
            path = self.run.part(EVENTS, traj, self.shard_index, chunk)
            write_part(path, concat_books(tables), meta)
        if orphans:
            path = self.run.part(EVENTS, ORPHANS, self.shard_index, chunk)
            write_part(path, concat_books(orphans), meta)
        snapshots = self.snapshots.table(self.exchange.instruments)
        self.snapshots = SnapshotRecorder(self.config.output.snapshot_levels)
        trajectory = snapshots["trajectory_id"]
        for traj in sorted(set(trajectory.to_pylist())):
            path = self.run.part(SNAPSHOTS, traj, self.shard_index, chunk)
            write_part(path, snapshots.filter(pc.equal(trajectory, traj)), meta)
        self.chunk = chunk
        if self.config.output.checkpoints:
            state = {k: v for k, v in self.__dict__.items() if k not in _NOT_STATE}
            checkpoint.save(self.run.checkpoint_dir(self.shard_index), chunk, state)

    def _restore(self) -> None:
        """Continue from this shard's newest checkpoint of the run, if it has one, and
        forget what it wrote after it (from the start, when it has none)."""
        assert self.run is not None
        found = checkpoint.latest(self.run.checkpoint_dir(self.shard_index))
        if found is not None:
            self.__dict__.update(found[1])
        self.run.drop_parts_after(self.shard_index, self.chunk)

    # ---------------------------------------------------------------- the step
    def _step(self, t0: int, t1: int) -> None:
        record = self.steps_done % self.snapshot_every == 0
        levels = self.config.output.snapshot_levels
        batches = [self.pending]
        for key, st in self.state.items():
            depth = st.book.snapshot(levels)
            view = st.push_view(t0, depth)
            if record:
                self.snapshots.add(t0, key, st.book.phase, depth)
            for population in st.populations:
                batches.append(population.act(t0, t1, view))
        if self.spanning:
            # book-spanning agents act until the step's first session action, if any
            cut = min((a.time_ns for a in self.actions if t0 <= a.time_ns < t1), default=t1)
            for g, agent in self.spanning.items():
                books = self._slot_books[g]
                depths = [book.snapshot(SPANNING_LEVELS) for book in books]
                batches.append(agent.act(t0, cut, depths, books[0].phase))
        due, self.pending = OrderBatch.concat(batches).sorted_split(t1)
        final = t1 >= self.end
        for action in self.actions:
            if t0 <= action.time_ns < t1 or (final and action.time_ns == t1):
                before, due = due.split_before(action.time_ns)
                self.exchange.process(before)
                self.exchange.transition(action.time_ns, action.action)
        self.exchange.process(due)
        for st in self.state.values():
            self._settle(st)
        self.steps_done += 1

    def _settle(self, st: _BookState) -> None:
        """Keep the book's new events (as records) and report its trades to the agents."""
        base, records = st.book.drain_records()
        n = len(records)
        if not n:
            return
        st.chunks.append((base, records))
        self.event_count += n
        stats = st.stats
        stats.events += n
        rows = event_rows(records)
        rejects, k, volume, notional, last = book_totals(rows)
        stats.rejects += rejects
        if not k:
            return
        self.trade_count += k
        st.step_volume += volume
        stats.trades += k
        stats.volume += volume
        stats.notional += notional
        stats.last = last
        populations = st.receivers
        if not populations:
            return
        # Each fill once per side: the resting orders' owners, then the aggressors.
        counts, agent, order_id, side, price, size = route_fills(rows, k, st.first_ids, st.end_ids)
        start = 0
        for population, count in zip(populations, counts.tolist(), strict=True):
            if count:
                part = slice(start, start + count)
                population.on_fills(
                    Fills(
                        agent_index=agent[part] - population.agent_ids[0],
                        order_id=order_id[part],
                        side=side[part],
                        price=price[part],
                        size=size[part],
                    )
                )
                start += count


ExchangeShard = ray.remote(ShardRuntime)
