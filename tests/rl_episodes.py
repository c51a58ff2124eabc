"""Seeded MarketEnv episodes for the RL tests: what two runs must agree on, step by step."""

from __future__ import annotations

import numpy as np

from mars_ray.rl.env import MarketEnv


def episode(env: MarketEnv, seed: int, action_seed: int) -> list:
    """``env.reset``'s (observations, infos), then every step's (observations, rewards,
    infos), under seeded random actions."""
    rng = np.random.default_rng(action_seed)
    out = [env.reset(seed=seed)]
    done = False
    while not done:
        actions = {
            a: rng.uniform(-1, 1, env.action_spaces[a].shape).astype(np.float32) for a in env.agents
        }
        obs, rewards, terminated, _, infos = env.step(actions)
        out.append((obs, rewards, infos))
        done = terminated["__all__"]
    return out
