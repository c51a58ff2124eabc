"""Run one trajectory request through the clearing house: the start book, the LMM flow, the
injected orders; return events and book snapshots per trajectory (JSON or Arrow IPC).

The request becomes an ordinary simulation config (one instrument, ``n``
trajectories, one LMM agent) run in-process by the kernel, so the served flow
is matched by exactly the engine `mars-ray simulate` uses. The start book is a
set of resting orders from agent 0 placed one second before ``start_time`` (a
call phase: they rest and the opening uncross at ``start_time`` finds nothing
to cross); the LMM agent is agent 1; injected orders come from agent
``USER_AGENT``.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from mars_ray.exchange.orders import OrderBatch
from mars_ray.schema.clock import NS_PER_S
from mars_ray.schema.events import OrderType
from mars_ray.schema.quantities import MAX_TICKS, price_problem
from mars_ray.serve.api import BookLevels, TrajectoryRequest
from mars_ray.serve.generator import SERVE_BACKENDS
from mars_ray.serve.settings import Limits
from mars_ray.sim.config import SimulationConfig, parse_config
from mars_ray.sim.kernel import Simulation

START_AGENT = 0
USER_AGENT = 1_000_000
STEP_MS = 200.0  # the LMM agent sees the clearing house's book at this cadence
SYNC_MS = 1000.0  # an order horizon is checked at this cadence
ARROW_MEDIA_TYPE = "application/vnd.apache.arrow.stream"
_LIMIT = int(OrderType.LIMIT)


class RequestProblem(ValueError):
    """Request values that parse but cannot be served; each names its field (``loc``)."""

    def __init__(self, problems: list[tuple[tuple[str | int, ...], str, Any]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{'.'.join(map(str, loc))}: {msg}" for loc, msg, _ in problems))


@dataclass
class TrajectoryResult:
    request: TrajectoryRequest
    events: pa.Table
    snapshots: pa.Table
    lmm_orders: int
    model: dict[str, Any]


def check_request(req: TrajectoryRequest, limits: Limits) -> BookLevels:
    """The limits and the book rules that pydantic alone cannot know; returns the start book."""
    problems: list[tuple[tuple[str | int, ...], str, Any]] = []

    def over(loc: tuple[str | int, ...], value: float, limit: float) -> None:
        if value > limit:
            problems.append((("body", *loc), f"must be <= {limit} (server limit)", value))

    over(("trajectories",), req.trajectories, limits.max_trajectories)
    if req.horizon.orders is not None:
        over(("horizon", "orders"), req.horizon.orders, limits.max_horizon_orders)
    if req.horizon.seconds is not None:
        over(("horizon", "seconds"), req.horizon.seconds, limits.max_horizon_seconds)
    over(("inject",), len(req.inject), limits.max_injected_orders)
    over(("snapshot_levels",), req.snapshot_levels, limits.max_snapshot_levels)
    end = req.start_ns + round(_horizon_s(req, limits) * NS_PER_S) + 2 * NS_PER_S
    if req.start_ns < NS_PER_S or end > 86_400 * NS_PER_S:
        problems.append(
            (
                ("body", "start_time"),
                "start_time + horizon must stay within the day",
                req.start_time,
            )
        )
    book = req.start.levels(req.tick_size)
    where = next(k for k in ("preset", "book", "lobster") if getattr(req.start, k) is not None)
    for side in ("bids", "asks"):
        levels = getattr(book, side)
        over(("start", where, side), len(levels), limits.max_book_levels)
        for k, (price, _) in enumerate(levels):
            problem = price_problem(price, req.tick_size)
            if problem is not None:
                problems.append((("body", "start", where, side, k), f"price {problem}", price))
    if book.bids and book.asks and max(p for p, _ in book.bids) >= min(p for p, _ in book.asks):
        problems.append((("body", "start", where), "the start book is crossed (bid >= ask)", None))
    for k, order in enumerate(req.inject):
        problem = None if order.price is None else price_problem(order.price, req.tick_size)
        if problem is not None:
            problems.append((("body", "inject", k, "price"), problem, order.price))
        for traj in order.trajectories or []:
            if not 0 <= traj < req.trajectories:
                problems.append(
                    (
                        ("body", "inject", k, "trajectories"),
                        f"trajectory {traj} is not in [0, {req.trajectories})",
                        traj,
                    )
                )
        if order.at_s >= _horizon_s(req, limits):
            # an orders horizon runs for at most the server's max_horizon_seconds
            where = (
                "the horizon"
                if req.horizon.seconds is not None
                else (f"the server's max_horizon_seconds ({limits.max_horizon_seconds:g})")
            )
            problems.append((("body", "inject", k, "at_s"), f"is at or after {where}", order.at_s))
    if problems:
        raise RequestProblem(problems)
    return book


def _horizon_s(req: TrajectoryRequest, limits: Limits) -> float:
    """Simulated seconds to allow: the horizon, or for an order horizon the server's cap."""
    return req.horizon.seconds if req.horizon.seconds is not None else limits.max_horizon_seconds


