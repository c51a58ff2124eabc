"""``mars-ray rl ...``: train interacting trading policies on the simulated market."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from mars_ray.schema.validation import ConfigError

if TYPE_CHECKING:
    from mars_ray.rl.config import RLConfig


@click.group()
def rl() -> None:
    """Multi-agent reinforcement learning on the simulator's market (docs/rl.md)."""


def load(config: str, overrides: dict[str, object | None]) -> RLConfig:
    """The RL config with the options given on the command line; a ClickException naming
    the field when it is invalid."""
    from mars_ray.rl.config import load_rl_config

    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return load_rl_config(config, given)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


@rl.command("train")
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--out", "out_dir", type=click.Path(file_okay=False), help="Run folder.")
@click.option("--iterations", type=click.IntRange(min=1), help="Override training.iterations.")
@click.option(
    "--max-minutes",
    type=click.FloatRange(min=0, min_open=True),
    help="Override training.max_minutes (stop after the iteration past this wall time).",
)
@click.option("--resume", is_flag=True, help="Continue the run in OUT from its checkpoint.")
def train(
    config: str,
    out_dir: str | None,
    iterations: int | None,
    max_minutes: float | None,
    resume: bool,
) -> None:
    """Multi-agent PPO on the market of CONFIG, one policy per role.

    Prints a line per iteration (mean episode return per policy, env steps/s) and writes
    OUT/checkpoint/, OUT/progress.jsonl, OUT/curve_ROLE.png and OUT/policies/ROLE.pt.
    With training.validation, also a line per validation, OUT/validation.jsonl and
    OUT/validation.png; OUT/policies/ then holds the best validation's policies and
    OUT/last/ the last iteration's.
    """
    from pathlib import Path

    from mars_ray.rl.train import NothingToResume, kept_validation, read_validations
    from mars_ray.rl.train import train as run_training

    cfg = load(config, {"training.iterations": iterations, "training.max_minutes": max_minutes})
    out = out_dir or f"runs/rl/{cfg.name}"
    click.echo(f"{cfg.name}: training {', '.join(sorted({a.role for a in cfg.env.agents}))}")
    try:
        history = run_training(
            cfg,
            out,
            resume=resume,
            on_iteration=lambda it: click.echo(it.line()),
            on_validation=lambda v: click.echo(v.line()),
        )
    except NothingToResume as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{len(history)} iterations; checkpoint, curves and policies in {out}")
    validations = read_validations(Path(out))
    if validations:
        best = kept_validation(validations)
        click.echo(
            f"policies/ holds iteration {best.iteration}'s (best on validation: "
            f"{best.role} {best.diff_mean:+.3f}); last/ the last iteration's"
        )


@rl.command("evaluate")
@click.argument("run", required=False, type=click.Path(file_okay=False))
@click.option("--episodes", type=click.IntRange(min=2), default=200, show_default=True)
@click.option("--seed-start", type=click.IntRange(min=0), default=1_000_000, show_default=True)
@click.option("--json", "json_out", type=click.Path(dir_okay=False), help="Write the report.")
@click.option("--plot", "plot_out", type=click.Path(dir_okay=False), help="Write a PNG.")
def evaluate(
    run: str | None, episodes: int, seed_start: int, json_out: str | None, plot_out: str | None
) -> None:
    """Each trained policy of RUN (a `mars-ray rl train` folder; default the shipped
    policies, in the market they trained in) against its baseline on held-out seeds,
    paired by seed, with a bootstrap 95% interval, and a cross-play table."""
    import json
    import shlex
    from pathlib import Path

    from agents.rl_policy import SHIPPED
    from mars_ray.commands.provenance import provenance
    from mars_ray.rl.config import RLConfig
    from mars_ray.rl.evaluate import evaluate as run_evaluation
    from mars_ray.rl.evaluate import load_policies, plot_report, write_report
    from mars_ray.rl.train import CONFIG
    from mars_ray.schema.validation import validate_model

    folder = Path(run) if run is not None else SHIPPED
    try:
        raw = json.loads((folder / CONFIG).read_text())
        cfg = validate_model(RLConfig, raw, str(folder / CONFIG))
        roles = sorted({g.role for g in cfg.env.agents})
        policies = load_policies(folder, roles)
    except (OSError, ConfigError) as exc:
        raise click.ClickException(
            f"{folder} is not a usable run folder (pass the folder of a `mars-ray rl train` "
            f"run): {exc}"
        ) from None
    words = ["mars-ray", "rl", "evaluate", *([run] if run else [])]
    words += ["--episodes", str(episodes), "--seed-start", str(seed_start)]
    words += [w for flag, v in (("--json", json_out), ("--plot", plot_out)) if v for w in (flag, v)]
    report, trace = run_evaluation(cfg.env, policies, episodes, seed_start)
    click.echo(f"{'role':<14}{'trained':>10}{'baseline':>10}{'diff':>10}  95% CI         unit")
    for role, row in report["policies"].items():
        lo, hi = row["diff_ci95"]
        click.echo(
            f"{role:<14}{row['trained_mean']:>10.3f}{row['baseline_mean']:>10.3f}"
            f"{row['diff_mean']:>10.3f}  [{lo:.3f}, {hi:.3f}]  {row['unit']}"
        )
    click.echo("cross-play (mean return of the trained policy):")
    for role, row in report["cross_play"].items():
        click.echo(
            f"  {role:<14} with trained: {row['with_trained']:.3f}   "
            f"with baselines: {row['with_baseline']:.3f}"
        )
    if json_out:
        write_report({**report, **provenance(shlex.join(words))}, Path(json_out))
    if plot_out:
        plot_report(report, trace, Path(plot_out))


@rl.command("tune")
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--out", "out_dir", type=click.Path(file_okay=False), help="Sweep folder.")
@click.option("--samples", type=click.IntRange(min=1), help="Override tune.num_samples.")
@click.option("--iterations", type=click.IntRange(min=1), help="Override training.iterations.")
def tune(config: str, out_dir: str | None, samples: int | None, iterations: int | None) -> None:
    """A Ray Tune sweep (ASHA) over CONFIG's `tune.search`: a results table (printed and
    OUT/results.csv) and the best trial's checkpoint."""
    from mars_ray.rl.sweep import sweep

    cfg = load(config, {"tune.num_samples": samples, "training.iterations": iterations})
    out = out_dir or f"runs/rl-tune/{cfg.name}"
    result = sweep(cfg, out)
    keys = list(result.table[0]) if result.table else []
    click.echo("  ".join(f"{k:>12}" for k in keys))
    for row in result.table:
        click.echo("  ".join(f"{row[k]!s:>12}" for k in keys))
    click.echo(f"results: {result.csv}")
    click.echo(f"best: {result.best_config}; checkpoint {result.best_checkpoint}")
