"""What `mars-ray serve` runs with: YAML validated by pydantic, errors naming field and value.

The same model backs ``configs/serve.yaml`` (the ``args`` of ``serve run``) and
``mars-ray serve CONFIG``; every field has a default, so an empty file (or none)
serves the shipped model on 127.0.0.1:8000.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from mars_ray.schema.validation import (
    ConfigError,
    StrictModel,
    apply_overrides,
    read_yaml,
    validate_model,
)

APP_NAME = "mars-ray"
MODEL_DEPLOYMENT = "LMMModel"
API_DEPLOYMENT = "TrajectoryAPI"


def _queue_limit(value: int) -> int:
    if value == 0:  # Serve's own rule, said here with the field's name
        raise ValueError("must be -1 (no limit) or a positive integer, got 0")
    return value


class ModelSettings(StrictModel):
    checkpoint: str | None = Field(default=None, description="default: the shipped model")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int = Field(default=1, ge=1, le=256, description="torch CPU threads")
    max_batch_size: int = Field(
        default=64, ge=1, le=4096, description="requests (simulation steps) per forward pass"
    )
    batch_wait_timeout_s: float = Field(
        default=0.03,
        ge=0,
        le=10,
        description="how long a batch waits for the steps of active sessions (a step in the "
        "last second) that have not sent one yet",
    )
    max_rows: int = Field(
        default=8192, ge=16, le=1_000_000, description="KV-cache rows (books) open at once"
    )
    session_ttl_s: float = Field(
        default=600.0, gt=0, description="an idle generation session is reclaimed after this"
    )
    max_ongoing_requests: int = Field(default=256, ge=1)
    max_queued_requests: int = Field(default=1024, ge=-1, description="-1: unbounded")

    _queue = field_validator("max_queued_requests")(lambda cls, v: _queue_limit(v))


class Limits(StrictModel):
    """Request sizes the API accepts (bigger requests get 422 naming the field)."""

    max_trajectories: int = Field(default=64, ge=1, le=100_000)
    max_horizon_orders: int = Field(default=20_000, ge=1)
    max_horizon_seconds: float = Field(default=3600.0, gt=0, le=86_400)
    max_injected_orders: int = Field(default=1000, ge=0)
    max_book_levels: int = Field(default=50, ge=1, le=1000)
    max_snapshot_levels: int = Field(default=10, ge=1, le=50)


class ApiSettings(StrictModel):
    max_ongoing_requests: int = Field(
        default=8, ge=1, description="trajectory requests running at once per replica"
    )
    max_queued_requests: int = Field(
        default=16, ge=-1, description="requests waiting beyond that; more get 503"
    )
    retry_after_s: float = Field(default=1.0, gt=0, description="Retry-After on a 503")
    max_body_bytes: int = Field(
        default=4_000_000,
        ge=1024,
        le=1 << 30,
        description="larger request bodies get 413 before they are read or parsed",
    )

    _queue = field_validator("max_queued_requests")(lambda cls, v: _queue_limit(v))
    num_replicas: int = Field(default=1, ge=1, le=1024)


class HttpSettings(StrictModel):
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)


class ServeSettings(StrictModel):
    app_name: str = Field(default=APP_NAME, min_length=1)
    route_prefix: str = Field(default="/", pattern=r"^/")
    model: ModelSettings = ModelSettings()
    api: ApiSettings = ApiSettings()
    limits: Limits = Limits()
    http: HttpSettings = HttpSettings()

    @model_validator(mode="after")
    def _fits(self) -> ServeSettings:
        if self.limits.max_trajectories > self.model.max_rows:
            raise ValueError(
                f"limits.max_trajectories ({self.limits.max_trajectories}) exceeds "
                f"model.max_rows ({self.model.max_rows}): such a request could never run"
            )
        return self


def parse_settings(raw: dict[str, Any] | None, source: str = "<dict>") -> ServeSettings:
    return validate_model(ServeSettings, raw or {}, source)


IMPORT_PATH = "mars_ray.serve.app:build_app"


def load_settings(
    path: str | Path | None, overrides: dict[str, Any] | None = None
) -> ServeSettings:
    """Settings from a plain settings file, or from a Serve config file (``serve run``'s, like
    configs/serve.yaml): there, the mars-ray application's ``args`` plus ``http_options``."""
    if path is None:
        return parse_settings(apply_overrides({}, overrides), "<defaults>")
    raw = read_yaml(path)
    source = str(path)
    if "applications" in raw:
        apps = raw["applications"] if isinstance(raw["applications"], list) else []
        ours = [a for a in apps if isinstance(a, dict) and a.get("import_path") == IMPORT_PATH]
        if len(ours) != 1:
            raise ConfigError(
                f"invalid config {path}: applications must hold exactly one with "
                f"import_path {IMPORT_PATH!r}, found {len(ours)}"
            )
        http = raw.get("http_options") or {}
        settings = dict(ours[0].get("args") or {})
        settings.setdefault("app_name", ours[0].get("name", APP_NAME))
        settings.setdefault("route_prefix", ours[0].get("route_prefix", "/"))
        settings.setdefault(
            "http", {k: http[k] for k in ("host", "port") if isinstance(http, dict) and k in http}
        )
        raw, source = settings, f"{path} (applications[{apps.index(ours[0])}].args)"
    return parse_settings(apply_overrides(raw, overrides), source)