def simulation_config(
    req: TrajectoryRequest, book: BookLevels, limits: Limits, lmm: dict[str, Any]
) -> SimulationConfig:
    """The request as a simulation config; ``lmm`` adds LMM agent params (backend, app...)."""
    t0 = req.start_ns
    t_end = t0 + round(_horizon_s(req, limits) * NS_PER_S)
    prices = [p for p, _ in book.bids[:1] + book.asks[:1]]
    reference = sum(prices) / len(prices) if prices else 100.0
    # on the grid and within the bounds even for an empty book on an extreme tick size
    reference = min(max(round(reference / req.tick_size), 1), MAX_TICKS) * req.tick_size
    params = {
        "start": t0 / NS_PER_S,
        "end": t_end / NS_PER_S,
        "temperature": req.temperature,
        "max_orders": req.horizon.orders,
        "control": req.control,  # validated already: passed on as the model itself
        **lmm,
    }
    raw = {
        "name": "trajectory",
        "seed": req.seed,
        "session": {
            "pre_open": (t0 - NS_PER_S) / NS_PER_S,
            "open": t0 / NS_PER_S,
            "closing_call": t_end / NS_PER_S,
            "close": (t_end + NS_PER_S) / NS_PER_S,
        },
        "kernel": {
            "shards": 1,
            "trajectories": req.trajectories,
            "step_ms": STEP_MS,
            "sync_ms": SYNC_MS,
        },
        "instruments": [
            {
                "name": req.instrument,
                "tick_size": req.tick_size,
                "reference_price": reference,
            }
        ],
        "agents": [{"kind": "lmm", "count": 1, "params": params}],
        "output": {
            "dir": "runs/served",
            "snapshot_levels": req.snapshot_levels,
            "snapshot_every_ms": max(req.snapshot_every_s * 1000.0, STEP_MS),
            "plot": False,
        },
    }
    return parse_config(raw, "trajectory request")


def opening_orders(req: TrajectoryRequest, book: BookLevels) -> OrderBatch:
    """The start book (agent 0, just before the start) and the injected orders (USER_AGENT)."""
    rows: list[tuple] = []
    placed_at = req.start_ns - NS_PER_S
    for traj in range(req.trajectories):
        counter = 0
        for side, levels in ((1, book.bids), (-1, book.asks)):
            for price, size in levels:
                counter += 1
                rows.append((placed_at, traj, 0, _LIMIT, counter, side, price, size, START_AGENT))
    kinds = {"limit": OrderType.LIMIT, "market": OrderType.MARKET, "ioc": OrderType.IOC}
    for k, order in enumerate(req.inject):
        t = req.start_ns + round(order.at_s * NS_PER_S)
        side = 1 if order.side == "buy" else -1
        price = np.nan if order.price is None else order.price
        oid = (USER_AGENT << 32) | k
        for traj in order.trajectories or range(req.trajectories):
            rows.append(
                (t, traj, 0, int(kinds[order.type]), oid, side, price, order.size, USER_AGENT)
            )
    return OrderBatch.from_rows(rows)


def run_request(
    req: TrajectoryRequest, limits: Limits, lmm: dict[str, Any], model: dict[str, Any]
) -> TrajectoryResult:
    """Check, build and run the request's simulation; raises RequestProblem for bad values."""
    book = check_request(req, limits)
    config = simulation_config(req, book, limits, lmm)
    sim = Simulation(config, local=True, backends=SERVE_BACKENDS)
    try:
        sim.inject(opening_orders(req, book))
        t_end = config.session.closing_call
        agent = sim.shards[0].spanning[0]
        if req.horizon.orders is None:
            sim.run(until=t_end)
        else:  # run a second at a time until every trajectory has its orders
            while sim.t < t_end and not agent.finished:
                sim.run(until=sim.t + config.kernel.sync_ns)
        lmm_orders = agent.orders_generated
        events, snapshots = sim.collect()
    finally:
        sim.close()
    return TrajectoryResult(req, events, snapshots, lmm_orders, model)


# ---------------------------------------------------------------------- encodings
def _per_trajectory(table: pa.Table, n: int) -> list[pa.Table]:
    traj = table.column("trajectory_id").to_numpy()
    return [table.filter(pa.array(traj == i)) for i in range(n)]


def to_json(result: TrajectoryResult) -> dict[str, Any]:
    """Column lists per trajectory: compact, and ``pandas.DataFrame(events)`` reads it."""
    n = result.request.trajectories
    events = _per_trajectory(result.events, n)
    snapshots = _per_trajectory(result.snapshots, n)
    return {
        "model": {k: result.model[k] for k in ("name", "sha256", "params")},
        "request": result.request.model_dump(mode="json"),
        "lmm_orders": result.lmm_orders,
        "trajectories": [
            {
                "trajectory_id": i,
                "events": events[i].to_pydict(),
                "snapshots": snapshots[i].to_pydict(),
            }
            for i in range(n)
        ],
    }


def _nested(table: pa.Table, n: int) -> pa.Array:
    """One list per trajectory of the table's rows (as structs), trajectory order."""
    table = table.sort_by([("trajectory_id", "ascending")])
    counts = np.bincount(table.column("trajectory_id").to_numpy(), minlength=n)
    offsets = pa.array(np.concatenate([[0], np.cumsum(counts)]).astype(np.int32))
    rows = pa.StructArray.from_arrays(
        [c.combine_chunks() for c in table.columns], fields=list(table.schema)
    )
    return pa.ListArray.from_arrays(offsets, rows)


def to_arrow(result: TrajectoryResult) -> bytes:
    """An Arrow IPC stream: one row per trajectory, its events and snapshots as lists of rows
    (``mars_ray.serve.client.read_arrow`` flattens them back into two tables)."""
    n = result.request.trajectories
    table = pa.table(
        {
            "trajectory_id": pa.array(np.arange(n, dtype=np.int32)),
            "events": _nested(result.events, n),
            "snapshots": _nested(result.snapshots, n),
        }
    ).replace_schema_metadata(
        {
            "mars_ray.request": result.request.model_dump_json(),
            "mars_ray.model": result.model["name"],
            "mars_ray.model_sha256": result.model["sha256"],
            "mars_ray.lmm_orders": str(result.lmm_orders),
        }
    )
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()
