"""Simulation configs: YAML validated by pydantic, with errors that name field and value.

It lives with the kernel because a simulation config names agent kinds: each kind's own
params model (``agents.registry``) validates the ``params`` given for it."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, ValidationInfo, field_validator, model_validator

from agents.base import LatencyConfig
from agents.registry import AGENT_KINDS
from mars_ray.schema.clock import Clock, format_clock, parse_clock
from mars_ray.schema.quantities import Price, TickSize, price_problem
from mars_ray.schema.validation import StrictModel, read_yaml, validate_model

# A step, sync or snapshot interval in ms: at least a µs (the clock counts ns, and an
# interval that rounds to 0 ns would never advance) and at most a day.
Interval = Annotated[float, Field(ge=0.001, le=86_400_000)]
LOBSTER_TICK = 0.01  # the tick of a LOBSTER file's prices (dollars x 10000, 100 a tick)


class HaltConfig(StrictModel):
    """A trading halt: new orders are refused from ``at``; quoting resumes (a call phase) at
    ``quote``, and trading at ``trade`` with a re-opening auction."""

    at: Clock
    quote: Clock
    trade: Clock

    @model_validator(mode="after")
    def _ordered(self) -> HaltConfig:
        if not self.at < self.quote <= self.trade:
            raise ValueError(
                f"halt times must satisfy at < quote <= trade, got "
                f"{format_clock(self.at)}, {format_clock(self.quote)}, {format_clock(self.trade)}"
            )
        return self


class SessionConfig(StrictModel):
    """The trading day: pre-open call → opening auction → continuous → closing call → closing
    auction."""

    date: dt.date = dt.date(2012, 6, 21)
    pre_open: Clock = Field(default=parse_clock("09:00"), description="ns after midnight")
    open: Clock = Field(default=parse_clock("09:30"), description="opening auction")
    closing_call: Clock = Field(default=parse_clock("15:55"), description="closing call starts")
    close: Clock = Field(default=parse_clock("16:00"), description="closing auction")
    halts: list[HaltConfig] = Field(default_factory=list, description="market-wide halts")

    @model_validator(mode="after")
    def _ordered(self) -> SessionConfig:
        if not self.pre_open <= self.open < self.closing_call <= self.close:
            raise ValueError(
                "session times must satisfy pre_open <= open < closing_call <= close, got "
                f"{format_clock(self.pre_open)}, {format_clock(self.open)}, "
                f"{format_clock(self.closing_call)}, {format_clock(self.close)}"
            )
        previous_end = self.open
        for k, halt in enumerate(sorted(self.halts, key=lambda h: h.at)):
            if not previous_end < halt.at or not halt.trade < self.closing_call:
                window = f"{format_clock(halt.at)} to {format_clock(halt.trade)}"
                raise ValueError(
                    f"halts[{k}] ({window}) must lie inside continuous trading and not overlap "
                    "another halt"
                )
            previous_end = halt.trade
        return self


class InstrumentConfig(StrictModel):
    """An instrument; its tick size and reference price within ``schema.quantities``'s
    bounds, so that the books' int64 ticks hold every price."""

    name: str = Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_.\-]+$")
    tick_size: TickSize = 0.01
    reference_price: Price = Field(default=100.0, description="currency units")

    @field_validator("reference_price")
    @classmethod
    def _on_grid(cls, price: float, info: ValidationInfo) -> float:
        tick_size = info.data.get("tick_size")
        if tick_size is not None:  # else tick_size has its own error
            problem = price_problem(price, tick_size)
            if problem is not None:
                raise ValueError(problem)
        return price

    @property
    def reference_ticks(self) -> int:
        return round(self.reference_price / self.tick_size)


