"""The policies that ship with the package: complete, small, packaged, and they act in the
market they trained in, through the env and through the ``rl_policy`` agent kind."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import numpy as np
from click.testing import CliRunner

from agents.rl_features import N_OBS
from agents.rl_policy import ACTION_DIMS, SHIPPED, PolicyWeights, RLPolicyParams
from mars_ray.cli import cli
from mars_ray.rl.config import RLConfig
from mars_ray.rl.env import MarketEnv, role_of
from mars_ray.schema.validation import validate_model

ROOT = Path(__file__).resolve().parents[1]


def shipped_config() -> RLConfig:
    return validate_model(RLConfig, json.loads((SHIPPED / "config.json").read_text()), "shipped")


def test_every_role_of_the_shipped_market_has_small_weights_of_the_right_shape() -> None:
    roles = {g.role for g in shipped_config().env.agents}
    assert roles == set(ACTION_DIMS)
    files = sorted((SHIPPED / "policies").glob("*.npz"))
    assert {f.stem for f in files} == roles
    assert sum(f.stat().st_size for f in files) <= 10 * 2**20
    for f in files:
        weights = PolicyWeights.load(f)
        assert weights.action_dim == ACTION_DIMS[f.stem]
        assert weights.layers[0][0].shape[1] == N_OBS  # reads the env's observation


def test_pyproject_packages_every_shipped_file() -> None:
    """What a fresh install gets: agents' package-data globs must cover the shipped run."""
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    globs = data["tool"]["setuptools"]["package-data"]["agents"]
    packaged = {p for g in globs for p in (ROOT / "agents").glob(g)}
    shipped = {p for p in SHIPPED.rglob("*") if p.is_file()}
    assert shipped and shipped <= packaged


def test_shipped_policies_act_in_their_market() -> None:
    env_config = shipped_config().env
    config = env_config.model_copy(
        update={"episode": env_config.episode.model_copy(update={"steps": 3})}
    )
    env = MarketEnv(config)
    weights = {r: PolicyWeights.load(SHIPPED / "policies" / f"{r}.npz") for r in ACTION_DIMS}
    obs, _ = env.reset(seed=1)
    done = False
    while not done:
        actions = {a: weights[role_of(a)].act(obs[a][None, :])[0] for a in env.agents}
        for a, act in actions.items():
            assert act.shape == (ACTION_DIMS[role_of(a)],) and np.all(np.abs(act) <= 1), a
        obs, rewards, terminated, _, _ = env.step(actions)
        assert all(np.isfinite(r) for r in rewards.values())
        done = terminated["__all__"]


def test_rl_policy_kind_defaults_to_the_shipped_policy() -> None:
    params = RLPolicyParams(role="market_maker")
    assert params.weights_path() == SHIPPED / "policies" / "market_maker.npz"


def test_evaluate_without_a_run_uses_the_shipped_policies() -> None:
    result = CliRunner().invoke(cli, ["rl", "evaluate", "--episodes", "2"])
    assert result.exit_code == 0, result.output
    assert {"execution", "market_maker", "directional"} <= set(result.output.split())
