"""``mars-ray simulate CONFIG``: run a session, write Parquet + a plot, print a summary."""

from __future__ import annotations

import time
from pathlib import Path

import click
from tqdm import tqdm

from mars_ray.schema.clock import NS_PER_S
from mars_ray.schema.validation import ConfigError
from mars_ray.sim.config import load_config


@click.command()
@click.argument("config", type=click.Path(dir_okay=False))
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    help="Output folder (default: output.dir).",
)
@click.option("--seed", type=click.IntRange(min=0), help="Override the config's seed.")
@click.option("--shards", type=click.IntRange(min=1), help="Override kernel.shards.")
@click.option("--no-plot", is_flag=True, help="Skip the PNG.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def simulate(
    config: str,
    out_dir: str | None,
    seed: int | None,
    shards: int | None,
    no_plot: bool,
    quiet: bool,
) -> None:
    """Run the simulation described by the YAML file CONFIG on Ray (embedded local by default)."""
    overrides = {}
    if seed is not None:
        overrides["seed"] = seed
    if shards is not None:
        overrides["kernel.shards"] = shards
    if out_dir is not None:
        overrides["output.dir"] = out_dir
    try:
        cfg = load_config(config, overrides)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None

    # imported here so that `mars-ray --help` and config errors stay fast
    from mars_ray.sim.kernel import run_simulation
    from mars_ray.sim.output import format_table, summary_rows, write_run

    session = cfg.session
    total_s = (session.close - session.pre_open) / NS_PER_S
    bar = tqdm(total=round(total_s), unit="sim-s", disable=quiet, desc=cfg.name, dynamic_ncols=True)

    def on_progress(t: int, totals: dict) -> None:
        # update() redraws at most every mininterval: barriers' reports come in bursts
        bar.set_postfix(
            events=f"{totals['events']:,}", trades=f"{totals['trades']:,}", refresh=False
        )
        bar.update(round((t - session.pre_open) / NS_PER_S) - bar.n)

    backends = {}
    if any(getattr(g.parsed_params(), "backend", None) == "serve" for g in cfg.agents):
        from mars_ray.serve.generator import SERVE_BACKENDS  # torch: only when it is used

        backends = SERVE_BACKENDS
    result = run_simulation(cfg, on_progress=on_progress, backends=backends)
    bar.close()
    out = Path(cfg.output.dir)
    t0 = time.perf_counter()
    paths = write_run(out, cfg, result.events, result.snapshots)
    if cfg.output.plot and not no_plot:
        from mars_ray.reports.run_plot import plot_run

        paths["plot"] = plot_run(cfg, result.events, result.snapshots, out / "run.png")
    write_s = time.perf_counter() - t0

    rows = summary_rows(cfg, result.events)
    click.echo("")
    click.echo(format_table(rows))
    click.echo("")
    n_trades = sum(r["trades"] for r in rows)
    click.echo(
        f"events {result.events.num_rows:,}   trades {n_trades:,}   "
        f"simulated {total_s:,.0f} s in {result.wall_seconds:,.1f} s wall   "
        f"{result.events_per_second:,.0f} events/s   "
        f"(shards {cfg.kernel.shards}, trajectories {cfg.kernel.trajectories}, "
        f"writing {write_s:.1f} s)"
    )
    for kind, path in paths.items():
        click.echo(f"{kind:>9}: {path}")
