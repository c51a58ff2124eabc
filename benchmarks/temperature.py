"""The LMM's sampling temperature by LOB-Bench's protocol, on the training day by default.

    python benchmarks/temperature.py [--ticker GOOG] [--temperatures 1.0 0.9 0.8]
                                     [--windows N] [--horizon-s S] [--seed K] [--json OUT]

For each temperature, ``configs/lmm_realism.yaml`` with that ``temperature`` goes through
``mars-ray report lob-bench`` against the ticker's day of ``../shared/data/lobster``; the
table says what the realism config's temperature was chosen by (docs/lmm.md, The
temperature): the scores within 2x of the floor, the response after a market order, the
pace and the stylized facts. Choosing on the training day (GOOG) keeps the held-out day
(AAPL) for the figures.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import yaml
from provenance import ROOT, write_json

from mars_ray.cli import cli
from mars_ray.data.lobster import data_root


def summary(report: dict[str, Any]) -> dict[str, Any]:
    """What the table shows of one ``lob-bench`` JSON."""
    scores = report["scores"]
    floored = [s for s in scores.values() if (s.get("floor") or {}).get("l1")]
    facts = report["stylized_facts"]
    real = [name for name, fact in facts.items() if fact["real"]]
    impact = report["impact"]
    return {
        "within_2x_floor": sum(s["lmm"]["l1"] <= 2 * s["floor"]["l1"] for s in floored),
        "with_floor": len(floored),
        "closer_than_baseline": sum(
            s["lmm"]["l1"] is not None
            and s["baseline"]["l1"] is not None
            and s["lmm"]["l1"] < s["baseline"]["l1"]
            for s in scores.values()
        ),
        "scores": len(scores),
        "market_response": [impact["lmm"]["market_0"], impact["lmm"]["market_1"]],
        "market_response_floor": [impact["floor"]["market_0"], impact["floor"]["market_1"]],
        "messages_per_s": report["messages_per_s"]["lmm"],
        "messages_per_s_real": report["messages_per_s"]["real"],
        "facts_present": sum(facts[name]["lmm"] for name in real),
        "facts_real": len(real),
        "sign_autocorrelation_lag1": report["market_sign_autocorrelation"]["lmm"][0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticker", default="GOOG")
    parser.add_argument("--temperatures", type=float, nargs="+", default=[1.0, 0.9, 0.8])
    parser.add_argument("--windows", type=int, default=10)
    parser.add_argument("--horizon-s", type=float, default=300.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=ROOT / "docs" / "temperature.json")
    args = parser.parse_args()
    template = yaml.safe_load((ROOT / "configs" / "lmm_realism.yaml").read_text())
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for temperature in args.temperatures:
            template["agents"][0]["params"]["temperature"] = temperature
            config, out = Path(tmp) / "lmm.yaml", Path(tmp) / "report.json"
            config.write_text(yaml.safe_dump(template))
            command = ["report", "lob-bench", "--reference", str(data_root() / "lobster")]
            command += ["--ticker", args.ticker, "--windows", str(args.windows)]
            command += ["--horizon-s", str(args.horizon_s), "--seed", str(args.seed)]
            command += ["--lmm-config", str(config), "--quiet"]
            command += ["--baseline-config", str(ROOT / "configs" / "agents_realism.yaml")]
            cli.main([*command, "--json", str(out)], standalone_mode=False)
            rows[str(temperature)] = summary(json.loads(out.read_text()))
    print(f"\n{args.ticker}, {args.windows} windows of {args.horizon_s:g} s, seed {args.seed}")
    print("temperature  within 2x  closer  market response (floor)    msgs/s (real)  facts")
    for temperature, row in rows.items():
        response = "{:.2f} / {:.2f}".format(*row["market_response"])
        floor = "{:.2f} / {:.2f}".format(*row["market_response_floor"])
        print(
            f"{temperature:>11}  {row['within_2x_floor']:>3} of {row['with_floor']:<3} "
            f"{row['closer_than_baseline']:>3} of {row['scores']:<3} {response} ({floor})  "
            f"{row['messages_per_s']:5.1f} ({row['messages_per_s_real']:.1f})    "
            f"{row['facts_present']} of {row['facts_real']}"
        )
    write_json(
        args.json,
        {
            "ticker": args.ticker,
            "windows": args.windows,
            "horizon_s": args.horizon_s,
            "seed": args.seed,
            "temperatures": rows,
        },
    )
    print(f"json: {args.json}")


if __name__ == "__main__":
    main()
