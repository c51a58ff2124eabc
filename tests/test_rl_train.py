"""PPO on MarketEnv through ``mars-ray rl train``: the smallest config that trains, saves,
resumes and exports a policy per role."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from click.testing import CliRunner

from mars_ray.cli import cli

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
