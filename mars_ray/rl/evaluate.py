"""Trained policies against their baselines on held-out seeds, paired by seed.

For each seed the same market runs several times with the same background: every role
trained (``trained``); each role on its baseline with the others trained (``baseline``);
each role trained with every other role on its baseline (cross-play). A role's difference
is its return trained minus on its baseline, paired by seed; its 95% interval is a
percentile bootstrap of the mean difference.

Baselines: execution, TWAP (the remainder spread evenly over the steps left, passive at the
own touch, the clean-up order at the end); market_maker, a fixed-spread quoter skewed
against its inventory (the ``market_maker`` agent kind's rule); directional, flat.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from agents.rl_features import FEATURES
from agents.rl_policy import PolicyWeights
from agents.view import MID
from mars_ray.rl.config import EnvConfig, RoleConfig
from mars_ray.rl.env import MarketEnv, role_of

Policy = Callable[[np.ndarray], np.ndarray]  # observations (n, N_OBS) -> actions (n, d)
UNITS = {
    "execution": "bp of the parent order (minus implementation shortfall vs arrival mid)",
    "market_maker": "ticks x shares / lot (PnL change minus inventory penalty)",
    "directional": "ticks x shares / lot (PnL change minus inventory penalty)",
}
INVENTORY = sum(n for name, n, _ in FEATURES[: [f[0] for f in FEATURES].index("inventory")])
MM_HALF_SPREAD, MM_SKEW = 2.0, 2.0  # the baseline quoter's ticks from the mid, and skew


def baseline(role: RoleConfig) -> Policy:
    if role.role == "execution":
        return lambda obs: np.zeros((len(obs), 2))
    if role.role == "directional":
        return lambda obs: np.zeros((len(obs), 1))
    span = max(role.max_offset_ticks - 1, 1)

    def quoter(obs: np.ndarray) -> np.ndarray:
        skew = MM_SKEW * obs[:, INVENTORY]  # position / max_inventory
        bid = MM_HALF_SPREAD + skew  # long: bid further away, ask closer
        ask = MM_HALF_SPREAD - skew
        out = np.ones((len(obs), 4))
        out[:, 0] = 2 * (np.clip(bid, 1, role.max_offset_ticks) - 1) / span - 1
        out[:, 1] = 2 * (np.clip(ask, 1, role.max_offset_ticks) - 1) / span - 1
        return out

    return quoter


def run_episode(
    env: MarketEnv, seed: int, policies: dict[str, Policy], trace: bool = False
) -> tuple[dict[str, float], dict]:
    """Each agent's return in one seeded episode; with ``trace``, the mid and the agents'
    position changes per step (for the plot)."""
    obs, _ = env.reset(seed=seed)
    returns = dict.fromkeys(env.agents, 0.0)
    mids, trades = [env.arrival_mid], {a: [] for a in env.agents}
    done = False
    while not done:
        actions = {a: policies[role_of(a)](obs[a][None, :])[0] for a in env.agents}
        before = {a: env.learners[a].inventory for a in env.agents}
        obs, rewards, terminated, _, infos = env.step(actions)
        for a, r in rewards.items():
            returns[a] += r
        if trace:
            mids.append(float(env.history[0, MID]))
            for a in env.agents:
                trades[a].append(infos[a]["inventory"] - before[a])
        done = terminated["__all__"]
    return returns, {"mid": mids, "trades": trades}


def role_mean(returns: dict[str, float], role: str) -> float:
    return float(np.mean([r for a, r in returns.items() if role_of(a) == role]))


def bootstrap_ci(diffs: np.ndarray, seed: int = 0, draws: int = 2000) -> list[float]:
    rng = np.random.default_rng(seed)
    means = rng.choice(diffs, size=(draws, len(diffs)), replace=True).mean(axis=1)
    return [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]


def evaluate(
    config: EnvConfig, trained: dict[str, Policy], episodes: int, seed_start: int
) -> tuple[dict, dict]:
    """The report (the JSON of ``mars-ray rl evaluate``) and one traced episode."""
    env = MarketEnv(config)
    roles = sorted({g.role for g in config.agents})
    base = {g.role: baseline(g) for g in config.agents}
    results: dict[str, dict[str, list[float]]] = {
        r: {"trained": [], "baseline": [], "with_baseline": []} for r in roles
    }
    for seed in range(seed_start, seed_start + episodes):
        all_trained, _ = run_episode(env, seed, trained)
        for r in roles:
            results[r]["trained"].append(role_mean(all_trained, r))
            swapped, _ = run_episode(env, seed, {**trained, r: base[r]})
            results[r]["baseline"].append(role_mean(swapped, r))
            alone, _ = run_episode(env, seed, {**base, r: trained[r]})
            results[r]["with_baseline"].append(role_mean(alone, r))
    _, trace = run_episode(env, seed_start, trained, trace=True)
    report: dict = {"policies": {}, "cross_play": {}}
    for r in roles:
        t, b = np.array(results[r]["trained"]), np.array(results[r]["baseline"])
        report["policies"][r] = {
            "episodes": episodes,
            "trained_mean": float(t.mean()),
            "baseline_mean": float(b.mean()),
            "diff_mean": float((t - b).mean()),
            "diff_ci95": bootstrap_ci(t - b, seed=seed_start),
            "unit": UNITS[r],
        }
        report["cross_play"][r] = {
            "with_trained": float(t.mean()),
            "with_baseline": float(np.mean(results[r]["with_baseline"])),
        }
    report["distributions"] = results
    return report, trace


def load_policies(run: Path, roles: list[str]) -> dict[str, Policy]:
    out = {}
    for role in roles:
        weights = PolicyWeights.load(run / "policies" / f"{role}.npz")
        out[role] = weights.act
    return out


def write_report(report: dict, path: Path) -> None:
    public = {k: v for k, v in report.items() if k != "distributions"}
    path.write_text(json.dumps(public, indent=2) + "\n")


def plot_report(report: dict, trace: dict, path: Path) -> None:
    """Per role, the distributions of trained and baseline returns; then one episode's mid
    with each agent's trades marked (up: bought, down: sold)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    roles = sorted(report["policies"])
    fig, axes = plt.subplots(1, len(roles) + 1, figsize=(4 * (len(roles) + 1), 3.5))
    for ax, r in zip(axes, roles, strict=False):
        d = report["distributions"][r]
        ax.hist([d["trained"], d["baseline"]], bins=20, label=["trained", "baseline"])
        ax.set_title(f"{r}: return per episode")
        ax.legend(fontsize=8)
    ax = axes[-1]
    ax.plot(trace["mid"], color="black", lw=1, label="mid")
    for k, (agent, changes) in enumerate(sorted(trace["trades"].items())):
        steps = np.arange(1, len(changes) + 1)
        c = np.asarray(changes)
        mids = np.asarray(trace["mid"][1:])
        color = f"C{k}"
        ax.scatter(steps[c > 0], mids[c > 0], marker="^", color=color, label=agent, s=20)
        ax.scatter(steps[c < 0], mids[c < 0], marker="v", color=color, s=20)
    ax.set_title("one episode: mid (ticks) and trades")
    ax.set_xlabel("step")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
