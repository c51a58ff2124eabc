"""PPO on MarketEnv through ``mars-ray rl train``: the smallest config that trains, saves,
resumes and exports a policy per role."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner

from agents.rl_features import N_OBS
from agents.rl_policy import ACTION_DIMS
from mars_ray.cli import cli
from mars_ray.rl.config import load_rl_config, parse_rl_config
from mars_ray.rl.evaluate import load_policies, validate
from mars_ray.rl.train import ppo_config, roles, set_initial_std
from mars_ray.schema.validation import ConfigError

TINY = "configs/rl/tiny.yaml"


def test_rl_train_runs_checkpoints_and_resumes(tmp_path, ray_session) -> None:
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["rl", "train", TINY, "--out", str(out), "--iterations", "1"])
    assert result.exit_code == 0, result.output
    assert "iter    1" in result.output and "env steps/s" in result.output
    for role in ("execution", "market_maker", "directional"):
        assert f"{role}=" in result.output
        assert (out / f"curve_{role}.png").stat().st_size > 0
        weights = torch.load(out / "policies" / f"{role}.pt")
        assert all(isinstance(v, torch.Tensor) for v in weights.values())
    assert (out / "checkpoint").is_dir()

    # a spent time budget stops the resumed run after its first iteration, saved
    args = ["--iterations", "5", "--max-minutes", "1e-6", "--resume"]
    result = CliRunner().invoke(cli, ["rl", "train", TINY, "--out", str(out), *args])
    assert result.exit_code == 0, result.output
    assert "iter    2" in result.output and "iter    1" not in result.output
    assert "iter    3" not in result.output and "2 iterations" in result.output
    lines = [json.loads(x) for x in (out / "progress.jsonl").read_text().splitlines()]
    assert [x["iteration"] for x in lines] == [1, 2]
    assert lines[1]["env_steps"] > lines[0]["env_steps"]


def test_rl_train_keeps_the_policies_that_validate_best(tmp_path, ray_session) -> None:
    config = tmp_path / "validated.yaml"
    raw = yaml.safe_load(Path(TINY).read_text())
    raw["training"]["validation"] = {"every": 1, "episodes": 2, "seed_start": 77}
    config.write_text(yaml.safe_dump(raw))
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["rl", "train", str(config), "--out", str(out)])
    assert result.exit_code == 0, result.output
    lines = [json.loads(x) for x in (out / "validation.jsonl").read_text().splitlines()]
    assert [x["iteration"] for x in lines] == [1, 2]
    assert all(x["role"] == "execution" and x["episodes"] == 2 for x in lines)
    best = max(lines, key=lambda x: x["diff_mean"])
    assert f"policies/ holds iteration {best['iteration']}'s" in result.output
    assert "validation    1  execution vs baseline" in result.output
    assert (out / "validation.png").stat().st_size > 0
    for role in ("execution", "market_maker", "directional"):
        kept = (out / "policies" / f"{role}.npz").read_bytes()
        assert kept == (out / "best" / f"{role}.npz").read_bytes()
        assert (out / "last" / f"{role}.npz").exists()
    # the score is the paired difference the evaluation computes on the same seeds
    cfg = load_rl_config(config)
    again = validate(cfg.env, load_policies(out, roles(cfg)), "execution", 2, 77)
    assert again["diff_mean"] == pytest.approx(best["diff_mean"], abs=1e-9)


def test_validation_role_must_have_agents(tmp_path) -> None:
    raw = yaml.safe_load(Path(TINY).read_text())
    raw["env"]["agents"] = [a for a in raw["env"]["agents"] if a["role"] != "directional"]
    raw["training"]["validation"] = {"role": "directional"}
    with pytest.raises(ConfigError, match=r"training\.validation\.role"):
        parse_rl_config(raw)


def test_rl_train_config_error_names_the_field(tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("env:\n  agents: [{role: execution, quantity: -5}]\n")
    result = CliRunner().invoke(cli, ["rl", "train", str(bad)])
    assert result.exit_code != 0
    assert "env.agents.0.quantity" in result.output
    assert "Traceback" not in result.output


def test_rl_train_resume_without_a_run_is_an_error(tmp_path) -> None:
    result = CliRunner().invoke(cli, ["rl", "train", TINY, "--out", str(tmp_path), "--resume"])
    assert result.exit_code != 0
    assert "nothing to resume" in result.output


def test_rl_tune_runs_a_two_trial_sweep(tmp_path, ray_session) -> None:
    out = tmp_path / "sweep"
    args = ["rl", "tune", TINY, "--out", str(out), "--samples", "2", "--iterations", "2"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    rows = (out / "results.csv").read_text().splitlines()
    assert rows[0].startswith("trial,lr,iterations,episode_return_mean")
    assert len(rows) == 3  # the header and two trials
    best = result.output.split("checkpoint ")[-1].strip()
    assert Path(best).is_dir()


def test_rl_tune_refuses_an_unknown_search_field(tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("env:\n  agents: [{role: execution}]\ntune:\n  search: {entropy: [0.1]}\n")
    result = CliRunner().invoke(cli, ["rl", "tune", str(bad)])
    assert result.exit_code != 0
    assert "tune.search" in result.output and "cannot search 'entropy'" in result.output


def test_initial_std_and_lr_per_role_reach_the_env_runners_and_learner(ray_session) -> None:
    overrides = {"initial_action_std": 0.2, "lr": 0.001, "lr_per_role": {"execution": 1e-5}}
    config = load_rl_config(TINY, {"training": overrides})
    algo = ppo_config(config).build_algo()
    try:
        before = policy_log_std(algo)
        set_initial_std(algo, config.training.initial_action_std)
        after = policy_log_std(algo)
        results = algo.learner_group.foreach_learner(
            lambda learner: {
                str(m): learner.get_optimizer(m).param_groups[0]["lr"]
                for m in learner.module.keys()
            }
        )
        (rates,) = [r.get() for r in results]
    finally:
        algo.stop()
    assert rates == {"execution": 1e-5, "market_maker": 0.001, "directional": 0.001}
    for role in ("execution", "market_maker", "directional"):
        assert not np.allclose(before[role], np.log(0.2), atol=1e-3)
        np.testing.assert_allclose(after[role], np.log(0.2), atol=1e-6)


def policy_log_std(algo) -> dict[str, np.ndarray]:
    """Each policy's log std, as the sampling env runner computes it, for random inputs."""
    out = {}
    obs = torch.randn(5, N_OBS)
    for role, dim in ACTION_DIMS.items():
        module = algo.get_module(role)
        with torch.no_grad():
            logits = module.forward_inference({"obs": obs})["action_dist_inputs"]
        out[role] = logits[:, dim:].numpy()
    return out
