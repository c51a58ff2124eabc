"""Every numeric field of a simulation config, set to values that break numbers: the config
either loads or fails with a ConfigError naming the field (never another exception), and
a config that loads runs a few seconds of trading without an exception and without a
price or size beyond ``schema.quantities``'s bounds in its events (session times and the
LMM's params are only loaded: they change how long a run takes, not its numbers)."""

from __future__ import annotations

import copy
import types
import typing
from typing import Any

import numpy as np
import pyarrow.compute as pc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nasty_numbers import EXTREMES, NASTY, is_non_finite
from pydantic import BaseModel

from agents.registry import AGENT_KINDS
from mars_ray.schema.events import EventType
from mars_ray.schema.quantities import MAX_SHARES, MAX_TICKS
from mars_ray.schema.validation import ConfigError
from mars_ray.sim.config import (
    InstrumentConfig,
    KernelConfig,
    OutputConfig,
    SessionConfig,
    parse_config,
)
from mars_ray.sim.kernel import run_simulation

BASE: dict[str, Any] = {
    "seed": 1,
    "session": {
        "pre_open": "09:29:58",
        "open": "09:30",
        "closing_call": "09:30:06",
        "close": "09:30:08",
    },
    "kernel": {"step_ms": 500, "sync_ms": 2000},
    "instruments": [{"name": "AAA", "tick_size": 0.01, "reference_price": 100.0}],
    "agents": [
        {"kind": "noise", "count": 3},
        {"kind": "market_maker", "count": 1},
        {"kind": "momentum", "count": 2},
        {"kind": "value", "count": 2},
        {"kind": "twap", "count": 1, "params": {"start": "09:30:01", "end": "09:30:05"}},
        {"kind": "lmm", "count": 1, "params": {"device": "cpu"}},
    ],
    "output": {"plot": False},
}
NO_LMM = [k for k, group in enumerate(BASE["agents"]) if group["kind"] != "lmm"]


def numeric_fields(model: type[BaseModel]) -> list[str]:
    """The fields of ``model`` that hold an int or a float (or None)."""

    def numeric(annotation: Any) -> bool:
        if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
            return any(numeric(a) for a in typing.get_args(annotation) if a is not type(None))
        return annotation in (int, float)

    return [name for name, field in model.model_fields.items() if numeric(field.annotation)]


def config_fields() -> list[tuple[Any, ...]]:
    """The path of every numeric field of BASE, its agents' params and latencies included."""
    paths: list[tuple[Any, ...]] = [("seed",)]
    for section, model in (
        ("session", SessionConfig),
        ("kernel", KernelConfig),
        ("output", OutputConfig),
    ):
        paths += [(section, name) for name in numeric_fields(model)]
    paths += [("instruments", 0, name) for name in numeric_fields(InstrumentConfig)]
    for k, group in enumerate(BASE["agents"]):
        paths += [("agents", k, "count")]
        paths += [("agents", k, "latency", "order_us", i) for i in (0, 1)]
        params = AGENT_KINDS[group["kind"]].params_model
        paths += [("agents", k, "params", name) for name in numeric_fields(params)]
    return paths


FIELDS = config_fields()


def with_field(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    raw = copy.deepcopy(BASE)
    node = raw
    for key in path[:-1]:
        if key == "order_us":
            node[key] = [50.0, 500.0]
        node = node.setdefault(key, {}) if isinstance(key, str) else node[key]
    node[path[-1]] = value
    return raw


def check_config(path: tuple[Any, ...], value: Any) -> bool:
    """Load BASE with ``path`` set to ``value``; run it if it loads. True if it loaded."""
    raw = with_field(path, value)
    name = ".".join(map(str, path))
    try:
        config = parse_config(raw, "fuzz.yaml")
    except ConfigError as exc:  # any other exception fails the test, with its traceback
        assert name in str(exc) or name.rsplit(".", 1)[0] in str(exc), str(exc)
        return False
    assert not is_non_finite(value), f"{name} = {value!r} was accepted"
    if path[0] == "session" or (path[0] == "agents" and path[1] not in NO_LMM):
        return True  # session times set how long a run is (a run from midnight takes
        # seconds), the LMM's params which model runs: both load, neither is run here
    raw["agents"] = [raw["agents"][k] for k in NO_LMM]
    events = run_simulation(parse_config(raw, "fuzz.yaml"), local=True).events
    price = events["price"].to_numpy()
    size = events["size"].to_numpy()
    rejected = pc.equal(events["event_type"], int(EventType.REJECT)).to_numpy(zero_copy_only=False)
    # a reject shows what was sent where int64 holds it (maybe negative); no event wraps
    assert np.all(np.abs(price) <= MAX_TICKS) and np.all(np.abs(size) <= MAX_SHARES)
    assert np.all((price >= 0) | rejected) and np.all((size >= 0) | rejected)
    assert config is not None
    return True


def test_every_numeric_field_loads_or_is_named_for_each_extreme() -> None:
    assert len(FIELDS) > 40  # the walk found the fields
    for path in FIELDS:
        for value in EXTREMES:
            check_config(path, value)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(FIELDS), NASTY)
def test_fuzzed_configs_load_or_fail_by_name(path: tuple[Any, ...], value: Any) -> None:
    check_config(path, value)
