"""LOB-Bench's protocol: conditional generation from real states of a day the model never saw.

For ``n`` windows of a real day (start times spread over its continuous trading), each
generator starts from the real state at the window's start (a ``start: lobster`` config:
the book rebuilt from the files, the orders before it as the LMM's context,
``mars_ray/sim/real_start.py``) and generates the next ``horizon`` seconds. The generated
continuations are compared with the real ones (the file's messages and rows in the same
windows) by the suite (``lob_suite.compare_scores``: scores, distances, impact curves,
stylized facts, one-sided rows, message rates), at the file's depth. The floor is real
against real: the first half of the windows' real continuations against the second half.

The generators are the two realism configs (``configs/lmm_realism.yaml``: the shipped LMM;
``configs/agents_realism.yaml``: the agent simulator), each window's run made from its
config by replacing the session, the start and the seed, so both run on the same windows.
"""

from __future__ import annotations

import copy
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mars_ray.data.lobster import LobsterFormatError, book_before_first, read_pair
from mars_ray.reports.lob_suite import Book, compare_scores, events_book, slice_book
from mars_ray.reports.realism import REAL_WINDOW, RealismError
from mars_ray.schema.clock import NS_PER_S, format_clock
from mars_ray.sim.config import SimulationConfig, parse_config

GENERATORS = ("lmm", "baseline")
SCORE_KEYS = ("l1", "w1", "l1_ci95")  # what the JSON keeps of a score's distances

Progress = Callable[[str], None]  # called after each run with what just finished


@dataclass(frozen=True)
class Protocol:
    """What one LOB-Bench run compares: the real day, its windows, the two generators."""

    message: Path
    orderbook: Path
    starts: tuple[int, ...]  # ns after midnight, whole seconds
    horizon_ns: int
    seed: int
    templates: Mapping[str, Mapping[str, Any]]  # generator -> raw simulation config


