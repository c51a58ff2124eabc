"""LMM generation throughput: generated orders per second with the KV cache.

    python benchmarks/generation.py [--json OUT] [--checkpoint PATH | --untrained]
                                    [--device cpu|cuda] [--repeat N] [--seconds S] [--threads N]

Each measured step is what a simulation does for every new order of a batch of books:
``model.step`` (one order per row into the ring-buffer KV cache) followed by
``model.sample`` with uniforms drawn by a numpy RNG (drawing included). Book features are
held fixed, which costs the model the same as real ones. Every cache is first filled with
block_size untimed steps, so the figures are the steady state at the full context, the
state a simulated day spends nearly all its orders in.

Reported (best repeat; the median is in the JSON as well, since shared machines are noisy):
- orders/s at batch 1, 4, 64 and 256 with the KV cache, by the torch step and by the fused
  numba step (mars_ray/lmm/fast_step.py, the same cache, its rows split across torch's
  thread count above 4 rows a thread); ``orders_per_s`` has the faster path's figure at
  each batch, ``orders_per_s_by_path`` both;
- the KV-cache speed-up at the full context at batch 64: the uncached way re-runs the
  transformer over the last block_size orders of every row for each new order;
- the factorised head against the joint head (24,576-way softmax): orders/s at batch 256
  on an equally sized trunk, both untrained;
- in simulation (``--in-sim-runs``, default 1; 0 skips it): a whole day (09:30-16:00) of
  LMM flow on one book at the real day's rate, as ``mars-ray simulate`` runs it (a fresh
  embedded Ray, one shard, one torch thread: one core), in a subprocess;
  ``in_sim_day_seconds`` is its wall time end to end (median over runs), and
  ``in_sim_orders_per_s`` the LMM's order messages (new orders and cancels it sent) per
  wall second, beside the raw step rate at batch 1.

Without ``--checkpoint`` the shipped model (mars_ray/lmm/checkpoints/lmm-small.pt) is timed;
where it is missing, or with ``--untrained``, an untrained model of the intended shipped
shape (n_layer=4, n_head=4, n_embd=128, block_size=256). Weights do not change the cost.
Torch runs with its default thread count (``torch.get_num_threads()``) unless ``--threads``
says otherwise; the count is reported.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.dataset as ds
import torch
import yaml
from provenance import write_json

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mars_ray.lmm.fast_step import FastStep  # noqa: E402
from mars_ray.lmm.model import KVCache, LMMConfig, OrderModel  # noqa: E402

SHIPPED_SHAPE = LMMConfig(n_layer=4, n_head=4, n_embd=128, block_size=256)
BATCHES = (1, 4, 64, 256)
UNCACHED_BATCH = 64
TARGETS = {
    "orders_per_s_1": 5_000,
    "orders_per_s_4": 10_000,
    "orders_per_s_256": 20_000,
    "kv_cache_speedup": 10,
    "in_sim_day_seconds": 60,
}
# The real day's order rate: GOOG 2012-06-21 (the training day), 142,320 orders by the
# corpus's rule (new orders, cancels, marketable runs) over 09:30-16:00.
REAL_DAY_ORDERS_PER_S = 6.08
# One book, the LMM alone, steered to the real day's rate (configs/demo.yaml does the same).
IN_SIM_CONFIG = {
    "name": "lmm_day",
    "seed": 3,
    "session": {
        "date": "2012-06-21",
        "pre_open": "09:29",
        "open": "09:30",
        "closing_call": "15:55",
        "close": "16:00",
    },
    "kernel": {"shards": 1, "trajectories": 1, "step_ms": 1000, "sync_ms": 60000},
    "instruments": [{"name": "AAPL", "tick_size": 0.01, "reference_price": 580.0}],
    "agents": [
        {
            "kind": "lmm",
            "count": 1,
            "params": {
                "start": "09:30",
                "end": "16:00",
                "threads": 1,
                "control": {"volume": {"orders_per_s": REAL_DAY_ORDERS_PER_S}, "max_bias": 5},
            },
        }
    ],
    "output": {"snapshot_levels": 5, "snapshot_every_ms": 10000},
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Generator:
    """A batch of rows generating orders through the cache, as a simulation would."""

    def __init__(self, model: OrderModel, batch: int, seed: int = 0) -> None:
        self.model, self.batch = model, batch
        self.device = model.device
        self.rng = np.random.default_rng(seed)
        cfg = model.config
        book = torch.from_numpy(self.rng.standard_normal(cfg.n_book, dtype=np.float32))
        self.book = book.to(self.device).expand(batch, cfg.n_book).contiguous()
        self.cache: KVCache = model.new_cache(batch)
        self.comp = torch.zeros(batch, 4, dtype=torch.long, device=self.device)

    def uniforms(self) -> torch.Tensor:
        return torch.from_numpy(self.rng.random((self.batch, 4), dtype=np.float32)).to(self.device)

    def run(self, steps: int) -> None:
        with torch.inference_mode():  # as the simulations' generators run it (lmm/generate.py)
            for _ in range(steps):
                hidden = self.model.step(self.comp, self.book, self.cache)
                self.comp = self.model.sample(hidden, self.uniforms())
        _sync(self.device)


class Fused(Generator):
    """The same generation by the fused numba step, on a cache of the same layout."""

    def __init__(self, model: OrderModel, batch: int, seed: int = 0) -> None:
        super().__init__(model, batch, seed)
        self.fast = FastStep(model)
        self.rows = np.arange(batch)
        self.np_book = self.book.cpu().numpy()
        self.np_comp = np.zeros((batch, 4), dtype=np.int64)

    def run(self, steps: int) -> None:
        for _ in range(steps):
            hidden = self.fast.hidden(self.cache, self.rows, self.np_comp, self.np_book)
            self.np_comp = self.fast.sample(hidden, self.rng.random((self.batch, 4)))


class Uncached(Generator):
    """The same generation without a cache: each new order re-runs the last block_size."""

    def __init__(self, model: OrderModel, batch: int, seed: int = 0) -> None:
        super().__init__(model, batch, seed)
        T = model.config.block_size
        comp = [torch.randint(0, n, (batch, T)) for n in model.config.component_sizes]
        self.window = torch.stack(comp, dim=-1).to(self.device)
        self.books = self.book.unsqueeze(1).expand(batch, T, -1).contiguous()

    def run(self, steps: int) -> None:
        with torch.inference_mode():
            for _ in range(steps):
                hidden = self.model.hidden(self.window, self.books)[:, -1]
                new = self.model.sample(hidden, self.uniforms())
                self.window = torch.cat((self.window[:, 1:], new.unsqueeze(1)), dim=1)
        _sync(self.device)


def timed(run: Callable[[int], None], batch: int, seconds: float, repeat: int) -> dict:
    """orders/s of ``run``: steps per repeat sized from a probe to last about ``seconds``."""
    start = time.perf_counter()
    run(1)
    probe = time.perf_counter() - start
    steps = max(2, int(seconds / max(probe, 1e-6)))
    rates = []
    for _ in range(repeat):
        start = time.perf_counter()
        run(steps)
        rates.append(batch * steps / (time.perf_counter() - start))
    return {
        "batch": batch,
        "steps": steps,
        "orders_per_s": max(rates),
        "orders_per_s_median": statistics.median(rates),
        "ms_per_step": 1e3 * batch / max(rates),
    }


def cached(
    model: OrderModel, batch: int, seconds: float, repeat: int, kind: type[Generator] = Generator
) -> dict:
    gen = kind(model, batch)
    gen.run(model.config.block_size)  # fill the window (untimed)
    return timed(gen.run, batch, seconds, repeat)


def in_sim_day() -> dict:
    """One ``mars-ray simulate`` of IN_SIM_CONFIG in a subprocess: wall seconds end to end
    and the LMM's order messages (its accepted new orders, cancels and refused cancels)."""
    from mars_ray.schema.events import EventType

    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "lmm_day.yaml"
        config.write_text(yaml.safe_dump(IN_SIM_CONFIG))
        out = Path(tmp) / "run"
        command = [sys.executable, "-m", "mars_ray.cli", "simulate", str(config)]
        command += ["--out", str(out), "--no-plot", "--quiet"]
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, cwd=ROOT)
        seconds = time.perf_counter() - start
        events = ds.dataset(out / "events", format="parquet").to_table(
            columns=["event_type", "agent_id", "reason"]
        )
    lmm = pc.equal(events["agent_id"], 1)  # the only agent: the first id
    kind = events["event_type"]
    sent = pc.or_(
        pc.equal(kind, int(EventType.SUBMIT)),
        pc.or_(
            pc.and_(pc.equal(kind, int(EventType.CANCEL)), pc.is_null(events["reason"])),
            pc.equal(kind, int(EventType.REJECT)),
        ),
    )
    orders = pc.sum(pc.and_(lmm, sent)).as_py()
    return {"seconds": seconds, "orders": orders, "orders_per_s": orders / seconds}


