"""Config files: YAML mappings validated by pydantic models, with errors that name each bad
field and value (``agents.0.params.rate: ... (got -1)``), never a traceback."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

Model = TypeVar("Model", bound=BaseModel)


class ConfigError(ValueError):
    """A config that cannot be used; the message names the field and the value."""


class StrictModel(BaseModel):
    """Base of every config model: unknown keys are errors, validated values are frozen, and
    a float is finite (NaN or inf in a config is a typo that would surface deep in a run)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


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


def validate_model(model: type[Model], raw: dict[str, Any], source: str) -> Model:
    """``model.model_validate(raw)`` with a ConfigError naming each bad field and value."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from None
