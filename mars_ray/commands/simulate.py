"""``mars-ray simulate CONFIG``: run a session into a run folder, plot it, print a summary."""

from __future__ import annotations

import time
from pathlib import Path

import click
from tqdm import tqdm

from mars_ray.commands.signals import stop_on_signals
from mars_ray.schema.clock import NS_PER_S
from mars_ray.schema.validation import ConfigError
from mars_ray.sim.config import SimulationConfig, load_config


@click.command()
@click.argument("config", type=click.Path(dir_okay=False), required=False)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    help="Output folder (default: output.dir).",
)
@click.option("--seed", type=click.IntRange(min=0), help="Override the config's seed.")
@click.option("--shards", type=click.IntRange(min=1), help="Override kernel.shards.")
@click.option(
    "--resume",
    "resume_dir",
    type=click.Path(file_okay=False, exists=True),
    help="Continue the unfinished run in this folder from its shards' last checkpoints.",
)
@click.option("--no-plot", is_flag=True, help="Skip the PNG.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def simulate(
    config: str | None,
    out_dir: str | None,
    seed: int | None,
    shards: int | None,
    resume_dir: str | None,
    no_plot: bool,
    quiet: bool,
) -> None:
    """Run the simulation described by the YAML file CONFIG on Ray (embedded local by default).

    The shards write the events and book snapshots as they go into the output folder
    (events/ and snapshots/, Parquet datasets; run.json says how far the run got), with
    checkpoints of their state: a lost shard is rebuilt, and a run stopped by Ctrl-C or a
    crash continues with --resume FOLDER (no CONFIG: the run's own).
    """
    from mars_ray.sim.run_files import RunFilesError
    from mars_ray.sim.run_log import RunLog

    if resume_dir is not None:
        if config is not None or seed is not None or shards is not None or out_dir is not None:
            raise click.UsageError(
                "--resume takes the run's own config: give no CONFIG or overrides"
            )
        try:
            cfg = RunLog.open(Path(resume_dir)).config
        except (RunFilesError, ConfigError) as exc:
            raise click.ClickException(str(exc)) from None
        out = Path(resume_dir)
    else:
        if config is None:
            raise click.UsageError("give a CONFIG (or --resume FOLDER)")
        cfg = load(config, seed, shards, out_dir)
        out = Path(cfg.output.dir)

    # imported here so that `mars-ray --help` and config errors stay fast
    from mars_ray.sim.kernel import run_simulation, uses_served_model
    from mars_ray.sim.output import format_table

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
    if uses_served_model(cfg):
        from mars_ray.serve.generator import SERVE_BACKENDS  # torch: only when it is used

        backends = SERVE_BACKENDS
    try:
        # SIGINT even where the shell started us with it ignored (a script's `&` job), and
        # SIGTERM, stop the run resumably
        with stop_on_signals():
            result = run_simulation(
                cfg,
                on_progress=on_progress,
                backends=backends,
                out=out,
                resume=resume_dir is not None,
            )
    except KeyboardInterrupt:
        bar.close()
        click.echo(f"\ninterrupted: continue with  mars-ray simulate --resume {out}", err=True)
        raise SystemExit(130) from None
    bar.close()
    paths = {"run": out / "run.json", "events": out / "events", "snapshots": out / "snapshots"}
    t0 = time.perf_counter()
    if cfg.output.plot and not no_plot:
        paths["plot"] = plot(cfg, out)
    plot_s = time.perf_counter() - t0

    rows = result.summary
    click.echo("")
    click.echo(format_table(rows))
    click.echo("")
    n_trades = sum(r["trades"] for r in rows)
    click.echo(
        f"events {result.event_count:,}   trades {n_trades:,}   "
        f"simulated {total_s:,.0f} s in {result.wall_seconds:,.1f} s wall   "
        f"{result.events_per_second:,.0f} events/s   "
        f"(shards {cfg.kernel.shards}, trajectories {cfg.kernel.trajectories}, "
        f"plot {plot_s:.1f} s)"
    )
    for recovery in result.recoveries:
        click.echo(
            f"shard {recovery['shard']} was lost and rebuilt from its checkpoint "
            f"({recovery['seconds']:.1f} s)"
        )
    for kind, path in paths.items():
        click.echo(f"{kind:>9}: {path}")


def load(
    config: str, seed: int | None, shards: int | None, out_dir: str | None
) -> SimulationConfig:
    overrides: dict[str, object] = {}
    if seed is not None:
        overrides["seed"] = seed
    if shards is not None:
        overrides["kernel.shards"] = shards
    if out_dir is not None:
        overrides["output.dir"] = out_dir
    try:
        return load_config(config, overrides)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def plot(cfg: SimulationConfig, out: Path) -> Path:
    """run.png from the run folder: trajectory 0's trades and snapshots only."""
    import pyarrow.compute as pc

    from mars_ray.reports.run_plot import plot_run
    from mars_ray.sim.run_files import read_events, read_snapshots

    first = pc.field("trajectory_id") == 0
    return plot_run(
        cfg, read_events(out, filter=first), read_snapshots(out, first), out / "run.png"
    )
