"""Multi-agent PPO on ``MarketEnv``: one policy per role, wired by RLlib's config builder.

A run folder (``--out``) holds what a run leaves: ``config.json`` (the validated config),
``checkpoint/`` (the whole algorithm, RLlib's own format, what ``--resume`` continues
from), ``progress.jsonl`` (one line per iteration), ``curve_ROLE.png`` (the learning curve
of each policy), ``policies/ROLE.pt`` (each policy's RLModule weights as a plain torch state
dict) and ``policies/ROLE.npz`` (its actor as numpy layers: what the ``rl_policy`` agent
kind loads, without Ray or torch).

With ``training.validation`` the run also scores its policies on validation seeds as it
goes (``validation.jsonl``, ``validation.png``) and keeps the best iteration's in ``best/``;
when the run ends, ``policies/`` holds the best's and ``last/`` the last iteration's.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.algorithms.ppo import PPOConfig
from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig
from ray.rllib.utils.metrics import (
    ENV_RUNNER_RESULTS,
    EPISODE_MODULE_RETURN_MEAN,
    NUM_ENV_STEPS_SAMPLED_LIFETIME,
)

from agents.rl_policy import ACTION_DIMS, PolicyWeights
from mars_ray.rl.config import RLConfig, ValidationConfig
from mars_ray.rl.env import MarketEnv, role_of
from mars_ray.rl.evaluate import validate
from mars_ray.sim.ray_runtime import ensure_ray

CHECKPOINT = "checkpoint"
ENCODER = "encoder.encoder.net.mlp."  # the shared actor-critic encoder's dense layers
HEAD = "pi.net.mlp."  # the policy head: mean and log std of each action dimension
PROGRESS = "progress.jsonl"
CONFIG = "config.json"  # the run's validated config: what evaluation rebuilds the env from
POLICIES = "policies"
BEST = "best"  # with training.validation: the policies of the best-scoring iteration
LAST = "last"  # with training.validation: the last iteration's, once the run ends
VALIDATION = "validation.jsonl"


class NothingToResume(FileNotFoundError):
    """``--resume`` given a folder without a checkpoint."""


def policy_of(agent_id: str, episode: Any = None, **kwargs: Any) -> str:
    """RLlib's policy mapping: an agent's role is its policy (module-level: it pickles)."""
    return role_of(agent_id)


def join_ray(workers: int | None, out: Path) -> None:
    """Join or start Ray (``ensure_ray``). A driver run by ``ray job submit`` starts in the
    job's unpacked working directory, which Ray removes a few seconds after the driver
    joins the cluster (seen with Ray 2.60); RLlib and torch read the current directory
    later, so such a driver moves to its run folder (``out``, already absolute)."""
    ensure_ray(None, workers)
    if "runtime_resources" in Path.cwd().parts:
        os.chdir(out)


def roles(config: RLConfig) -> list[str]:
    return sorted({group.role for group in config.env.agents})


def ppo_config(config: RLConfig) -> PPOConfig:
    t = config.training
    return (
        PPOConfig()
        .environment(MarketEnv, env_config=config.env.model_dump())
        .env_runners(num_env_runners=t.num_env_runners, rollout_fragment_length="auto")
        .training(
            lr=t.lr,
            gamma=t.gamma,
            lambda_=t.gae_lambda,
            entropy_coeff=t.entropy_coeff,
            vf_clip_param=t.vf_clip_param,
            train_batch_size_per_learner=t.train_batch_size,
            minibatch_size=t.minibatch_size,
            num_epochs=t.num_epochs,
        )
        .multi_agent(policies=set(roles(config)), policy_mapping_fn=policy_of)
        .rl_module(
            model_config=DefaultModelConfig(fcnet_hiddens=list(t.hidden)),
            algorithm_config_overrides_per_module={
                role: PPOConfig.overrides(lr=lr) for role, lr in t.lr_per_role.items()
            },
        )
        .debugging(seed=config.env.seed)
    )


@dataclass
class Iteration:
    """One training iteration's line: mean episode return per policy, sampling speed."""

    iteration: int
    returns: dict[str, float]
    env_steps: int
    env_steps_per_s: float
    seconds: float

    def line(self) -> str:
        parts = " ".join(f"{k}={v:+.3f}" for k, v in sorted(self.returns.items()))
        return (
            f"iter {self.iteration:4d}  {parts}  steps {self.env_steps}  "
            f"{self.env_steps_per_s:,.0f} env steps/s"
        )


