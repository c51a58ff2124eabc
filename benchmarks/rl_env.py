"""MarketEnv throughput: env steps per second with random actions, on one core.

    python benchmarks/rl_env.py [--json OUT] [--config CONFIG] [--episodes N]
                                [--lmm] [--ppo-iterations N]

The market is ``--config``'s (default configs/rl/tiny.yaml: three learning agents, one per
role, agent background, one instrument, one step = 5 simulated seconds). Timed: reset and
step together over ``--episodes`` seeded episodes (each reset also runs the background's
warm-up from the open to the episode's start), and the step alone. ``--lmm`` adds the
shipped LMM as a background group (one trajectory per env). ``--ppo-iterations N`` also
measures PPO's sampling and training throughput with 2 env runners (Ray on this machine).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from provenance import write_json

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mars_ray.rl.config import load_rl_config  # noqa: E402
from mars_ray.rl.env import MarketEnv  # noqa: E402


def env_steps_per_s(env: MarketEnv, episodes: int) -> dict[str, float]:
    rng = np.random.default_rng(0)
    steps, step_time = 0, 0.0
    start = time.perf_counter()
    for seed in range(episodes):
        env.reset(seed=seed)
        done = False
        while not done:
            actions = {
                a: rng.uniform(-1, 1, env.action_spaces[a].shape).astype(np.float32)
                for a in env.agents
            }
            t0 = time.perf_counter()
            _, _, terminated, _, _ = env.step(actions)
            step_time += time.perf_counter() - t0
            steps += 1
            done = terminated["__all__"]
    total = time.perf_counter() - start
    return {
        "env_steps": steps,
        "env_steps_per_s": steps / total,
        "env_steps_per_s_without_resets": steps / step_time,
    }


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
    parser.add_argument("--lmm", action="store_true", help="add the shipped LMM background")
    parser.add_argument("--ppo-iterations", type=int, default=0)
    args = parser.parse_args()
    cfg = load_rl_config(args.config)
    env_cfg = cfg.env
    if args.lmm:
        lmm = {"kind": "lmm", "count": 1, "params": {"start": "09:30", "end": "16:00"}}
        raw = env_cfg.model_dump()
        raw["background"].append(lmm)
        env_cfg = type(env_cfg).model_validate(raw)
    env = MarketEnv(env_cfg)
    result: dict = {
        "config": args.config,
        "background": "agents + lmm" if args.lmm else "agents",
        "agents": len(env.possible_agents),
        "step_s": env_cfg.episode.step_s,
        "episode_steps": env_cfg.episode.steps,
        **env_steps_per_s(env, args.episodes),
    }
    if args.ppo_iterations:
        result.update(ppo_throughput(args.config, args.ppo_iterations))
    for key, value in result.items():
        print(f"{key}: {value:,.1f}" if isinstance(value, float) else f"{key}: {value}")
    write_json(args.json, result)


if __name__ == "__main__":
    main()