def window_starts(
    time_ns: np.ndarray, n: int, horizon_ns: int, window: tuple[int, int] = REAL_WINDOW
) -> list[int]:
    """``n`` start times (whole seconds) at the centres of ``n`` equal slices of the span in
    which a window of ``horizon_ns`` fits: the day's messages inside ``window`` (continuous
    trading), after its first message, ending by its last."""
    inside = time_ns[(time_ns >= window[0]) & (time_ns < window[1])]
    if n < 1:
        raise RealismError(f"--windows must be at least 1, got {n}")
    if len(inside) < 2:
        raise RealismError("the reference has no messages in continuous trading")
    lo = (int(inside[0]) // NS_PER_S + 1) * NS_PER_S  # a message before the first start
    hi = int(inside[-1]) - horizon_ns
    if hi - lo < n * NS_PER_S:
        span = (int(inside[-1]) - int(inside[0])) / NS_PER_S
        raise RealismError(
            f"{n} windows of {horizon_ns / NS_PER_S:g} s do not fit in the reference's "
            f"{span:.0f} s of continuous trading: fewer windows or a shorter --horizon-s"
        )
    width = (hi - lo) / n
    return [(lo + round(width * (k + 0.5))) // NS_PER_S * NS_PER_S for k in range(n)]


def real_continuations(
    msgs: Any, rows: np.ndarray, starts: Sequence[int], horizon_ns: int
) -> list[Book]:
    """The real day's messages and rows in each [start, start + horizon)."""
    initial = book_before_first(rows, msgs).reshape(-1)
    books = []
    for t in starts:
        a, b = np.searchsorted(msgs.time_ns, [t, t + horizon_ns], side="left")
        books.append(slice_book(msgs, rows, initial, int(a), int(b)))
    return books


def window_config(protocol: Protocol, generator: str, k: int) -> SimulationConfig:
    """Generator ``generator``'s run for window ``k``: its config with the session around the
    window (the real book laid a second before it; trading from its start to its end), the
    real start, a per-window seed, and LMM agents acting over the window."""
    start = protocol.starts[k]
    end = start + protocol.horizon_ns
    raw = copy.deepcopy(dict(protocol.templates[generator]))
    raw["name"] = f"{raw.get('name', generator)}-w{k}"
    raw["seed"] = protocol.seed + k
    raw["session"] = {
        **raw.get("session", {}),
        "pre_open": (start - NS_PER_S) / NS_PER_S,
        "open": start / NS_PER_S,
        "closing_call": end / NS_PER_S,
        "close": (end + NS_PER_S) / NS_PER_S,
        "halts": [],
    }
    raw["start"] = {
        "lobster": {
            "message": str(protocol.message),
            "orderbook": str(protocol.orderbook),
            "at": start / NS_PER_S,
        }
    }
    for group in raw.get("agents", []):
        if group.get("kind") == "lmm":
            group["params"] = {**group.get("params", {}), "start": start / NS_PER_S}
            group["params"]["end"] = end / NS_PER_S
    raw["output"] = {**raw.get("output", {}), "plot": False, "checkpoints": False}
    return parse_config(raw, f"{generator} config, window {k} ({format_clock(start)})")


def generated_books(config: SimulationConfig, levels: int) -> tuple[list[Book], float, Counter]:
    """One window's run (in this process): each trajectory's book over the window at
    ``levels`` depth, the wall time, and what the LMM's keep_both_sides rule changed."""
    import pyarrow.compute as pc

    from mars_ray.sim.kernel import Simulation

    t0 = time.perf_counter()
    sim = Simulation(config, local=True)
    try:
        sim.run()
        events, _ = sim.collect()
        guarded: Counter = Counter()
        for shard in sim.shards:
            for agent in shard.spanning.values():
                guarded.update(getattr(agent, "guarded", {}))
    finally:
        sim.close()
    window = (config.session.open, config.session.closing_call)
    books = []
    for traj in range(config.kernel.trajectories):
        table = events.filter(pc.equal(events["trajectory_id"], traj))
        books.append(events_book(table, levels, window))
    return books, time.perf_counter() - t0, guarded


def run_protocol(
    protocol: Protocol, levels: int, reference: Sequence[Book], progress: Progress | None = None
) -> tuple[dict[str, Any], dict[str, Any], dict[str, dict[str, np.ndarray]]]:
    """Both generators on every window, then the suite: (the JSON payload, ``compare_scores``'
    full result for plots, pooled samples for plots)."""
    generated: dict[str, list[Book]] = {g: [] for g in GENERATORS}
    wall = dict.fromkeys(GENERATORS, 0.0)
    guarded: Counter = Counter()
    for k, start in enumerate(protocol.starts):
        for g in GENERATORS:
            books, seconds, changed = generated_books(window_config(protocol, g, k), levels)
            generated[g] += books
            wall[g] += seconds
            guarded.update(changed)
            if progress is not None:
                progress(f"{g} {format_clock(start)}")
    result, samples = compare_scores(reference, generated, seed=protocol.seed)
    return payload(result, protocol, wall, guarded), result, samples


def payload(
    result: Mapping[str, Any],
    protocol: Protocol,
    wall: Mapping[str, float],
    guarded: Mapping[str, int] | None = None,
) -> dict:
    """``compare_scores``' result in the issue's shape: scores with l1, w1, l1_ci95 per
    source; impact deviations per source; facts as present/absent per source; the curves
    and fact statistics beside them."""
    scores = {
        name: {src: {k: d.get(k) for k in SCORE_KEYS} for src, d in row.items()}
        for name, row in result["scores"].items()
    }
    facts = {
        name: {k: v for k, v in row.items() if k != "statistic"}
        for name, row in result["stylized_facts"].items()
    }
    return {
        "scores": scores,
        "impact": result["impact"]["deviation"],
        "stylized_facts": facts,
        "one_sided_rows": result["one_sided_rows"],
        # orders the LMM's keep_both_sides rule changed over all windows (agents/lmm.py)
        "lmm_kept_both_sides": dict(guarded or {}),
        "messages_per_s": result["messages_per_s"],
        "mid_change_ticks": result["mid_change_ticks"],
        "market_sign_autocorrelation": result["market_sign_autocorrelation"],
        "impact_curves": result["impact"]["curves"],
        "fact_statistics": {n: r["statistic"] for n, r in result["stylized_facts"].items()},
        "protocol": {
            "reference": [str(protocol.message), str(protocol.orderbook)],
            "windows": [format_clock(t) for t in protocol.starts],
            "horizon_s": protocol.horizon_ns / NS_PER_S,
            "seed": protocol.seed,
            "trajectories": {
                g: int(protocol.templates[g].get("kernel", {}).get("trajectories", 1))
                for g in GENERATORS
            },
            "wall_s": {g: round(s, 2) for g, s in wall.items()},
        },
    }


def read_reference(message: Path, orderbook: Path) -> tuple[Any, np.ndarray]:
    """The real day's messages and rows; a bad file is a RealismError naming it."""
    try:
        return read_pair(message, orderbook)
    except LobsterFormatError as exc:
        raise RealismError(str(exc)) from None


NOTES = (
    "each window starts from the real state (the book at the window's start rebuilt from the "
    "files, laid at the file's depth; the LMM gets the orders before it as context) and "
    "generates the window; scores pool every window and trajectory",
    "the floor is the real continuations of the first half of the windows against those of "
    "the second half",
    "scores at the reference's depth; generated runs are replayed at that depth and keep the "
    "messages a file of that depth would hold",
)
