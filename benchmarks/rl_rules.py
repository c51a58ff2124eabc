"""Fixed hand rules for each RL role against the baselines, by `mars-ray rl evaluate`'s code.

    python benchmarks/rl_rules.py [--config CONFIG] [--episodes N] [--seed-start S]
                                  [--execution PACE,AGGRESSION ...] [--others RUN]
                                  [--json OUT]

Before training: does a good policy exist in the config's market and action space? Each
role gets a constant rule in its own action space (``mars_ray.rl.evaluate.evaluate``
runs them exactly as it runs trained policies: paired by seed, percentile bootstrap of the
mean difference, the median quoted spread the rules met). The rules:

- execution: a constant ``[pace, aggression]`` (each ``--execution`` value is one full
  evaluation; default 0,0.2: the TWAP slice, one tick inside the own touch in a 30-tick
  spread);
- market_maker: the baseline's skewed quoter, at ``--mm-half-spread`` ticks from the mid;
- directional: a constant long target of ``--target`` × max_inventory (the buy parent
  order pushes the market up).

``--others RUN`` (a run folder of ``mars-ray rl train``; ``shipped``: the shipped policies)
puts that run's trained market maker and directional trader in the market instead of
their rules: does the execution rule still beat TWAP among trained counterparts?
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from provenance import write_json

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agents.rl_policy import SHIPPED  # noqa: E402
from mars_ray.rl.config import load_rl_config  # noqa: E402
from mars_ray.rl.evaluate import Policy, evaluate, load_policies, quoter  # noqa: E402


def constant(*action: float) -> Policy:
    row = np.array(action, dtype=np.float64)
    return lambda obs: np.tile(row, (len(obs), 1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(ROOT / "configs/rl/market.yaml"))
    ap.add_argument("--episodes", type=int, default=200)
    ap.add_argument("--seed-start", type=int, default=1_000_000)
    ap.add_argument("--execution", action="append", help="PACE,AGGRESSION (repeatable)")
    ap.add_argument("--mm-half-spread", type=float, default=20.0)
    ap.add_argument("--target", type=float, default=0.25)
    ap.add_argument("--others", help="trained counterparts: a run folder, or 'shipped'")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    config = load_rl_config(args.config).env
    maker = next(g for g in config.agents if g.role == "market_maker")
    others: dict[str, Policy] = {}
    if args.others:
        run = SHIPPED if args.others == "shipped" else Path(args.others)
        others = load_policies(run, ["market_maker", "directional"])
    rows, reports = [], {}
    for spec in args.execution or ["0,0.2"]:
        pace, aggression = (float(x) for x in spec.split(","))
        rules = {
            "execution": constant(pace, aggression),
            "market_maker": quoter(maker, args.mm_half_spread),
            "directional": constant(args.target),
            **others,
        }
        report, _ = evaluate(config, rules, args.episodes, args.seed_start)
        report.pop("distributions")
        reports[spec] = report
        for role, r in sorted(report["policies"].items()):
            rows.append((spec, role, r, report["market"]["median_spread_bp"]))
    print(f"{args.episodes} held-out seeds from {args.seed_start}; {args.config}")
    print(f"{'execution rule':>15} {'role':>13} {'rule':>9} {'baseline':>9} "
          f"{'difference [95% CI]':>26} {'median spread bp':>17}")  # fmt: skip
    for spec, role, r, spread in rows:
        lo, hi = r["diff_ci95"]
        print(
            f"{spec:>15} {role:>13} {r['trained_mean']:9.2f} {r['baseline_mean']:9.2f} "
            f"{r['diff_mean']:+9.2f} [{lo:+7.2f}, {hi:+7.2f}] {spread:17.2f}"
        )
    write_json(
        args.json,
        {
            "episodes": args.episodes,
            "seed_start": args.seed_start,
            "config": args.config,
            "mm_half_spread": args.mm_half_spread,
            "directional_target": args.target,
            "others": args.others,
            "by_execution_rule": reports,
        },
    )


if __name__ == "__main__":
    main()
