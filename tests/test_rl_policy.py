"""The ``rl_policy`` agent kind: exported weights act as RLlib's module does, and trained
agents trade inside an ordinary simulation."""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow.compute as pc
import pytest
import torch
from ray.rllib.algorithms.ppo.torch.default_ppo_torch_rl_module import DefaultPPOTorchRLModule
from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig

from agents.rl_policy import ACTION_DIMS, PolicyWeights
from mars_ray.rl.config import load_rl_config
from mars_ray.rl.env import MarketEnv
from mars_ray.rl.train import export_actor
from mars_ray.schema.validation import ConfigError
from mars_ray.sim.config import parse_config
from mars_ray.sim.kernel import run_simulation

ROLES = ("execution", "market_maker", "directional")


def module_for(env: MarketEnv, agent: str) -> DefaultPPOTorchRLModule:
    torch.manual_seed(0)
    config = dataclasses.asdict(DefaultModelConfig(fcnet_hiddens=[16, 16]))
    return DefaultPPOTorchRLModule(
        observation_space=env.observation_spaces[agent],
        action_space=env.action_spaces[agent],
        inference_only=False,
        model_config=config,
    )


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[MarketEnv, dict, object]:
    env = MarketEnv(load_rl_config("configs/rl/tiny.yaml").env)
    folder = tmp_path_factory.mktemp("run")
    (folder / "policies").mkdir()
    modules = {}
    for role in ROLES:
        module = modules[role] = module_for(env, f"{role}_0")
        state = {k: v.detach() for k, v in module.state_dict().items()}
        export_actor(state, ACTION_DIMS[role]).save(folder / "policies" / f"{role}.npz")
    return env, modules, folder


def test_exported_actor_gives_the_modules_mean_action(exported) -> None:
    env, modules, folder = exported
    obs, _ = env.reset(seed=3)
    for role in ROLES:
        x = np.stack([obs[f"{role}_0"]] * 2)
        dist = modules[role].forward_inference({"obs": torch.tensor(x)})["action_dist_inputs"]
        mean = np.clip(dist[:, : ACTION_DIMS[role]].detach().numpy(), -1, 1)
        weights = PolicyWeights.load(folder / "policies" / f"{role}.npz")
        np.testing.assert_allclose(weights.act(x), mean, atol=1e-5)


def simulation(folder, role: str) -> dict:
    return {
        "seed": 1,
        "session": {
            "pre_open": "09:30",
            "open": "09:30",
            "closing_call": "09:40",
            "close": "09:40",
        },
        "kernel": {"step_ms": 5000, "sync_ms": 60000},
        "instruments": [{"name": "SIM", "tick_size": 0.01, "reference_price": 100.0}],
        "agents": [
            {"kind": "noise", "count": 40, "params": {"rate": 0.2, "mean_level": 4}},
            {
                "kind": "rl_policy",
                "count": 2,
                "params": {
                    "checkpoint": str(folder),
                    "role": role,
                    "start": "09:32",
                    "end": "09:38",
                    "quantity": 1000,
                    "max_inventory": 500,
                },
            },
        ],
    }


@pytest.mark.parametrize("role", ROLES)
def test_rl_policy_agents_trade_in_a_simulation(exported, role: str) -> None:
    _, _, folder = exported
    config = parse_config(simulation(folder, role))
    result = run_simulation(config, local=True)
    events = result.events
    policy_ids = [41, 42]  # after the 40 noise traders
    mine = pc.is_in(events["agent_id"], pc.cast(policy_ids, "int64"))
    assert pc.sum(mine).as_py() > 0  # its orders reached the book through the kernel
    submitted = events.filter(mine).filter(pc.equal(events.filter(mine)["event_type"], 0))
    times = submitted["time_ns"].to_numpy()
    assert times.min() >= 9.5 * 3600e9 + 120e9  # nothing before its start


def test_rl_policy_without_weights_is_a_config_error(tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"agents\.1\.params.*no policy weights"):
        parse_config(simulation(tmp_path, "execution"))
