"""Writing a run: Parquet files that carry their config and seed, and a summary."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mars_ray import __version__
from mars_ray.schema.events import EventType, with_metadata
from mars_ray.sim.config import SimulationConfig

EVENTS_FILE = "events.parquet"
TRADES_FILE = "trades.parquet"
SNAPSHOTS_FILE = "snapshots.parquet"


def run_metadata(config: SimulationConfig) -> dict[str, str]:
    return {
        "mars_ray.version": __version__,
        "mars_ray.seed": str(config.seed),
        "mars_ray.config": json.dumps(config.model_dump(mode="json"), sort_keys=True),
        "mars_ray.session_date": config.session.date.isoformat(),
        "mars_ray.tick_sizes": json.dumps({i.name: i.tick_size for i in config.instruments}),
    }


def trades_of(events: pa.Table) -> pa.Table:
    return events.filter(pc.equal(events["event_type"], int(EventType.TRADE)))


def write_run(
    out_dir: str | Path, config: SimulationConfig, events: pa.Table, snapshots: pa.Table
) -> dict:
    """Write events, trades and snapshots; return the paths written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    meta = run_metadata(config)
    paths = {
        "events": out / EVENTS_FILE,
        "trades": out / TRADES_FILE,
        "snapshots": out / SNAPSHOTS_FILE,
    }
    pq.write_table(with_metadata(events, meta), paths["events"], compression="zstd")
    pq.write_table(with_metadata(trades_of(events), meta), paths["trades"], compression="zstd")
    pq.write_table(with_metadata(snapshots, meta), paths["snapshots"], compression="zstd")
    return paths


def read_run_config(path: str | Path) -> dict:
    """The config a Parquet file of a run was made with (as stored in its metadata)."""
    meta = pq.read_schema(path).metadata or {}
    raw = meta.get(b"mars_ray.config")
    if raw is None:
        raise ValueError(
            f"{path} carries no mars_ray.config metadata; not written by mars-ray simulate"
        )
    return json.loads(raw)


def summary_rows(config: SimulationConfig, events: pa.Table) -> list[dict]:
    """Per instrument: events, trades, volume, rejects, VWAP and last price (currency)."""
    rows = []
    etype = events["event_type"].to_numpy()
    inst = events["instrument"].to_numpy(zero_copy_only=False)
    size = events["size"].to_numpy()
    price = events["price"].to_numpy()
    for spec in config.instruments:
        mine = inst == spec.name
        trades = mine & (etype == int(EventType.TRADE))
        volume = int(size[trades].sum())
        vwap = (
            float((price[trades] * size[trades]).sum() / volume * spec.tick_size)
            if volume
            else float("nan")
        )
        last = float(price[trades][-1] * spec.tick_size) if trades.any() else float("nan")
        rows.append(
            {
                "instrument": spec.name,
                "events": int(mine.sum()),
                "trades": int(trades.sum()),
                "volume": volume,
                "rejects": int((mine & (etype == int(EventType.REJECT))).sum()),
                "vwap": vwap,
                "last": last,
            }
        )
    return rows


def format_table(rows: list[dict]) -> str:
    if not rows:
        return ""
    headers = list(rows[0])

    def cell(v) -> str:
        if isinstance(v, float):
            return "-" if np.isnan(v) else f"{v:,.4f}" if abs(v) < 1000 else f"{v:,.2f}"
        if isinstance(v, int):
            return f"{v:,}"
        return str(v)

    table = [[cell(r[h]) for h in headers] for r in rows]
    widths = [max(len(h), *(len(row[i]) for row in table)) for i, h in enumerate(headers)]
    line = "  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in table]
    return "\n".join(out)
