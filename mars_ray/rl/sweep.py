"""Ray Tune sweeps over the PPO settings of an RL config (``mars-ray rl tune``).

``tune.Tuner`` runs RLlib's PPO as the trainable with the config's search space (each
field a ``tune.choice`` of its values), ASHA stopping weak trials early on the mean
episode return (every agent's together); each trial keeps its final checkpoint. The
results table is written as CSV; the best trial's checkpoint path is returned.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ray import tune
from ray.tune.schedulers import ASHAScheduler

from mars_ray.rl.config import RLConfig
from mars_ray.rl.train import join_ray, ppo_config

METRIC = "env_runners/episode_return_mean"
# searchable config names -> PPOConfig.training() arguments
TRAINING_ARGS = {"train_batch_size": "train_batch_size_per_learner"}


@dataclass
class SweepResult:
    table: list[dict]
    csv: Path
    best_checkpoint: str | None
    best_config: dict


def sweep(config: RLConfig, out: str | Path) -> SweepResult:
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    t = config.tune
    join_ray(None, out)
    space = {TRAINING_ARGS.get(k, k): tune.choice(v) for k, v in t.search.items()}
    param_space = ppo_config(config).training(**space)
    tuner = tune.Tuner(
        "PPO",
        param_space=param_space,
        tune_config=tune.TuneConfig(
            metric=METRIC,
            mode="max",
            num_samples=t.num_samples,
            max_concurrent_trials=t.max_concurrent,
            scheduler=ASHAScheduler(
                time_attr="training_iteration",
                max_t=config.training.iterations,
                grace_period=min(t.grace_period, config.training.iterations),
            ),
        ),
        run_config=tune.RunConfig(
            name=config.name,
            storage_path=str(out),
            stop={"training_iteration": config.training.iterations},
            checkpoint_config=tune.CheckpointConfig(checkpoint_at_end=True),
            verbose=0,
        ),
    )
    grid = tuner.fit()
    rows = []
    for k, result in enumerate(grid):
        metrics = result.metrics or {}
        row = {"trial": k}
        for key in t.search:
            row[key] = (result.config or {}).get(TRAINING_ARGS.get(key, key))
        row["iterations"] = metrics.get("training_iteration")
        row["episode_return_mean"] = (metrics.get("env_runners") or {}).get("episode_return_mean")
        row["error"] = str(result.error) if result.error else ""
        rows.append(row)
    csv = out / "results.csv"
    keys = list(rows[0]) if rows else []
    csv.write_text(
        ",".join(keys) + "\n" + "".join(",".join(str(r[k]) for k in keys) + "\n" for r in rows)
    )
    best = grid.get_best_result(metric=METRIC, mode="max")
    best_config = {k: (best.config or {}).get(TRAINING_ARGS.get(k, k)) for k in t.search}
    checkpoint = best.checkpoint.path if best.checkpoint else None
    return SweepResult(rows, csv, checkpoint, best_config)
