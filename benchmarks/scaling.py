"""Scaling of the order model: validation loss against model size and training-data size.

    python benchmarks/scaling.py [--corpus PATH] [--steps N] [--batch B] [--json OUT]
                                 [--plot docs/scaling.png] [--orders 30000,300000,3000000]
                                 [--models N] [--threads T]

Defaults: 800 steps x batch 16 per run, 1 torch thread (2 threads on the shared 2-core
machine were 10-100x slower); the default 4 x 3 grid took about 7 minutes there.

Trains a grid of model sizes x training-data sizes with the project's ``Trainer`` (the code
behind ``mars-ray train``) and records, per run, the final validation loss (mean NLL per
order in nats over the fixed evaluation windows of the validation split), the parameter
count, the number of training orders (``optim.max_train_orders``: the first N orders of the
training split, in corpus order), the steps and the wall time. Every run has the same seed,
steps, batch, learning-rate schedule and block_size (64, to keep it cheap), so the grid
differs only in the model shape and the data prefix.

Two things are shared across runs instead of redone by every ``Trainer``:
- the corpus is read once, and each split / prefix is cut and tokenized once
  (``SharedCorpus`` hands each ``Trainer`` its ``TrainingData``);
- the tokenizer is fitted once on the *whole* training split, so every run predicts the same
  token vocabulary and the losses of different data sizes are comparable (a ``Trainer`` on
  its own fits the size / gap bins on its data prefix).
The unigram / Markov baselines depend only on the data, so they are computed once per data
size. Run outputs (checkpoints) go to a temporary directory that is deleted at the end.

Prints a progress line per run and a table; ``--json`` writes
``{"runs": [{"params", "train_orders", "validation_loss", "steps", "seconds", ...}]}``;
``--plot`` writes a log-log figure with two panels (loss against parameters, one line per
data size; loss against training orders, one line per model size). See docs/scaling.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from provenance import write_json

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mars_ray.lmm.corpus import load_corpus  # noqa: E402
from mars_ray.lmm.dataset import fit_tokenizer, split_table  # noqa: E402
from mars_ray.lmm.train import (  # noqa: E402
    ModelSection,
    OptimSection,
    TrainConfig,
    Trainer,
    TrainingData,
    tokenize_held_out,
    training_data,
)

# (n_layer, n_head, n_embd): about 8k to 0.9M parameters (two orders of magnitude).
MODEL_SIZES: tuple[tuple[int, int, int], ...] = ((1, 2, 16), (2, 2, 32), (2, 4, 64), (4, 4, 128))
DATA_SIZES: tuple[int, ...] = (30_000, 300_000, 3_000_000)
BLOCK_SIZE = 64
SEED = 1


class SharedCorpus:
    """Every run's ``TrainingData`` from one in-memory copy of the corpus.

    Reading the corpus and tokenizing a split take seconds each on 8.4M rows, so the
    corpus is read once, the validation and test splits are tokenized once, and each
    training prefix once per data size. The tokenizer is the one fitted on the *whole*
    training split, whatever prefix a run trains on.
    """

    def __init__(self, corpus: Path) -> None:
        self.table = load_corpus(corpus)
        self.tokenizer = fit_tokenizer(split_table(self.table, "train"))
        self.held_out = tokenize_held_out(self.table, self.tokenizer)
        self._by_size: dict[int | None, TrainingData] = {}

    def data(self, config: TrainConfig) -> TrainingData:
        orders = config.optim.max_train_orders
        if orders not in self._by_size:
            self._by_size[orders] = training_data(self.table, config, self.tokenizer, self.held_out)
        return self._by_size[orders]


def run_config(
    corpus: Path, out: Path, shape: tuple[int, int, int], orders: int, steps: int, batch: int
) -> TrainConfig:
    n_layer, n_head, n_embd = shape
    return TrainConfig(
        name=f"scaling-d{n_embd}-l{n_layer}-n{orders}",
        seed=SEED,
        corpus=corpus,
        out=out,
        device="cpu",
        model=ModelSection(
            n_layer=n_layer, n_head=n_head, n_embd=n_embd, block_size=BLOCK_SIZE, dropout=0.0
        ),
        optim=OptimSection(
            steps=steps,
            batch_size=batch,
            lr=2e-3,
            min_lr=1e-4,
            warmup=min(50, steps // 5),
            eval_every=steps,  # one evaluation, at the end
            eval_windows=64,
            checkpoint_every=steps,  # one checkpoint, at the end
            max_train_orders=orders,
        ),
    )


def run_grid(
    corpus: Path,
    steps: int,
    batch: int,
    model_sizes: tuple[tuple[int, int, int], ...],
    data_sizes: tuple[int, ...],
) -> dict[str, Any]:
    runs: list[dict[str, Any]] = []
    baselines: dict[int, dict[str, dict[str, float]]] = {}
    total = len(model_sizes) * len(data_sizes)
    begin = time.perf_counter()
    shared = SharedCorpus(corpus)
    with tempfile.TemporaryDirectory(prefix="mars-ray-scaling-") as tmp:
        print(f"corpus loaded and tokenized in {time.perf_counter() - begin:.1f} s", flush=True)
        for orders in data_sizes:
            for shape in model_sizes:
                n_layer, n_head, n_embd = shape
                config = run_config(
                    corpus, Path(tmp) / f"d{n_embd}-n{orders}", shape, orders, steps, batch
                )
                t0 = time.perf_counter()
                trainer = Trainer(config, data=shared.data(config))
                if orders in baselines:
                    trainer.baselines = baselines[orders]
                result = trainer.run()
                seconds = time.perf_counter() - t0
                baselines.setdefault(orders, result.baselines)
                final = result.history[-1]
                run = {
                    "params": result.params,
                    "train_orders": trainer.splits["train"].orders,
                    "validation_loss": final["validation_loss"],
                    "test_loss": final.get("test_loss"),
                    "train_loss": final["train_loss"],
                    "steps": result.step,
                    "seconds": round(seconds, 2),
                    "n_layer": n_layer,
                    "n_head": n_head,
                    "n_embd": n_embd,
                    "max_train_orders": orders,
                }
                runs.append(run)
                print(
                    f"[{len(runs):2d}/{total}] n_embd={n_embd:<4d} n_layer={n_layer} "
                    f"params={run['params']:>8,d} orders={run['train_orders']:>9,d} "
                    f"val={run['validation_loss']:.3f} train={run['train_loss']:.3f} "
                    f"{seconds:5.1f} s (total {time.perf_counter() - begin:5.0f} s)",
                    flush=True,
                )
    return {
        "runs": runs,
        "baselines": {str(k): v for k, v in baselines.items()},
        "settings": {
            "corpus": str(corpus),
            "steps": steps,
            "batch_size": batch,
            "block_size": BLOCK_SIZE,
            "seed": SEED,
            "device": "cpu",
            "torch_threads": torch.get_num_threads(),
            "tokenizer": "fitted once on the whole training split",
        },
        "seconds": round(time.perf_counter() - begin, 1),
    }


def print_table(result: dict[str, Any]) -> None:
    runs = result["runs"]
    data_sizes = sorted({r["train_orders"] for r in runs})
    models = sorted({(r["params"], r["n_embd"], r["n_layer"]) for r in runs})
    loss = {(r["params"], r["train_orders"]): r["validation_loss"] for r in runs}
    head = f"{'model':<18}{'params':>9}" + "".join(f"{n:>12,d}" for n in data_sizes)
    print("\nvalidation loss (nats/order); columns: training orders")
    print(head)
    print("-" * len(head))
    for params, n_embd, n_layer in models:
        cells = "".join(
            f"{loss[(params, n)]:>12.3f}" if (params, n) in loss else f"{'':>12}"
            for n in data_sizes
        )
        print(f"{f'd={n_embd} L={n_layer}':<18}{params:>9,d}{cells}")
    for orders, base in result["baselines"].items():
        val = base.get("validation", {})
        if val:
            print(
                f"baselines on {int(orders):,d} orders: unigram {val['unigram']:.3f}, "
                f"markov {val['markov']:.3f}"
            )
    print(f"total {result['seconds']:.0f} s")


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, FormatStrFormatter, MaxNLocator, NullLocator

    runs = result["runs"]
    s = result["settings"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for orders in sorted({r["train_orders"] for r in runs}):
        sub = [r for r in runs if r["train_orders"] == orders]
        pts = sorted((r["params"], r["validation_loss"]) for r in sub)
        (line,) = left.plot(*zip(*pts, strict=True), "o-", label=f"{orders:,d} orders")
        markov = result["baselines"].get(str(sub[0]["max_train_orders"]), {}).get("validation")
        if markov:  # the Witten-Bell bigram fitted on the same orders, for reference
            left.axhline(markov["markov"], color=line.get_color(), ls=":", lw=1)
    for params in sorted({r["params"] for r in runs}):
        sub = [r for r in runs if r["params"] == params]
        pts = sorted((r["train_orders"], r["validation_loss"]) for r in sub)
        label = f"d={sub[0]['n_embd']} L={sub[0]['n_layer']} ({params:,d})"
        right.plot(*zip(*pts, strict=True), "s-", label=label)
    for ax, xlabel, title in (
        (left, "parameters", "loss vs model size"),
        (right, "training orders (max_train_orders)", "loss vs data size"),
    ):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    left.text(
        0.02,
        0.02,
        "dotted: bigram (Markov) baseline on the same orders",
        transform=left.transAxes,
        fontsize=7,
    )
    low, high = left.get_ylim()  # plain-number ticks on the log axis (it spans < 1 decade)
    ticks = [t for t in MaxNLocator(nbins=12).tick_values(low, high) if low <= t <= high]
    left.yaxis.set_major_locator(FixedLocator(ticks))
    left.yaxis.set_minor_locator(NullLocator())
    left.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    left.set_ylabel("validation NLL (nats / order)")
    fig.suptitle(
        f"order model scaling at CPU scale: {s['steps']} steps x batch {s['batch_size']} "
        f"x block {s['block_size']}, seed {s['seed']}",
        fontsize=10,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=ROOT / "corpus/default/corpus.parquet")
    parser.add_argument("--steps", type=int, default=800, help="optimiser steps per run")
    parser.add_argument("--batch", type=int, default=16, help="windows per step")
    parser.add_argument(
        "--orders",
        default=",".join(str(n) for n in DATA_SIZES),
        help="comma-separated training-data sizes (max_train_orders)",
    )
    parser.add_argument("--models", type=int, default=len(MODEL_SIZES), help="first N shapes")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (default 1: on a shared 2-core machine 2 threads ran 10-100x slower)",
    )
    parser.add_argument("--json", type=Path, help="write the runs as JSON here")
    parser.add_argument("--plot", type=Path, help="write the log-log figure (PNG) here")
    args = parser.parse_args(argv)
    if not args.corpus.exists():
        parser.error(
            f"{args.corpus} not found; build it with `mars-ray data build-corpus "
            "configs/corpus.yaml`"
        )
    data_sizes = tuple(int(n) for n in args.orders.split(","))
    torch.set_num_threads(args.threads)
    result = run_grid(args.corpus, args.steps, args.batch, MODEL_SIZES[: args.models], data_sizes)
    print_table(result)
    if args.json:
        write_json(args.json, result)
        print(f"wrote {args.json}")
    if args.plot:
        plot(result, args.plot)
        print(f"wrote {args.plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
