"""Controllable generation: does the generated mid follow a target the user sets?

    python benchmarks/control.py [--json OUT] [--plot PNG] [--checkpoint PATH]
                                 [--corpus PATH] [--batch-model PATH] [--seconds S]
                                 [--ticks N] [--books B] [--seed N] [--threads N]

The order model generates ``--books`` independent books (one per seed, ``simulate`` in
mars_ray/lmm/control.py: books that only the model trades, the LMM agent's ShadowBook and
decoding rules) for ``--seconds`` from 10:00, from the corpus's median book shape. It is
run without control, then steered toward a rising and a falling target (a ramp of
``--ticks`` ticks over the run, relative to the start mid), then toward a low and a high
volatility (0.5x and 2x the free run's std of 10 s mid changes). Reported per target:
RMS and final tracking error (ticks, mean over books) and the correlation of each path
with the target, with and without control; for volatility, the realised std after the
first minute. The order-batch model behind the controller is trained on the corpus
first (its validation NLL against the naive forecasts is reported too), unless
``--batch-model`` gives a saved one.

The order model: ``--checkpoint``, else the shipped mars_ray/lmm/checkpoints/lmm-small.pt,
else the newest runs/lmm-small*/model.pt; with none of them it says so and exits 2.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mars_ray.lmm.batch_model import (  # noqa: E402
    BatchConfig,
    load_batch_model,
    save_batch_model,
    train_batch_model,
)
from mars_ray.lmm.checkpoint import SHIPPED, load_model  # noqa: E402
from mars_ray.lmm.control import (  # noqa: E402
    FlowController,
    MidPath,
    SimResult,
    Volatility,
    simulate,
    tracking,
)
from mars_ray.lmm.tokenizer import OPEN_NS  # noqa: E402

START = OPEN_NS + 30 * 60 * 10**9  # 10:00
SETTLE_S = 60  # volatility is measured after this


def find_checkpoint(given: str | None) -> Path | None:
    if given:
        return Path(given)
    if SHIPPED.is_file():
        return SHIPPED
    runs = sorted(ROOT.glob("runs/lmm-small*/model.pt"), key=lambda p: p.stat().st_mtime)
    return runs[-1] if runs else None


def realised_vol(result: SimResult, settle_s: int = SETTLE_S) -> float:
    """Std of the 10 s mid changes after ``settle_s`` (mids are sampled every second)."""
    return float(np.diff(result.mids[:, settle_s::10], axis=1).std())


def ramp(result: SimResult, seconds: float, ticks: float) -> np.ndarray:
    t0 = result.grid_ns[0]
    return np.interp(result.grid_ns, [t0, t0 + seconds * 1e9], [0.0, ticks])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path)
    ap.add_argument("--plot", type=Path)
    ap.add_argument("--checkpoint")
    ap.add_argument("--corpus", type=Path, default=ROOT / "corpus/default/corpus.parquet")
    ap.add_argument("--batch-model", type=Path, help="a saved order-batch model to use")
    ap.add_argument("--save-batch-model", type=Path, help="save the trained one here")
    ap.add_argument("--batch-steps", type=int, default=600)
    ap.add_argument("--seconds", type=float, default=300.0)
    ap.add_argument("--ticks", type=float, default=20.0)
    ap.add_argument("--books", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    path = find_checkpoint(args.checkpoint)
    if path is None or not path.is_file():
        why = f"{path} not found" if path else f"neither {SHIPPED} nor runs/lmm-small*/model.pt"
        print(
            f"no order model: {why} (train one with `mars-ray train configs/lmm.yaml`)",
            file=sys.stderr,
        )
        return 2
    loaded = load_model(path, device="cpu")
    model, tokenizer = loaded.model.eval(), loaded.tokenizer
    print(f"order model: {path} (step {loaded.meta.get('step')}, {model.num_params():,} params)")

    t0 = time.perf_counter()
    if args.batch_model:
        batch, history = load_batch_model(args.batch_model)
    else:
        if not args.corpus.is_file():
            print(f"no corpus at {args.corpus} for the order-batch model", file=sys.stderr)
            return 2
        batch, history = train_batch_model(args.corpus, BatchConfig(), args.batch_steps, 0)
        if args.save_batch_model:
            save_batch_model(args.save_batch_model, batch, history)
    batch_s = time.perf_counter() - t0
    last = history[-1] if history else {}
    nll = {k: v for k, v in last.items() if k.endswith("nll") and k != "train_nll"}
    print(
        f"order-batch model ({batch_s:.0f} s): " + ", ".join(f"{k} {v:.2f}" for k, v in nll.items())
    )

    def run(controller: FlowController | None) -> tuple[SimResult, float]:
        t = time.perf_counter()
        res = simulate(
            model, tokenizer, args.seconds, books=args.books, seed=args.seed,
            controller=controller, start_ns=START,
        )  # fmt: skip
        return res, time.perf_counter() - t

    free, free_s = run(None)
    orders_per_s = len(free.orders["row"]) / args.seconds / args.books
    print(f"free run: {orders_per_s:.1f} orders/s per book, {free_s:.0f} s wall")
    results: dict[str, dict] = {}
    paths: dict[str, SimResult] = {"free": free}
    for name, ticks in (("rising", args.ticks), ("falling", -args.ticks)):
        target = MidPath.ramp(START, args.seconds, ticks)
        steered, wall = run(FlowController(batch, tokenizer, target, args.books))
        paths[name] = steered
        want = ramp(steered, args.seconds, ticks)
        on = tracking(steered.grid_ns, steered.mids - steered.mids[:, :1], want)
        off = tracking(free.grid_ns, free.mids - free.mids[:, :1], want)
        results[name] = {
            "target_ticks": ticks,
            "controlled": on,
            "uncontrolled": off,
            "final_move": (steered.mids[:, -1] - steered.mids[:, 0]).tolist(),
            "mean_abs_bias": float(np.abs(steered.biases).mean()),
            "wall_s": wall,
        }
        print(
            f"{name:8s} target {ticks:+.0f}: RMS error {on['rms_error']:.2f} (free "
            f"{off['rms_error']:.2f}), final {on['final_abs_error']:.2f} (free "
            f"{off['final_abs_error']:.2f}), correlation {on['correlation']:.2f} (free "
            f"{off['correlation']:.2f})"
        )
    natural = realised_vol(free)
    vol: dict[str, dict[str, float]] = {}
    for name, factor in (("low", 0.5), ("high", 2.0)):
        steered, wall = run(
            FlowController(batch, tokenizer, Volatility(factor * natural), args.books)
        )
        paths[f"vol_{name}"] = steered
        vol[name] = {"target": factor * natural, "realised": realised_vol(steered), "wall_s": wall}
        print(
            f"volatility {name}: target {factor * natural:.2f} ticks/10 s, realised "
            f"{vol[name]['realised']:.2f} (free {natural:.2f})"
        )

    report = {
        "checkpoint": str(path),
        "checkpoint_step": loaded.meta.get("step"),
        "seconds": args.seconds,
        "books": args.books,
        "seed": args.seed,
        "orders_per_s_per_book": orders_per_s,
        "batch_model": {"history": history, "wall_s": batch_s},
        "mid_path": results,
        "volatility": {"free": natural, **vol},
        "machine": {"python": platform.python_version(), "torch": torch.__version__,
                    "threads": torch.get_num_threads(), "cpu": platform.processor()},
    }  # fmt: skip
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    if args.plot:
        plot(paths, results, natural, vol, args, args.plot)
    return 0


def plot(
    paths: dict[str, SimResult],
    results: dict[str, dict],
    natural: float,
    vol: dict[str, dict[str, float]],
    args: argparse.Namespace,
    out: Path,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    free = paths["free"]
    minutes = (free.grid_ns - free.grid_ns[0]) / 60e9
    for ax, name in zip(axes[:2], ("rising", "falling"), strict=True):
        ticks = results[name]["target_ticks"]
        color = "C0" if ticks > 0 else "C3"
        for b in range(args.books):
            first = b == 0
            ax.plot(minutes, free.mids[b] - free.mids[b, 0], color="0.6", lw=0.8,
                    label="no control" if first else None)  # fmt: skip
            steered = paths[name].mids[b] - paths[name].mids[b, 0]
            ax.plot(minutes, steered, color=color, lw=1.0, label="controlled" if first else None)
        ax.plot(minutes, ramp(free, args.seconds, ticks), "k--", lw=2, label="target")
        on, off = results[name]["controlled"], results[name]["uncontrolled"]
        ax.set_title(
            f"{name} target: RMS error {on['rms_error']:.1f} vs {off['rms_error']:.1f} ticks,\n"
            f"correlation {on['correlation']:.2f} vs {off['correlation']:.2f}",
            fontsize=10,
        )
        ax.set_xlabel("minutes")
        ax.set_ylabel("mid - start mid (ticks)")
        ax.legend(fontsize=8, loc="best")
    ax = axes[2]
    for key, color, label in (
        ("free", "0.5", f"no control ({natural:.2f})"),
        ("vol_low", "C2", f"target {vol['low']['target']:.2f} ({vol['low']['realised']:.2f})"),
        ("vol_high", "C1", f"target {vol['high']['target']:.2f} ({vol['high']['realised']:.2f})"),
    ):
        res = paths[key]
        ax.plot(minutes, res.mids[0] - res.mids[0, 0], color=color, lw=1.0, label=label)
    ax.set_title("volatility target (std of 10 s mid changes, realised)", fontsize=10)
    ax.set_xlabel("minutes")
    ax.set_ylabel("mid - start mid (ticks), book 0")
    ax.legend(fontsize=8, loc="best")
    fig.suptitle(
        f"Steering the LMM through its kind logits ({args.books} books, {args.seconds:.0f} s each)",
        fontsize=11,
    )
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