@dataclass
class Validation:
    """One validation: the role's mean difference against its baseline on the seeds."""

    iteration: int
    role: str
    episodes: int
    diff_mean: float
    diff_ci95: list[float]
    best: bool = False

    def line(self) -> str:
        lo, hi = self.diff_ci95
        mark = "  best so far" if self.best else ""
        return (
            f"validation {self.iteration:4d}  {self.role} vs baseline {self.diff_mean:+.3f} "
            f"[{lo:+.3f}, {hi:+.3f}] on {self.episodes} seeds{mark}"
        )


def iteration_of(k: int, result: dict, previous_steps: int, seconds: float) -> Iteration:
    runners = result.get(ENV_RUNNER_RESULTS, {})
    returns = {str(m): float(v) for m, v in runners.get(EPISODE_MODULE_RETURN_MEAN, {}).items()}
    steps = int(runners.get(NUM_ENV_STEPS_SAMPLED_LIFETIME, previous_steps))
    rate = (steps - previous_steps) / seconds if seconds > 0 else float("nan")
    return Iteration(k, returns, steps, rate, seconds)


def train(
    config: RLConfig,
    out: str | Path,
    resume: bool = False,
    on_iteration: Callable[[Iteration], None] | None = None,
    on_validation: Callable[[Validation], None] | None = None,
) -> list[Iteration]:
    """Train for ``training.iterations`` (in all, counting a resumed run's), or until
    ``training.max_minutes`` have passed, checkpointing every ``checkpoint_every`` and at
    the end (and validating, with ``training.validation``); the iterations' lines."""
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    history = read_progress(out) if resume else []
    if resume and not (out / CHECKPOINT).is_dir():
        raise NothingToResume(f"nothing to resume: no {CHECKPOINT}/ in {out}")
    if not resume:
        (out / PROGRESS).unlink(missing_ok=True)
        (out / VALIDATION).unlink(missing_ok=True)
        shutil.rmtree(out / BEST, ignore_errors=True)
    validations = read_validations(out)
    checks = config.training.validation
    (out / CONFIG).write_text(config.model_dump_json(indent=2) + "\n")
    join_ray(max(1, config.training.num_env_runners + 1), out)
    algo = ppo_config(config).build_algo()
    try:
        if resume:
            algo.restore_from_path(str((out / CHECKPOINT).resolve()))
        elif config.training.initial_action_std is not None:
            set_initial_std(algo, config.training.initial_action_std)
        steps = history[-1].env_steps if history else 0
        budget = config.training.max_minutes
        began = time.perf_counter()
        last = config.training.iterations
        for k in range(len(history) + 1, config.training.iterations + 1):
            start = time.perf_counter()
            result = algo.train()
            it = iteration_of(k, result, steps, time.perf_counter() - start)
            steps = it.env_steps
            history.append(it)
            with (out / PROGRESS).open("a") as f:
                f.write(json.dumps(it.__dict__) + "\n")
            if on_iteration:
                on_iteration(it)
            over = budget is not None and time.perf_counter() - began >= budget * 60
            if k % config.training.checkpoint_every == 0 or k == last or over:
                save(algo, config, out)
            if checks is not None and (due(checks, k) or k == last or over):
                v = validation_of(algo, config, checks, out, k, validations)
                validations.append(v)
                if on_validation:
                    on_validation(v)
            if over:
                break
        plot_curves(history, out)
        if validations:
            plot_validation(validations, out)
            select_best(out)
    finally:
        algo.stop()
    return history


def due(checks: ValidationConfig, k: int) -> bool:
    return k >= checks.after and (k - checks.after) % checks.every == 0


def validation_of(
    algo: Algorithm,
    config: RLConfig,
    checks: ValidationConfig,
    out: Path,
    k: int,
    before: list[Validation],
) -> Validation:
    """Score iteration ``k``'s policies; a new best is written to ``best/``."""
    states = policy_states(algo, config)
    actors = {role: export_actor(state, ACTION_DIMS[role]).act for role, state in states.items()}
    score = validate(config.env, actors, checks.role, checks.episodes, checks.seed_start)
    v = Validation(k, checks.role, score["episodes"], score["diff_mean"], score["diff_ci95"])
    v.best = all(v.diff_mean > b.diff_mean for b in before)
    if v.best:
        write_policies(states, out / BEST)
    with (out / VALIDATION).open("a") as f:
        f.write(json.dumps(v.__dict__) + "\n")
    return v


def set_initial_std(algo: Algorithm, std: float) -> None:
    """Start every policy at action std ``std`` in every state: the log-std half of the
    policy head's last layer gets zero weights and bias log(std). The learner's modules
    change; the env runners get the new weights."""

    def narrow(learner: Any) -> None:
        for module_id in learner.module.keys():
            layer = last_head_layer(learner.module[module_id])
            dim = ACTION_DIMS[str(module_id)]
            with torch.no_grad():
                layer.weight[dim:] = 0.0
                layer.bias[dim:] = float(np.log(std))

    algo.learner_group.foreach_learner(narrow)
    algo.env_runner_group.sync_weights(
        from_worker_or_learner_group=algo.learner_group, inference_only=True
    )


