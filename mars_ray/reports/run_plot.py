"""Run plots: one PNG per run, a row per instrument (trajectory 0).

Columns: mid price with the bid-ask spread as a band, traded volume per
minute, and visible depth (shares on the top levels of each side).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mars_ray.schema.clock import NS_PER_S
from mars_ray.schema.events import EventType
from mars_ray.sim.config import SimulationConfig


def _hours(ns: np.ndarray) -> np.ndarray:
    return ns / NS_PER_S / 3600.0


def plot_run(
    config: SimulationConfig, events: pa.Table, snapshots: pa.Table, path: str | Path
) -> Path:
    levels = config.output.snapshot_levels
    fig, axes = plt.subplots(
        len(config.instruments), 3, figsize=(15, 3.2 * len(config.instruments)), squeeze=False
    )
    traj0_events = events.filter(pc.equal(events["trajectory_id"], 0))
    traj0_snaps = snapshots.filter(pc.equal(snapshots["trajectory_id"], 0))
    for row, spec in enumerate(config.instruments):
        ax_px, ax_vol, ax_depth = axes[row]
        snap = traj0_snaps.filter(pc.equal(traj0_snaps["instrument"], spec.name))
        t = _hours(snap["time_ns"].to_numpy())
        ask = snap["ask_price_1"].to_numpy().astype(float) * spec.tick_size
        bid = snap["bid_price_1"].to_numpy().astype(float) * spec.tick_size
        both = (ask > 0) & (bid > 0) & (ask > bid)
        mid = np.where(both, (ask + bid) / 2, np.nan)
        ax_px.fill_between(
            t,
            np.where(both, bid, np.nan),
            np.where(both, ask, np.nan),
            color="tab:blue",
            alpha=0.25,
            linewidth=0,
            label="spread",
        )
        ax_px.plot(t, mid, color="tab:blue", linewidth=0.8, label="mid")
        ax_px.set_title(f"{spec.name}: mid price and spread")
        ax_px.set_ylabel("price")
        ax_px.legend(loc="upper left", fontsize=7)

        ev = traj0_events.filter(pc.equal(traj0_events["instrument"], spec.name))
        trades = ev.filter(pc.equal(ev["event_type"], int(EventType.TRADE)))
        tt = trades["time_ns"].to_numpy()
        if len(tt):
            edges = np.arange(
                config.session.pre_open, config.session.close + 60 * NS_PER_S, 60 * NS_PER_S
            )
            volume, _ = np.histogram(tt, bins=edges, weights=trades["size"].to_numpy())
            ax_vol.bar(_hours(edges[:-1]), volume, width=1 / 60, align="edge", color="tab:green")
        ax_vol.set_title(f"{spec.name}: traded volume per minute")
        ax_vol.set_ylabel("shares")

        bid_depth = sum(snap[f"bid_size_{k}"].to_numpy() for k in range(1, levels + 1))
        ask_depth = sum(snap[f"ask_size_{k}"].to_numpy() for k in range(1, levels + 1))
        ax_depth.plot(t, bid_depth, color="tab:green", linewidth=0.8, label=f"bid (top {levels})")
        ax_depth.plot(t, ask_depth, color="tab:red", linewidth=0.8, label=f"ask (top {levels})")
        ax_depth.set_title(f"{spec.name}: visible depth")
        ax_depth.set_ylabel("shares")
        ax_depth.legend(loc="upper left", fontsize=7)
        for ax in axes[row]:
            ax.set_xlabel("hour of day")
            for clock in (config.session.open, config.session.closing_call):
                ax.axvline(clock / NS_PER_S / 3600.0, color="grey", linewidth=0.6, linestyle=":")
    fig.suptitle(f"{config.name} (seed {config.seed}, trajectory 0)")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
