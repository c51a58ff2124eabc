"""Config validation: every error names the field and the value."""

from __future__ import annotations

import pytest

from mars_ray.schema.validation import ConfigError
from mars_ray.sim.config import load_config, parse_config

BASE = {"instruments": [{"name": "AAA"}, {"name": "BBB"}]}


def with_(**changes) -> dict:
    raw = {**BASE}
    raw.update(changes)
    return raw


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            with_(kernel={"shards": 0}),
            "kernel.shards: Input should be greater than or equal to 1 (got 0)",
        ),
        (with_(kernel={"shards": 3}), "kernel.shards (3) exceeds the number of instruments (2)"),
        (with_(kernel={"step_ms": 1000, "sync_ms": 1500}), "must be a whole multiple of step_ms"),
        (with_(seed=-1), "seed: Input should be greater than or equal to 0 (got -1)"),
        (with_(instruments=[{"name": "AAA", "tick_size": -0.01}]), "instruments.0.tick_size"),
        (
            with_(instruments=[{"name": "AAA", "reference_price": 100.005}]),
            "not a multiple of tick_size",
        ),
        (with_(instruments=[{"name": "AAA"}, {"name": "AAA"}]), "repeated: ['AAA']"),
        (with_(instruments=[]), "instruments: List should have at least 1 item"),
        (with_(session={"open": "25:00"}), "session.open: not a time of day: '25:00'"),
        (with_(session={"open": "08:00"}), "pre_open <= open < closing_call <= close"),
        (with_(agents=[{"kind": "nope", "count": 3}]), "unknown agent kind 'nope'"),
        (
            with_(agents=[{"kind": "noise", "count": 0}]),
            "agents.0.count: Input should be greater than 0 (got 0)",
        ),
        (
            with_(agents=[{"kind": "noise", "count": 1, "instruments": ["ZZZ"]}]),
            "unknown instrument 'ZZZ'",
        ),
        (
            with_(agents=[{"kind": "noise", "count": 1, "latency": {"order_us": [5, 1]}}]),
            "agents.0.latency.order_us",
        ),
        (
            with_(agents=[{"kind": "noise", "count": 5, "params": {"rate": -1}}]),
            "agents.0.params.rate: Input should be greater than 0 (got -1)",
        ),
        (
            with_(agents=[{"kind": "lmm", "count": 1, "params": {"backend": "gpu"}}]),
            "agents.0.params.backend: Input should be 'local' or 'serve' (got 'gpu')",
        ),
        (
            with_(agents=[{"kind": "lmm", "count": 2}]),
            "agents.0.count: 'lmm' allows at most 1 per instrument (got 2)",
        ),
        (with_(typo_field=1), "typo_field: Extra inputs are not permitted"),
        # numbers out of the bounds of schema.quantities, or not finite
        (
            with_(instruments=[{"name": "AAA", "reference_price": 1e300}]),
            "instruments.0.reference_price: Input should be less than or equal to "
            "1000000000000000 (got 1e+300)",
        ),
        (
            with_(instruments=[{"name": "AAA", "reference_price": 1e12}]),
            "instruments.0.reference_price: is 1e+14 ticks of 0.01; a price is 1 to "
            "1,000,000,000 ticks (got 1000000000000.0)",
        ),
        (
            with_(instruments=[{"name": "AAA", "tick_size": 1e-300}]),
            "instruments.0.tick_size: Input should be greater than or equal to 0.000000001 "
            "(got 1e-300)",
        ),
        (
            with_(instruments=[{"name": "AAA", "reference_price": float("nan")}]),
            "instruments.0.reference_price: Input should be a finite number (got nan)",
        ),
        (
            with_(kernel={"step_ms": float("inf")}),
            "kernel.step_ms: Input should be a finite number (got inf)",
        ),
        (
            with_(agents=[{"kind": "market_maker", "count": 1, "params": {"quote_size": 10**10}}]),
            "agents.0.params.quote_size: Input should be less than or equal to 1000000000 "
            "(got 10000000000)",
        ),
        (
            with_(agents=[{"kind": "market_maker", "count": 1, "params": {"half_spread": 1e300}}]),
            "agents.0.params.half_spread: Input should be less than or equal to 1000000000 "
            "(got 1e+300)",
        ),
    ],
)
def test_errors_name_field_and_value(raw, expected):
    with pytest.raises(ConfigError) as info:
        parse_config(raw, "test.yaml")
    assert expected in str(info.value)
    assert str(info.value).startswith("invalid config test.yaml:")


def test_agent_params_are_validated_by_their_kind():
    with pytest.raises(ConfigError) as info:
        parse_config(with_(agents=[{"kind": "noise", "count": 5, "params": {"no_such_param": 1}}]))
    assert "no_such_param" in str(info.value)


def test_session_clock_strings():
    cfg = parse_config(
        with_(
            session={
                "pre_open": "09:00",
                "open": "09:30:00",
                "closing_call": "15:55",
                "close": "16:00",
            }
        )
    )
    assert cfg.session.open == 9.5 * 3600 * 10**9
    assert cfg.session.close == 16 * 3600 * 10**9


def test_load_config_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("instruments: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must be a YAML mapping"):
        load_config(listy)


def test_overrides_apply_dotted_paths(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("instruments: [{name: AAA}, {name: BBB}]\n")
    cfg = load_config(path, {"seed": 9, "kernel.shards": 2})
    assert cfg.seed == 9 and cfg.kernel.shards == 2
