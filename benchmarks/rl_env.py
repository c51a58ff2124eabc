"""MarketEnv throughput: env steps per second with random actions, on one core.

    python benchmarks/rl_env.py [--json OUT] [--config CONFIG] [--episodes N]
                                [--lmm-trajectories N] [--lmm-episodes N]
                                [--ppo-iterations N]

The market is ``--config``'s (default configs/rl/tiny.yaml: three learning agents, one per
role, agent background, one instrument, one step = 5 simulated seconds). Timed: reset and
step together over ``--episodes`` seeded episodes (each reset also runs the background's
warm-up from the open to the episode's start), and the step alone, after one untimed
episode that loads the compiled kernels; the random actions are drawn before the clock
starts. ``--lmm-trajectories N`` also times the env with the shipped LMM as one more
background group and N trajectories in the env (one model batch for all N books); an env
step then advances N trajectories, so it reports trajectory steps per second too.
``--ppo-iterations N`` also measures PPO's sampling and training throughput with 2 env
runners (Ray on this machine).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from provenance import write_json

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mars_ray.rl.config import EnvConfig, load_rl_config  # noqa: E402
from mars_ray.rl.env import MarketEnv  # noqa: E402


def episode(env: MarketEnv, seed: int, block: np.ndarray, cuts: np.ndarray) -> tuple[int, float]:
    """One seeded episode with the actions of ``block``: (steps, seconds inside ``step``)."""
    agents = env.possible_agents
    env.reset(seed=seed)
    steps, step_time, done = 0, 0.0, False
    while not done:
        row = block[env.k]
        actions = {a: row[cuts[i] : cuts[i + 1]] for i, a in enumerate(agents)}
        t0 = time.perf_counter()
        _, _, terminated, _, _ = env.step(actions)
        step_time += time.perf_counter() - t0
        steps += 1
        done = terminated["__all__"]
    return steps, step_time


def env_steps_per_s(env: MarketEnv, episodes: int) -> dict[str, float]:
    """Random actions over ``episodes`` seeded episodes, after one untimed episode that
    loads the compiled kernels (numba's cache) as any process does once."""
    rng = np.random.default_rng(0)
    dims = [env.action_spaces[a].shape[0] for a in env.possible_agents]
    cuts = np.cumsum([0, *dims])

    def actions() -> np.ndarray:
        return rng.uniform(-1, 1, (env.config.episode.steps, int(cuts[-1]))).astype(np.float32)

    episode(env, 2**40, actions(), cuts)  # the warm-up, far from the timed seeds
    blocks = [actions() for _ in range(episodes)]
    steps, step_time = 0, 0.0
    start = time.perf_counter()
    for seed, block in enumerate(blocks):
        n, seconds = episode(env, seed, block, cuts)
        steps += n
        step_time += seconds
    total = time.perf_counter() - start
    return {
        "env_steps": steps,
        "env_steps_per_s": steps / total,
        "env_steps_per_s_without_resets": steps / step_time,
    }


def with_lmm(env_cfg: EnvConfig, trajectories: int) -> EnvConfig:
    """``env_cfg`` with the shipped LMM as one more background group, N trajectories."""
    lmm = {"kind": "lmm", "count": 1, "params": {"start": "09:30", "end": "16:00"}}
    raw = env_cfg.model_dump()
    raw["background"].append(lmm)
    raw["trajectories"] = trajectories
    return type(env_cfg).model_validate(raw)


def ppo_throughput(config_path: str, iterations: int) -> dict[str, float]:
    import ray

    from mars_ray.rl.config import load_rl_config as load
    from mars_ray.rl.train import train

    cfg = load(config_path, {"training.num_env_runners": 2, "training.iterations": iterations})
    ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False)
    try:
        import tempfile

        with tempfile.TemporaryDirectory() as out:
            history = train(cfg, out)
    finally:
        ray.shutdown()
    later = history[1:] or history  # the first iteration includes the runners' start
    return {
        "ppo_env_steps_per_s": float(np.mean([it.env_steps_per_s for it in later])),
        "ppo_iterations": len(history),
        "ppo_num_env_runners": 2,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path)
    parser.add_argument("--config", default=str(ROOT / "configs/rl/tiny.yaml"))
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument(
        "--lmm-trajectories", type=int, default=0, help="also time the LMM background, N books"
    )
    parser.add_argument("--lmm-episodes", type=int, default=2)
    parser.add_argument("--ppo-iterations", type=int, default=0)
    args = parser.parse_args()
    env_cfg = load_rl_config(args.config).env
    env = MarketEnv(env_cfg)
    result: dict = {
        "config": str(Path(args.config).resolve().relative_to(ROOT))
        if Path(args.config).resolve().is_relative_to(ROOT)
        else args.config,
        "background": "agents",
        "agents": len(env.possible_agents),
        "trajectories": env_cfg.trajectories,
        "step_s": env_cfg.episode.step_s,
        "episode_steps": env_cfg.episode.steps,
        **env_steps_per_s(env, args.episodes),
    }
    if args.lmm_trajectories:
        lmm_cfg = with_lmm(env_cfg, args.lmm_trajectories)
        lmm_env = MarketEnv(lmm_cfg)
        figures = env_steps_per_s(lmm_env, args.lmm_episodes)
        n = args.lmm_trajectories
        result["lmm"] = {
            "background": "agents + lmm",
            "trajectories": n,
            "agents": len(lmm_env.possible_agents),
            "episodes": args.lmm_episodes,
            **figures,
            "trajectory_steps_per_s": figures["env_steps_per_s"] * n,
            "trajectory_steps_per_s_without_resets": figures["env_steps_per_s_without_resets"] * n,
        }
    if args.ppo_iterations:
        result.update(ppo_throughput(args.config, args.ppo_iterations))
    print(json.dumps(result, indent=1))
    write_json(args.json, result)


if __name__ == "__main__":
    main()