def build(args: argparse.Namespace) -> tuple[OrderModel, str]:
    """The model to time: --checkpoint, else the shipped one, else an untrained one."""
    from mars_ray.lmm.checkpoint import SHIPPED, load_model

    torch.manual_seed(0)
    path = args.checkpoint
    if path is None and not args.untrained and SHIPPED.exists():
        path = SHIPPED
    if path is None:
        model = OrderModel(SHIPPED_SHAPE)
        why = "as asked" if args.untrained else f"no checkpoint given and no {SHIPPED.name}"
        source = f"untrained model with the intended shipped shape ({why})"
    else:
        model = load_model(path, device=args.device).model
        source = f"checkpoint {path}"
    return model.to(args.device).eval(), source


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument(
        "--checkpoint", type=Path, help="model checkpoint (default: the shipped lmm-small.pt)"
    )
    parser.add_argument(
        "--untrained", action="store_true", help="time an untrained model of the shipped shape"
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--repeat", type=int, default=7, help="timed repeats per figure")
    parser.add_argument("--seconds", type=float, default=0.5, help="target length of a repeat")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's own)")
    parser.add_argument(
        "--versus",
        type=Path,
        help="also time this checkpoint at batch 256, interleaved with the model's own repeats "
        "(this machine's speed drifts between runs; interleaving keeps the comparison fair)",
    )
    parser.add_argument(
        "--in-sim-runs",
        type=int,
        default=1,
        help="whole simulated days of LMM flow to time (median); 0 skips them",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    model, source = build(args)
    cfg = model.config
    threads = torch.get_num_threads()
    print(f"model: {source}")
    print(
        f"  n_layer={cfg.n_layer} n_head={cfg.n_head} n_embd={cfg.n_embd} "
        f"block_size={cfg.block_size} head={cfg.head}, {model.num_params():,} parameters"
    )
    print(f"device: {args.device}, torch threads: {threads}, best of {args.repeat} repeats\n")

    runs = {b: cached(model, b, args.seconds, args.repeat) for b in BATCHES}
    fused = {}
    if args.device == "cpu":
        fused = {b: cached(model, b, args.seconds, args.repeat, Fused) for b in BATCHES}
    print(f"{'path':>6} {'batch':>6} {'orders/s':>11} {'median':>11} {'ms/step':>9}")
    for path, by_batch in (("torch", runs), ("fused", fused)):
        for b, r in by_batch.items():
            print(
                f"{path:>6} {b:>6} {r['orders_per_s']:>11,.0f} "
                f"{r['orders_per_s_median']:>11,.0f} {r['ms_per_step']:>9.2f}"
            )
    best = {
        str(b): max(runs[b]["orders_per_s"], fused[b]["orders_per_s"] if fused else 0.0)
        for b in BATCHES
    }

    unc = Uncached(model, UNCACHED_BATCH)
    uncached = timed(unc.run, UNCACHED_BATCH, args.seconds, args.repeat)
    speedup = runs[UNCACHED_BATCH]["orders_per_s"] / uncached["orders_per_s"]
    print(
        f"\nKV cache at the full context ({cfg.block_size} orders), batch {UNCACHED_BATCH}: "
        f"{runs[UNCACHED_BATCH]['orders_per_s']:,.0f} vs uncached "
        f"{uncached['orders_per_s']:,.0f} orders/s = {speedup:.1f}x"
    )

    heads = {}
    for head in ("factorised", "joint"):
        torch.manual_seed(0)
        trunk = replace(cfg, head=head, dropout=0.0)
        m = OrderModel(trunk).to(args.device).eval()
        r = cached(m, 256, args.seconds, args.repeat)
        heads[head] = {"params": m.num_params(), **r}
    print(f"\n{'head (batch 256)':<18} {'params':>10} {'orders/s':>11} {'median':>11}")
    for head, r in heads.items():
        print(
            f"{head:<18} {r['params']:>10,} {r['orders_per_s']:>11,.0f} "
            f"{r['orders_per_s_median']:>11,.0f}"
        )
    ratio = heads["factorised"]["orders_per_s"] / heads["joint"]["orders_per_s"]
    print(f"factorised / joint: {ratio:.2f}x")

    versus = None
    if args.versus:
        from mars_ray.lmm.checkpoint import load_model

        other = load_model(args.versus, device=args.device).model.eval()
        gens = {"model": Generator(model, 256), "versus": Generator(other, 256)}
        for gen in gens.values():
            gen.run(cfg.block_size)
        top = dict.fromkeys(gens, 0.0)
        for _ in range(args.repeat):
            for name, gen in gens.items():
                start = time.perf_counter()
                gen.run(30)
                top[name] = max(top[name], 256 * 30 / (time.perf_counter() - start))
        ratio = top["versus"] / top["model"]
        oc = other.config
        print(
            f"\nbatch 256, interleaved: this model {top['model']:,.0f} orders/s, {args.versus} "
            f"(kv heads {oc.kv_heads} of {oc.n_head}, {other.num_params():,} params) "
            f"{top['versus']:,.0f}: {ratio:.2f}x"
        )
        versus = {"checkpoint": str(args.versus), "orders_per_s_256": top, "ratio": ratio}

    in_sim: dict = {}
    if args.in_sim_runs > 0:
        days = [in_sim_day() for _ in range(args.in_sim_runs)]
        seconds = statistics.median(d["seconds"] for d in days)
        rate = statistics.median(d["orders_per_s"] for d in days)
        print(
            f"\nin simulation, a whole day on one book at {REAL_DAY_ORDERS_PER_S} orders/s "
            f"(target): {days[0]['orders']:,} LMM orders in {seconds:.1f} s wall "
            f"(median of {len(days)}) = {rate:,.0f} orders/s; raw step at batch 1 "
            f"{best['1']:,.0f} orders/s"
        )
        in_sim = {
            "in_sim_day_seconds": seconds,
            "in_sim_orders_per_s": rate,
            "in_sim_runs": days,
            "in_sim_config": IN_SIM_CONFIG,
        }

    result = {
        "orders_per_s": best,
        **in_sim,
        "orders_per_s_by_path": {
            "torch": {str(b): r["orders_per_s"] for b, r in runs.items()},
            "fused": {str(b): r["orders_per_s"] for b, r in fused.items()},
        },
        "versus": versus,
        "kv_cache_speedup": speedup,
        "kv_cache_speedup_batch": UNCACHED_BATCH,
        "uncached_orders_per_s": uncached["orders_per_s"],
        "heads_orders_per_s_256": {h: r["orders_per_s"] for h, r in heads.items()},
        "runs": {
            "cached": list(runs.values()),
            "fused": list(fused.values()),
            "uncached": uncached,
            "heads": heads,
        },
        "targets": TARGETS,
        "model": {
            "source": source,
            "untrained": source.startswith("untrained"),
            "config": cfg.to_dict(),
            "params": model.num_params(),
        },
        "runtime": {"device": args.device, "torch": torch.__version__, "torch_threads": threads},
        "method": "best of repeats; steady state with a full window; step + sample per order",
    }
    write_json(args.json, result)


if __name__ == "__main__":
    main()
