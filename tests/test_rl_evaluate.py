"""``mars-ray rl evaluate``: paired by seed against the baselines, the issue's JSON."""

from __future__ import annotations

import json

import numpy as np
from click.testing import CliRunner

from agents.rl_features import N_OBS
from agents.rl_policy import ACTION_DIMS, PolicyWeights
from mars_ray.cli import cli
from mars_ray.rl.config import load_rl_config
from mars_ray.rl.evaluate import baseline, bootstrap_ci, evaluate

TINY = "configs/rl/tiny.yaml"
PROVENANCE = {"command", "commit", "date", "machine"}
FIELDS = {"episodes", "trained_mean", "baseline_mean", "diff_mean", "diff_ci95", "unit"}


def test_baselines_scored_as_trained_differ_by_exactly_zero() -> None:
    config = load_rl_config(TINY).env
    base = {g.role: baseline(g) for g in config.agents}
    report, trace = evaluate(config, base, episodes=3, seed_start=50)
    for role, row in report["policies"].items():
        assert set(row) == FIELDS
        assert row["episodes"] == 3
        assert row["diff_mean"] == 0.0 and row["diff_ci95"] == [0.0, 0.0], role
    assert len(trace["mid"]) == config.episode.steps + 1


def test_a_policy_that_differs_from_its_baseline_shows_a_difference() -> None:
    config = load_rl_config(TINY).env
    base = {g.role: baseline(g) for g in config.agents}
    long_only = {**base, "directional": lambda obs: np.ones((len(obs), 1))}
    report, _ = evaluate(config, long_only, episodes=3, seed_start=50)
    assert report["policies"]["directional"]["diff_mean"] != 0.0
    assert report["policies"]["execution"]["diff_mean"] == 0.0
    # buy-and-hold, the directional role's second baseline, is exactly this policy
    assert report["also"]["directional"]["baseline"] == "buy_and_hold"
    assert report["also"]["directional"]["diff_mean"] == 0.0


def test_bootstrap_interval_brackets_the_mean() -> None:
    diffs = np.random.default_rng(0).normal(1.0, 1.0, 200)
    lo, hi = bootstrap_ci(diffs)
    assert lo < diffs.mean() < hi
    assert 0.6 < lo and hi < 1.4


def test_evaluate_of_a_folder_without_a_run_says_what_to_pass(tmp_path) -> None:
    result = CliRunner().invoke(cli, ["rl", "evaluate", str(tmp_path)])
    assert result.exit_code != 0 and "pass the folder" in result.output


def test_evaluate_cli_writes_the_report(tmp_path) -> None:
    """A run folder with the tiny config and small random linear policies."""
    run = tmp_path / "run"
    (run / "policies").mkdir(parents=True)
    (run / "config.json").write_text(load_rl_config(TINY).model_dump_json())
    rng = np.random.default_rng(0)
    for role, dim in ACTION_DIMS.items():
        w = rng.normal(0, 0.1, (2 * dim, N_OBS)).astype(np.float32)
        bias = np.zeros(2 * dim, np.float32)
        PolicyWeights([(w, bias)], dim).save(run / "policies" / f"{role}.npz")
    out, png = tmp_path / "eval.json", tmp_path / "eval.png"
    args = ["rl", "evaluate", str(run), "--episodes", "2", "--json", str(out), "--plot", str(png)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert set(report) == {"policies", "cross_play", "also", "market", *PROVENANCE}
    assert report["command"].startswith("mars-ray rl evaluate " + str(run))
    assert set(args[2:]) <= set(report["command"].split())
    assert report["market"]["median_spread_bp"] > 0
    assert set(report["policies"]) == {"execution", "market_maker", "directional"}
    assert all(set(row) == FIELDS for row in report["policies"].values())
    assert png.stat().st_size > 0
