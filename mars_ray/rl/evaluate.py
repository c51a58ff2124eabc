"""Trained policies against their baselines on held-out seeds, paired by seed.

For each seed the same market runs several times with the same background: every role
trained (``trained``); each role on its baseline with the others trained (``baseline``);
each role trained with every other role on its baseline (cross-play). A role's difference
is its return trained minus on its baseline, paired by seed; its 95% interval is a
percentile bootstrap of the mean difference.

Baselines: execution, TWAP (the remainder spread evenly over the steps left, passive at the
own touch, the clean-up order at the end); market_maker, a fixed-spread quoter skewed
against its inventory (the ``market_maker`` agent kind's rule), 2 ticks from the mid
(or the role's ``min_offset_ticks``, when wider);
directional, flat. Reported beside them (``also``): buy-and-hold for the directional role
(the full long position from the first step, which a market that a buy parent order
pushes up rewards), and the quoter at half the maker's widest offset. ``market`` gives the
median quoted spread the trained agents met and the mid's move over their episodes.
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


def buy_and_hold(obs: np.ndarray) -> np.ndarray:
    """The directional role's second baseline: the full long position, held."""
    return np.ones((len(obs), 1))


def baseline(role: RoleConfig) -> Policy:
    if role.role == "execution":
        return lambda obs: np.zeros((len(obs), 2))
    if role.role == "directional":
        return lambda obs: np.zeros((len(obs), 1))
    return quoter(role, MM_HALF_SPREAD)


def quoter(role: RoleConfig, half_spread: float) -> Policy:
    """Full-lot quotes ``half_spread`` ticks from the mid, skewed against the inventory."""
    low, high = role.min_offset_ticks, role.max_offset_ticks
    span = max(high - low, 1)

    def act(obs: np.ndarray) -> np.ndarray:
        skew = MM_SKEW * obs[:, INVENTORY]  # position / max_inventory
        bid = half_spread + skew  # long: bid further away, ask closer
        ask = half_spread - skew
        out = np.ones((len(obs), 4))
        out[:, 0] = 2 * (np.clip(bid, low, high) - low) / span - 1
        out[:, 1] = 2 * (np.clip(ask, low, high) - low) / span - 1
        return out

    return act


def other_baselines(config: EnvConfig) -> dict[str, tuple[str, Policy]]:
    """Baselines reported beside the main ones: buy-and-hold for the directional role, and
    for the market maker the same quoter at half its widest offset (a spread nearer a
    wide market's own than the main quoter's 2 ticks)."""
    out: dict[str, tuple[str, Policy]] = {}
    for role in config.agents:
        if role.role == "directional":
            out["directional"] = ("buy_and_hold", buy_and_hold)
        elif role.role == "market_maker":
            half = max(role.max_offset_ticks // 2, 1)
            out["market_maker"] = (f"quoter_{half}_ticks", quoter(role, half))
    return out


def run_episode(
    env: MarketEnv, seed: int, policies: dict[str, Policy], trace: bool = False
) -> tuple[dict[str, float], dict]:
    """Each agent's return in one seeded episode, and the quoted spread (bp of the mid) at
    each decision; with ``trace``, the mid and the agents' position changes per step."""
    obs, _ = env.reset(seed=seed)
    returns = dict.fromkeys(env.agents, 0.0)
    mids, trades = [env.arrival_mid], {a: [] for a in env.agents}
    spreads: list[float] = []
    done = False
    while not done:
        ask, bid = float(env.depth[0, 0]), float(env.depth[0, 2])
        if 0 < bid < ask:
            spreads.append((ask - bid) / (ask + bid) * 2e4)
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
    return returns, {"mid": mids, "trades": trades, "spread_bp": spreads}


def role_mean(returns: dict[str, float], role: str) -> float:
    return float(np.mean([r for a, r in returns.items() if role_of(a) == role]))


def bootstrap_ci(diffs: np.ndarray, seed: int = 0, draws: int = 2000) -> list[float]:
    rng = np.random.default_rng(seed)
    means = rng.choice(diffs, size=(draws, len(diffs)), replace=True).mean(axis=1)
    return [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]


def paired(trained: np.ndarray, base: np.ndarray, seed_start: int) -> dict:
    """Means, the mean difference and its bootstrap 95% interval, paired by seed."""
    return {
        "episodes": len(trained),
        "trained_mean": float(trained.mean()),
        "baseline_mean": float(base.mean()),
        "diff_mean": float((trained - base).mean()),
        "diff_ci95": bootstrap_ci(trained - base, seed=seed_start),
    }


def validate(
    config: EnvConfig, trained: dict[str, Policy], role: str, episodes: int, seed_start: int
) -> dict:
    """``role``'s trained policy against its baseline, the others trained: what a run's
    checkpoint selection scores (two episodes a seed, where ``evaluate`` runs nine)."""
    env = MarketEnv(config)
    base = next(baseline(g) for g in config.agents if g.role == role)
    t, b = [], []
    for seed in range(seed_start, seed_start + episodes):
        t.append(role_mean(run_episode(env, seed, trained)[0], role))
        b.append(role_mean(run_episode(env, seed, {**trained, role: base})[0], role))
    env.close()
    return paired(np.array(t), np.array(b), seed_start)


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
    also = other_baselines(config)
    also_returns: dict[str, list[float]] = {r: [] for r in also}
    spreads: list[float] = []
    moves: list[float] = []
    for seed in range(seed_start, seed_start + episodes):
        all_trained, seen = run_episode(env, seed, trained, trace=True)
        spreads += seen["spread_bp"]
        moves.append((seen["mid"][-1] / seen["mid"][0] - 1) * 1e4)
        for r, (_, policy) in also.items():
            other, _ = run_episode(env, seed, {**trained, r: policy})
            also_returns[r].append(role_mean(other, r))
        for r in roles:
            results[r]["trained"].append(role_mean(all_trained, r))
            swapped, _ = run_episode(env, seed, {**trained, r: base[r]})
            results[r]["baseline"].append(role_mean(swapped, r))
            alone, _ = run_episode(env, seed, {**base, r: trained[r]})
            results[r]["with_baseline"].append(role_mean(alone, r))
    _, trace = run_episode(env, seed_start, trained, trace=True)
    report: dict = {"policies": {}, "cross_play": {}, "also": {}}
    for r in roles:
        t, b = np.array(results[r]["trained"]), np.array(results[r]["baseline"])
        report["policies"][r] = {**paired(t, b, seed_start), "unit": UNITS[r]}
        report["cross_play"][r] = {
            "with_trained": float(t.mean()),
            "with_baseline": float(np.mean(results[r]["with_baseline"])),
        }
    for r, (name, _) in also.items():
        t, b = np.array(results[r]["trained"]), np.array(also_returns[r])
        report["also"][r] = {
            "baseline": name,
            "baseline_mean": float(b.mean()),
            "diff_mean": float((t - b).mean()),
            "diff_ci95": bootstrap_ci(t - b, seed=seed_start),
        }
    report["market"] = {
        "median_spread_bp": float(np.median(spreads)),
        "median_spread_ticks": float(np.median(spreads) * env.arrival_mid / 1e4),
        "mid_move_bp_mean": float(np.mean(moves)),
        "mid_move_bp_sd": float(np.std(moves)),
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
