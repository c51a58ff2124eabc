"""``mars-ray rl ...``: train interacting trading policies on the simulated market."""

from __future__ import annotations

import click

from mars_ray.schema.validation import ConfigError


@click.group()
def rl() -> None:
    """Multi-agent reinforcement learning on the simulator's market (docs/rl.md)."""


@rl.command("train")
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--out", "out_dir", type=click.Path(file_okay=False), help="Run folder.")
@click.option("--iterations", type=click.IntRange(min=1), help="Override training.iterations.")
@click.option("--resume", is_flag=True, help="Continue the run in OUT from its checkpoint.")
def train(config: str, out_dir: str | None, iterations: int | None, resume: bool) -> None:
    """Multi-agent PPO on the market of CONFIG, one policy per role.

    Prints a line per iteration (mean episode return per policy, env steps/s) and writes
    OUT/checkpoint/, OUT/progress.jsonl, OUT/curve_ROLE.png and OUT/policies/ROLE.pt.
    """
    from mars_ray.rl.config import load_rl_config
    from mars_ray.rl.train import train as run_training

    overrides = {"training.iterations": iterations} if iterations is not None else None
    try:
        cfg = load_rl_config(config, overrides)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    out = out_dir or f"runs/rl/{cfg.name}"
    click.echo(f"{cfg.name}: training {', '.join(sorted({a.role for a in cfg.env.agents}))}")
    try:
        history = run_training(
            cfg, out, resume=resume, on_iteration=lambda it: click.echo(it.line())
        )
    except FileNotFoundError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{len(history)} iterations; checkpoint, curves and policies in {out}")