def last_head_layer(module: Any) -> torch.nn.Linear:
    layers = [m for m in module.pi.modules() if isinstance(m, torch.nn.Linear)]
    return layers[-1]


def save(algo: Algorithm, config: RLConfig, out: Path) -> None:
    """The algorithm checkpoint, and each policy's weights as a plain state dict."""
    algo.save_to_path(str((out / CHECKPOINT).resolve()))
    write_policies(policy_states(algo, config), out / POLICIES)


def policy_states(algo: Algorithm, config: RLConfig) -> dict[str, dict[str, torch.Tensor]]:
    return {
        role: {k: v.detach().cpu() for k, v in algo.get_module(role).state_dict().items()}
        for role in roles(config)
    }


def write_policies(states: dict[str, dict[str, torch.Tensor]], folder: Path) -> None:
    """Each policy as ``ROLE.pt`` (its RLModule's state dict) and ``ROLE.npz`` (its actor)."""
    folder.mkdir(parents=True, exist_ok=True)
    for role, state in states.items():
        torch.save(state, folder / f"{role}.pt")
        export_actor(state, ACTION_DIMS[role]).save(folder / f"{role}.npz")


def select_best(out: Path) -> None:
    """At a run's end: ``last/`` gets the last iteration's policies, ``policies/`` the
    best-scoring validation's."""
    shutil.rmtree(out / LAST, ignore_errors=True)
    shutil.copytree(out / POLICIES, out / LAST)
    shutil.rmtree(out / POLICIES)
    shutil.copytree(out / BEST, out / POLICIES)


def kept_validation(validations: list[Validation]) -> Validation:
    """The validation whose policies the run keeps: the best score, the earliest on a tie
    (as ``Validation.best`` marks it while the run goes)."""
    return max(validations, key=lambda v: v.diff_mean)


def read_validations(out: Path) -> list[Validation]:
    path = out / VALIDATION
    if not path.exists():
        return []
    return [Validation(**json.loads(line)) for line in path.read_text().splitlines() if line]


def export_actor(state: dict[str, torch.Tensor], action_dim: int) -> PolicyWeights:
    """The actor of RLlib's default PPO module (a shared MLP encoder, tanh, then the policy
    head) as numpy layers for the ``rl_policy`` agent kind."""

    def dense(prefix: str) -> list[tuple[np.ndarray, np.ndarray]]:
        index = sorted({int(k[len(prefix) :].split(".")[0]) for k in state if k.startswith(prefix)})
        return [
            (state[f"{prefix}{i}.weight"].numpy(), state[f"{prefix}{i}.bias"].numpy())
            for i in index
        ]

    encoder, head = dense(ENCODER), dense(HEAD)
    if not encoder or len(head) != 1:
        raise ValueError(
            f"unexpected policy module layout (keys {sorted(state)}): expected {ENCODER}N and "
            f"one {HEAD}N layer"
        )
    return PolicyWeights(encoder + head, action_dim)


def read_progress(out: Path) -> list[Iteration]:
    path = out / PROGRESS
    if not path.exists():
        return []
    return [Iteration(**json.loads(line)) for line in path.read_text().splitlines() if line]


def plot_curves(history: list[Iteration], out: Path) -> list[Path]:
    """One PNG per policy: mean episode return against iterations."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for role in sorted({r for it in history for r in it.returns}):
        points = [(it.iteration, it.returns[role]) for it in history if role in it.returns]
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o")
        ax.set_xlabel("iteration")
        ax.set_ylabel("mean episode return")
        ax.set_title(f"{role}: learning curve")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = out / f"curve_{role}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)
    return paths


def plot_validation(validations: list[Validation], out: Path) -> Path:
    """The validated role's difference against its baseline, with its 95% interval, per
    validated iteration; the kept one marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [v.iteration for v in validations]
    y = np.array([v.diff_mean for v in validations])
    ci = np.array([v.diff_ci95 for v in validations])
    kept = kept_validation(validations)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.errorbar(x, y, yerr=[y - ci[:, 0], ci[:, 1] - y], fmt="o-", capsize=2)
    ax.scatter([kept.iteration], [kept.diff_mean], s=120, facecolors="none", edgecolors="red")
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xlabel("iteration")
    ax.set_ylabel("trained minus baseline")
    ax.set_title(f"{kept.role} on {kept.episodes} validation seeds (kept: red)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = out / "validation.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
