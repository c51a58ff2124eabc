"""Controllable generation through the clearing house: does the LMM agent follow a target?

    python benchmarks/control.py [--json OUT] [--plot PNG] [--checkpoint PATH]
                                 [--batch-model PATH] [--seconds S] [--ticks N]
                                 [--books B] [--seed N] [--threads N]

Every run is a simulation (``mars_ray/reports/control.py``): one instrument, ``--books``
trajectories, the LMM agent the only trader from a start ladder of its own, for
``--seconds`` from 10:00, steered by its ``control`` param inside its own decoding loop.
Runs: no control (the negative control); a mid ramp of +``--ticks`` and of -``--ticks``
over the window; volatility targets 0.5x and 2x the free run's std of 10 s mid changes;
volume targets 0.5x and 2x its order rate. Reported: for the ramps, RMS and final tracking
error (ticks, mean over books) and the correlation of each path with the target, with and
without control; for the others, the realised value after the first minute against the
target and the free run.

The order model: ``--checkpoint``, else the shipped mars_ray/lmm/checkpoints/lmm-small.pt;
the controller's order-batch model: ``--batch-model``, else the shipped batch-small.pt.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from provenance import write_json

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mars_ray.lmm.batch_model import SHIPPED_BATCH  # noqa: E402
from mars_ray.lmm.checkpoint import SHIPPED  # noqa: E402
from mars_ray.reports.control import (  # noqa: E402
    ControlExperiment,
    ControlRun,
    order_rate,
    realised_volatility,
    run_control,
    tracking,
)

SETTLE_S = 60  # volatility and order rate are measured after this


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path)
    ap.add_argument("--plot", type=Path)
    ap.add_argument("--checkpoint", type=Path, default=SHIPPED)
    ap.add_argument("--batch-model", type=Path, default=SHIPPED_BATCH)
    ap.add_argument("--seconds", type=float, default=300.0)
    ap.add_argument("--ticks", type=float, default=20.0)
    ap.add_argument("--books", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    for path in (args.checkpoint, args.batch_model):
        if not path.is_file():
            print(f"not found: {path}", file=sys.stderr)
            return 2
    lmm = {"checkpoint": str(args.checkpoint), "device": "cpu", "threads": args.threads}
    experiment = ControlExperiment(args.books, args.seconds, seed=args.seed, lmm=lmm)
    batch = {"batch_model": str(args.batch_model)}

    def run(name: str, control: dict[str, Any] | None) -> ControlRun:
        result = run_control(experiment, None if control is None else {**control, **batch})
        print(f"  {name}: {result.wall_s:.0f} s wall", flush=True)
        return result

    free = run("free", None)
    runs = {"free": free}
    ramps: dict[str, dict[str, Any]] = {}
    for name, ticks in (("rising", args.ticks), ("falling", -args.ticks)):
        runs[name] = steered = run(name, experiment.mid_path(ticks))
        target = experiment.ramp(ticks)
        ramps[name] = {
            "target_ticks": ticks,
            "controlled": tracking(steered.moves, target),
            "uncontrolled": tracking(free.moves, target),
            "final_move": steered.moves[:, -1].tolist(),
            "mean_abs_kind_bias": float(steered.kind_bias.mean()),
        }
    levels: dict[str, dict[str, Any]] = {}
    for what, measure, param, key in (
        ("volatility", realised_volatility, "sigma", "ticks per 10 s"),
        ("volume", order_rate, "orders_per_s", "orders/s per book"),
    ):
        natural = measure(free, SETTLE_S)
        levels[what] = {"unit": key, "free": natural}
        for factor in (0.5, 2.0):
            name = f"{what}_{factor}x"
            runs[name] = steered = run(name, {what: {param: factor * natural}})
            levels[what][f"{factor}x"] = {
                "target": factor * natural,
                "realised": measure(steered, SETTLE_S),
                "mean_abs_kind_bias": float(steered.kind_bias.mean()),
            }
    print_table(ramps, levels)
    report = {
        "runtime": {"torch": torch.__version__, "threads": args.threads},
        "checkpoint": os.path.relpath(args.checkpoint, ROOT),
        "batch_model": os.path.relpath(args.batch_model, ROOT),
        "seeds": {"simulation": args.seed, "controller": 0},
        "books": args.books,
        "seconds": args.seconds,
        "start": "10:00",
        "settle_s": SETTLE_S,
        "mid_path": ramps,
        **levels,
        "wall_s": {name: r.wall_s for name, r in runs.items()},
    }
    write_json(args.json, report)
    if args.plot:
        plot(runs, ramps, levels, experiment, args.plot)
    return 0


def print_table(ramps: dict[str, dict[str, Any]], levels: dict[str, dict[str, Any]]) -> None:
    def cell(m: dict[str, float]) -> str:
        rms, final, corr = m["rms_error"], m["final_abs_error"], m["correlation"]
        return f"RMS {rms:5.2f}  final {final:5.2f}  corr {corr:5.2f}"

    print(f"{'mid path':16s} {'controlled':>36s} {'no control':>36s}")
    for name, r in ramps.items():
        target = f"{name} {r['target_ticks']:+.0f}"
        print(f"{target:16s} {cell(r['controlled']):>36s} {cell(r['uncontrolled']):>36s}")
    for what, level in levels.items():
        print(f"{what} ({level['unit']}): no control {level['free']:.2f}")
        for factor in ("0.5x", "2.0x"):
            c = level[factor]
            print(f"  {factor} target {c['target']:6.2f}   realised {c['realised']:6.2f}")


def plot(
    runs: dict[str, ControlRun],
    ramps: dict[str, dict[str, Any]],
    levels: dict[str, dict[str, Any]],
    experiment: ControlExperiment,
    out: Path,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(19, 4.2))
    minutes = (experiment.grid() - experiment.start) / 60e9
    free = runs["free"]
    for ax, name in zip(axes[:2], ("rising", "falling"), strict=True):
        ticks = ramps[name]["target_ticks"]
        color = "C0" if ticks > 0 else "C3"
        for b in range(experiment.books):
            first = b == 0
            ax.plot(
                minutes, free.moves[b], color="0.6", lw=0.8, label="no control" if first else None
            )
            steered = runs[name].moves[b]
            ax.plot(minutes, steered, color=color, lw=1.0, label="controlled" if first else None)
        ax.plot(minutes, experiment.ramp(ticks), "k--", lw=2, label="target")
        on, off = ramps[name]["controlled"], ramps[name]["uncontrolled"]
        ax.set_title(
            f"{name}: RMS error {on['rms_error']:.1f} vs {off['rms_error']:.1f} ticks,\n"
            f"correlation {on['correlation']:.2f} vs {off['correlation']:.2f}",
            fontsize=10,
        )
        ax.set_ylabel("mid - start mid (ticks)")

    def lines(what: str, digits: int) -> list[tuple[str, str, str]]:
        """(run, colour, label) of the free run and the two targets of ``what``."""
        level = levels[what]
        out = [("free", "0.5", f"no control ({level['free']:.{digits}f})")]
        for factor, color in (("0.5x", "C2"), ("2.0x", "C1")):
            cell = level[factor]
            label = f"target {cell['target']:.{digits}f} ({cell['realised']:.{digits}f})"
            out.append((f"{what}_{factor}", color, label))
        return out

    for key, color, label in lines("volatility", 2):
        axes[2].plot(minutes, runs[key].moves[0], color=color, lw=1.0, label=label)
    axes[2].set_title("volatility target: std of 10 s mid changes (realised)", fontsize=10)
    axes[2].set_ylabel("mid - start mid (ticks), book 0")
    for key, color, label in lines("volume", 1):
        times = np.sort(np.concatenate([o.time_ns for o in runs[key].orders]))
        per_book = np.searchsorted(times, experiment.grid()) / experiment.books
        axes[3].plot(minutes, per_book, color=color, lw=1.2, label=label)
    axes[3].set_title("volume target: orders/s per book (realised)", fontsize=10)
    axes[3].set_ylabel("orders so far, per book")
    for ax in axes:
        ax.set_xlabel("minutes from 10:00")
        ax.legend(fontsize=8, loc="best")
    fig.suptitle(
        f"Steering the LMM agent through the clearing house ({experiment.books} books, "
        f"{experiment.seconds:.0f} s each)",
        fontsize=11,
    )
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