class AgentGroupConfig(StrictModel):
    """``count`` agents of one kind on each listed instrument (all instruments by default)."""

    kind: str
    count: int = Field(gt=0, le=1_000_000)
    instruments: list[str] | None = None
    latency: LatencyConfig = LatencyConfig()
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, kind: str) -> str:
        if kind not in AGENT_KINDS:
            raise ValueError(f"unknown agent kind {kind!r}; known kinds: {sorted(AGENT_KINDS)}")
        return kind

    @field_validator("params")
    @classmethod
    def _kind_params(cls, params: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        """The kind's own params model checks them now, so that a bad value is reported
        (as ``agents.N.params.FIELD``) before anything runs."""
        kind = info.data.get("kind")
        if kind is not None:
            AGENT_KINDS[kind].params_model.model_validate(params)
        return params

    @field_validator("count")
    @classmethod
    def _kind_count(cls, count: int, info: ValidationInfo) -> int:
        kind = info.data.get("kind")
        max_count = getattr(AGENT_KINDS.get(kind), "max_count", None)
        if max_count is not None and count > max_count:
            raise ValueError(f"{kind!r} allows at most {max_count} per instrument")
        return count

    def parsed_params(self) -> BaseModel:
        return AGENT_KINDS[self.kind].params_model.model_validate(self.params)


class KernelConfig(StrictModel):
    step_ms: Interval = Field(default=1000.0, description="agent decision step")
    sync_ms: Interval = Field(default=60_000.0, description="shard synchronisation interval")
    shards: int = Field(default=1, ge=1, le=1024)
    trajectories: int = Field(default=1, ge=1, le=100_000)
    history_steps: int = Field(
        default=8, ge=1, le=1024, description="boundary snapshots kept per book"
    )
    run_ahead: int = Field(
        default=4,
        ge=1,
        le=1024,
        description="calls (each one or more sync intervals) queued on every shard within a "
        "run, so a shard runs ahead of the slowest one (1: each call waits for all shards); "
        "events do not depend on it",
    )
    book: Literal["compiled", "python"] = Field(
        default="compiled",
        description="order book engine: numba-compiled, or the pure-Python reference "
        "(identical events, slower)",
    )
    max_restarts: int = Field(
        default=3,
        ge=0,
        le=1000,
        description="times Ray may restart a lost shard of a run that writes a folder; it is "
        "rebuilt from its last checkpoint (output.checkpoints) and the run goes on",
    )

    @model_validator(mode="after")
    def _sync_multiple(self) -> KernelConfig:
        ratio = self.sync_ms / self.step_ms
        if ratio < 1 or abs(ratio - round(ratio)) > 1e-9:
            raise ValueError(
                f"sync_ms ({self.sync_ms}) must be a whole multiple of step_ms ({self.step_ms})"
            )
        return self

    @property
    def step_ns(self) -> int:
        return round(self.step_ms * 1_000_000)

    @property
    def sync_ns(self) -> int:
        return round(self.sync_ms * 1_000_000)


class OutputConfig(StrictModel):
    dir: str = "runs/out"
    snapshot_levels: int = Field(default=5, ge=1, le=50)
    snapshot_every_ms: Interval = 1000.0
    plot: bool = True
    chunk_barriers: int = Field(
        default=30,
        ge=1,
        le=1_000_000,
        description="shards write their events to the run's folder every this many sync "
        "barriers (and at the close): what a shard holds in memory",
    )
    checkpoints: bool = Field(
        default=True,
        description="save each shard's state with every chunk, so that a lost shard is "
        "rebuilt and an interrupted run resumes (mars-ray simulate --resume)",
    )


class RayConfig(StrictModel):
    address: str | None = Field(default=None, description="None: start an embedded local Ray")
    num_cpus: int | None = Field(default=None, ge=1)


class LobsterStartConfig(StrictModel):
    """A real state to start from: the book of a LOBSTER day at ``at``, rebuilt from its files
    (``mars_ray/sim/real_start.py``), laid on every book before the open; LMM agents get the
    orders before ``at`` as their context."""

    message: Path
    orderbook: Path
    at: Clock = Field(description="time of day of the real state, e.g. '10:30'")

    @field_validator("message", "orderbook")
    @classmethod
    def _exists(cls, path: Path) -> Path:
        if not path.is_file():
            raise ValueError(f"file not found: {str(path)!r}")
        return path


class StartConfig(StrictModel):
    """Where every book starts (empty when no start is given)."""

    lobster: LobsterStartConfig


class SimulationConfig(StrictModel):
    name: str = "simulation"
    seed: int = Field(default=0, ge=0, lt=2**63)
    session: SessionConfig = SessionConfig()
    kernel: KernelConfig = KernelConfig()
    instruments: list[InstrumentConfig] = Field(min_length=1)
    start: StartConfig | None = None
    agents: list[AgentGroupConfig] = Field(default_factory=list)
    output: OutputConfig = OutputConfig()
    ray: RayConfig = RayConfig()

    @model_validator(mode="after")
    def _cross_checks(self) -> SimulationConfig:
        names = [i.name for i in self.instruments]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"instrument names must be unique, repeated: {dupes}")
        if self.kernel.shards > len(names):
            raise ValueError(
                f"kernel.shards ({self.kernel.shards}) exceeds the number of "
                f"instruments ({len(names)})"
            )
        if self.start is not None:
            self._check_start(self.start.lobster)
        for k, group in enumerate(self.agents):
            for name in group.instruments or []:
                if name not in names:
                    raise ValueError(
                        f"agents[{k}].instruments: unknown instrument {name!r}; known: {names}"
                    )
        return self

    def _check_start(self, start: LobsterStartConfig) -> None:
        """The real book is laid in the pre-open call and trading starts at the open, so the
        state's time lies between them; LOBSTER prices are whole cents."""
        session = self.session
        if not session.pre_open <= start.at <= session.open:
            raise ValueError(
                f"start.lobster.at ({format_clock(start.at)}) must lie between session.pre_open "
                f"({format_clock(session.pre_open)}) and session.open "
                f"({format_clock(session.open)}): the real book is laid before trading starts"
            )
        for k, inst in enumerate(self.instruments):
            if abs(inst.tick_size - LOBSTER_TICK) > 1e-12:
                raise ValueError(
                    f"instruments[{k}].tick_size is {inst.tick_size}, but start.lobster "
                    f"prices are on LOBSTER's grid of {LOBSTER_TICK}"
                )

    @property
    def instrument_names(self) -> list[str]:
        return [i.name for i in self.instruments]


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> SimulationConfig:
    """Read and validate a simulation config; raise ConfigError with a readable message."""
    return parse_config(read_yaml(path, overrides), str(path))


def parse_config(raw: dict[str, Any], source: str = "<dict>") -> SimulationConfig:
    return validate_model(SimulationConfig, raw, source)
