"""Simulation configs: YAML validated by pydantic, with errors that name field and value."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

NS_PER_S = 1_000_000_000
_Model = TypeVar("_Model", bound=BaseModel)


class ConfigError(ValueError):
    """A config file that cannot be used; the message names the field and the value."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _parse_clock(value: Any) -> int:
    """'09:30' or '09:30:00.5' (or seconds after midnight) → ns after midnight."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str):
        parts = value.strip().split(":")
        if len(parts) not in (2, 3):
            raise ValueError(f"expected HH:MM[:SS], got {value!r}")
        try:
            h, m = int(parts[0]), int(parts[1])
            s = float(parts[2]) if len(parts) == 3 else 0.0
        except ValueError as exc:
            raise ValueError(f"expected HH:MM[:SS], got {value!r}") from exc
        if not (0 <= h < 24 and 0 <= m < 60 and 0 <= s < 60):
            raise ValueError(f"not a time of day: {value!r}")
        seconds = h * 3600 + m * 60 + s
    else:
        raise ValueError(f"expected a time of day like '09:30', got {value!r}")
    if not math.isfinite(seconds) or not 0 <= seconds <= 86400:
        raise ValueError(f"not a time of day: {value!r}")
    return round(seconds * NS_PER_S)


class HaltConfig(_Strict):
    """A trading halt: new orders are refused from ``at``; quoting resumes (a call phase) at
    ``quote``, and trading at ``trade`` with a re-opening auction."""

    at: int
    quote: int
    trade: int

    @field_validator("at", "quote", "trade", mode="before")
    @classmethod
    def _clock(cls, value: Any) -> int:
        return _parse_clock(value)

    @model_validator(mode="after")
    def _ordered(self) -> HaltConfig:
        if not self.at < self.quote <= self.trade:
            raise ValueError(
                f"halt times must satisfy at < quote <= trade, got "
                f"{_fmt(self.at)}, {_fmt(self.quote)}, {_fmt(self.trade)}"
            )
        return self


class SessionConfig(_Strict):
    """The trading day: pre-open call → opening auction → continuous → closing call → closing
    auction."""

    date: dt.date = dt.date(2012, 6, 21)
    pre_open: int = Field(default=_parse_clock("09:00"), description="ns after midnight")
    open: int = Field(default=_parse_clock("09:30"), description="opening auction")
    closing_call: int = Field(default=_parse_clock("15:55"), description="closing call starts")
    close: int = Field(default=_parse_clock("16:00"), description="closing auction")
    halts: list[HaltConfig] = Field(default_factory=list, description="market-wide halts")

    @field_validator("pre_open", "open", "closing_call", "close", mode="before")
    @classmethod
    def _clock(cls, value: Any) -> int:
        if isinstance(value, int) and value > 86400:  # already ns
            return value
        return _parse_clock(value)

    @model_validator(mode="after")
    def _ordered(self) -> SessionConfig:
        if not self.pre_open <= self.open < self.closing_call <= self.close:
            raise ValueError(
                "session times must satisfy pre_open <= open < closing_call <= close, got "
                f"{_fmt(self.pre_open)}, {_fmt(self.open)}, "
                f"{_fmt(self.closing_call)}, {_fmt(self.close)}"
            )
        previous_end = self.open
        for k, halt in enumerate(sorted(self.halts, key=lambda h: h.at)):
            if not previous_end < halt.at or not halt.trade < self.closing_call:
                raise ValueError(
                    f"halts[{k}] ({_fmt(halt.at)} to {_fmt(halt.trade)}) must lie inside "
                    "continuous trading and not overlap another halt"
                )
            previous_end = halt.trade
        return self


def _fmt(ns: int) -> str:
    s = ns / NS_PER_S
    return f"{int(s // 3600):02d}:{int(s % 3600 // 60):02d}:{s % 60:06.3f}"


class InstrumentConfig(_Strict):
    name: str = Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_.\-]+$")
    tick_size: float = Field(default=0.01, gt=0)
    reference_price: float = Field(default=100.0, gt=0, description="currency units")

    @model_validator(mode="after")
    def _on_grid(self) -> InstrumentConfig:
        ticks = self.reference_price / self.tick_size
        if abs(ticks - round(ticks)) > 1e-6:
            raise ValueError(
                f"reference_price {self.reference_price} is not a multiple of "
                f"tick_size {self.tick_size}"
            )
        return self

    @property
    def reference_ticks(self) -> int:
        return round(self.reference_price / self.tick_size)


class LatencyConfig(_Strict):
    """Per-agent latencies: each agent draws its own, uniformly in [min, max] microseconds."""

    order_us: tuple[float, float] = (50.0, 500.0)
    data_us: tuple[float, float] = (50.0, 500.0)

    @field_validator("order_us", "data_us")
    @classmethod
    def _range(cls, value: tuple[float, float]) -> tuple[float, float]:
        lo, hi = value
        if not (math.isfinite(lo) and math.isfinite(hi) and 0 <= lo <= hi):
            raise ValueError(f"expected [min, max] with 0 <= min <= max, got {list(value)}")
        return value


class AgentGroupConfig(_Strict):
    """``count`` agents of one kind on each listed instrument (all instruments by default)."""

    kind: str
    count: int = Field(gt=0, le=1_000_000)
    instruments: list[str] | None = None
    latency: LatencyConfig = LatencyConfig()
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _known_kind(self) -> AgentGroupConfig:
        from agents.registry import AGENT_KINDS

        if self.kind not in AGENT_KINDS:
            raise ValueError(
                f"unknown agent kind {self.kind!r}; known kinds: {sorted(AGENT_KINDS)}"
            )
        max_count = getattr(AGENT_KINDS[self.kind], "max_count", None)
        if max_count is not None and self.count > max_count:
            raise ValueError(f"count: {self.kind!r} allows at most {max_count} per instrument")
        # validate params now so that a bad value is reported before anything runs
        AGENT_KINDS[self.kind].params_model.model_validate(self.params)
        return self

    def parsed_params(self) -> BaseModel:
        from agents.registry import AGENT_KINDS

        return AGENT_KINDS[self.kind].params_model.model_validate(self.params)


class KernelConfig(_Strict):
    step_ms: float = Field(default=1000.0, gt=0, description="agent decision step")
    sync_ms: float = Field(default=60_000.0, gt=0, description="shard synchronisation interval")
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


class OutputConfig(_Strict):
    dir: str = "runs/out"
    snapshot_levels: int = Field(default=5, ge=1, le=50)
    snapshot_every_ms: float = Field(default=1000.0, gt=0)
    plot: bool = True


class RayConfig(_Strict):
    address: str | None = Field(default=None, description="None: start an embedded local Ray")
    num_cpus: int | None = Field(default=None, ge=1)


class SimulationConfig(_Strict):
    name: str = "simulation"
    seed: int = Field(default=0, ge=0, lt=2**63)
    session: SessionConfig = SessionConfig()
    kernel: KernelConfig = KernelConfig()
    instruments: list[InstrumentConfig] = Field(min_length=1)
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
        for k, group in enumerate(self.agents):
            for name in group.instruments or []:
                if name not in names:
                    raise ValueError(
                        f"agents[{k}].instruments: unknown instrument {name!r}; known: {names}"
                    )
        return self

    @property
    def instrument_names(self) -> list[str]:
        return [i.name for i in self.instruments]


def format_validation_error(exc: ValidationError, source: str) -> str:
    lines = [f"invalid config {source}:"]
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        if (
            "input" in err
            and err["type"] not in ("missing",)
            and not isinstance(err["input"], dict)
        ):
            lines.append(f"  {loc}: {msg} (got {err['input']!r})")
        else:
            lines.append(f"  {loc}: {msg}")
    return "\n".join(lines)


def read_yaml(path: str | Path, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """A YAML mapping from ``path`` with dotted-key ``overrides`` applied; ConfigError otherwise."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"config file not found: {path}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"config {path} is not valid YAML: {exc}") from exc
    if raw is None:  # an empty file: every default
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"config {path} must be a YAML mapping, got {type(raw).__name__}")
    return apply_overrides(raw, overrides)


def apply_overrides(raw: dict[str, Any], overrides: dict[str, Any] | None) -> dict[str, Any]:
    """Set dotted keys (``"kernel.shards": 2``) in a raw config mapping, in place."""
    for dotted, value in (overrides or {}).items():
        node = raw
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return raw


def validate_model(model: type[_Model], raw: dict[str, Any], source: str) -> _Model:
    """``model.model_validate(raw)`` with a ConfigError naming each bad field and value."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from None


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> SimulationConfig:
    """Read and validate a simulation config; raise ConfigError with a readable message."""
    return parse_config(read_yaml(path, overrides), str(path))


def parse_config(raw: dict[str, Any], source: str = "<dict>") -> SimulationConfig:
    return validate_model(SimulationConfig, raw, source)
