"""LOB-Bench's protocol on the held-out real day, stamped with its provenance.

    python benchmarks/lob_bench.py [--windows N] [--horizon-s S] [--seed K]
                                   [--json OUT] [--plot DIR]

Runs ``mars-ray report lob-bench`` (the command docs/lmm.md shows) on the AAPL day of
``../shared/data/lobster`` with the README's two realism configs, and adds the command,
commit and machine (``provenance.py``) to its JSON, so docs/lob_bench.json says what made it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from provenance import ROOT, write_json

sys.path.insert(0, str(ROOT))

from mars_ray.cli import cli
from mars_ray.data.lobster import data_root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=10)
    parser.add_argument("--horizon-s", type=float, default=300.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=ROOT / "docs" / "lob_bench.json")
    parser.add_argument("--plot", type=Path, default=ROOT / "docs")
    args = parser.parse_args()
    command = ["report", "lob-bench", "--reference", str(data_root() / "lobster")]
    command += ["--ticker", "AAPL", "--windows", str(args.windows)]
    command += ["--horizon-s", str(args.horizon_s), "--seed", str(args.seed)]
    command += ["--lmm-config", str(ROOT / "configs" / "lmm_realism.yaml")]
    command += ["--baseline-config", str(ROOT / "configs" / "agents_realism.yaml")]
    command += ["--json", str(args.json), "--plot", str(args.plot)]
    cli.main(command, standalone_mode=False)
    write_json(args.json, json.loads(args.json.read_text()))


if __name__ == "__main__":
    main()
