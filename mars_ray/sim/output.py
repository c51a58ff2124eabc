"""What a run says about itself: the metadata every file carries, and its summary table."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from mars_ray import __version__
from mars_ray.sim.config import SimulationConfig


def run_metadata(config: SimulationConfig, run_id: str | None = None) -> dict[str, str]:
    meta = {
        "mars_ray.version": __version__,
        "mars_ray.seed": str(config.seed),
        "mars_ray.config": json.dumps(config.model_dump(mode="json"), sort_keys=True),
        "mars_ray.session_date": config.session.date.isoformat(),
        "mars_ray.tick_sizes": json.dumps({i.name: i.tick_size for i in config.instruments}),
    }
    if run_id is not None:
        meta["mars_ray.run_id"] = run_id
    return meta


def read_run_config(path: str | Path) -> dict:
    """The config a Parquet file of a run was made with (as stored in its metadata)."""
    meta = pq.read_schema(path).metadata or {}
    raw = meta.get(b"mars_ray.config")
    if raw is None:
        raise ValueError(
            f"{path} carries no mars_ray.config metadata; not written by mars-ray simulate"
        )
    return json.loads(raw)


def summary_rows(
    config: SimulationConfig, books: Iterable[tuple[tuple[int, int], Any]]
) -> list[dict]:
    """Per instrument, over all trajectories: events, trades, volume, rejects, VWAP and the
    last price (currency; the last trade of the highest trajectory that traded).

    ``books`` are ((trajectory, instrument index), stats) pairs: the shards' ``BookStats``,
    which count what settled, so that the driver never needs the events themselves.
    """
    totals: dict[int, dict[str, Any]] = {}
    for (_, inst), stats in sorted(books, key=lambda item: item[0]):
        row = totals.setdefault(
            inst, {"events": 0, "trades": 0, "volume": 0, "notional": 0, "rejects": 0}
        )
        for field in ("events", "trades", "volume", "notional", "rejects"):
            row[field] += getattr(stats, field)
        if stats.last is not None:
            row["last"] = stats.last
    rows = []
    for k, spec in enumerate(config.instruments):
        row = totals.get(k, {"events": 0, "trades": 0, "volume": 0, "notional": 0, "rejects": 0})
        volume = row["volume"]
        rows.append(
            {
                "instrument": spec.name,
                "events": row["events"],
                "trades": row["trades"],
                "volume": volume,
                "rejects": row["rejects"],
                "vwap": row["notional"] / volume * spec.tick_size if volume else math.nan,
                "last": row["last"] * spec.tick_size if "last" in row else math.nan,
            }
        )
    return rows


def summary_json(rows: list[dict]) -> list[dict]:
    """``summary_rows`` as JSON can hold them (NaN as null)."""
    return [
        {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
        for row in rows
    ]


def format_table(rows: list[Mapping[str, Any]]) -> str:
    if not rows:
        return ""
    headers = list(rows[0])

    def cell(v: Any) -> str:
        if v is None or (isinstance(v, float) and np.isnan(v)):
            return "-"
        if isinstance(v, float):
            return f"{v:,.4f}" if abs(v) < 1000 else f"{v:,.2f}"
        if isinstance(v, int):
            return f"{v:,}"
        return str(v)

    table = [[cell(r[h]) for h in headers] for r in rows]
    widths = [max(len(h), *(len(row[i]) for row in table)) for i, h in enumerate(headers)]
    line = "  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in table]
    return "\n".join(out)
