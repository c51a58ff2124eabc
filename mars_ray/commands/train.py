"""``mars-ray train CONFIG``: train the order model, with validation loss and checkpoints."""

from __future__ import annotations

from pathlib import Path

import click
from tqdm import tqdm

from mars_ray.schema.validation import ConfigError


@click.command()
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--out", "out_dir", type=click.Path(file_okay=False), help="Override out.")
@click.option("--steps", type=click.IntRange(min=1), help="Override optim.steps.")
@click.option("--seed", type=click.IntRange(min=0), help="Override seed.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), help="Override device.")
@click.option("--resume", is_flag=True, help="Continue from OUT/last.pt.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def train(
    config: str,
    out_dir: str | None,
    steps: int | None,
    seed: int | None,
    device: str | None,
    resume: bool,
    quiet: bool,
) -> None:
    """Train the order model described by the YAML file CONFIG on its corpus.

    Writes OUT/last.pt (resumable checkpoint), OUT/model.pt (the model) and
    OUT/model.json (losses beside the baselines').
    """
    overrides: dict[str, object] = {}
    for key, value in (
        ("out", out_dir),
        ("optim.steps", steps),
        ("seed", seed),
        ("device", device),
    ):
        if value is not None:
            overrides[key] = value
    from mars_ray.lmm.checkpoint import CheckpointError
    from mars_ray.lmm.corpus import CorpusError
    from mars_ray.lmm.train import Trainer, load_train_config

    try:
        cfg = load_train_config(config, overrides)
        trainer = Trainer(cfg, resume=resume)
    except (ConfigError, CheckpointError, CorpusError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None

    split = trainer.splits["train"]
    click.echo(
        f"{cfg.name}: {trainer.model.num_params():,} parameters on {trainer.device}; "
        f"{split.orders:,} training orders in {split.units} units"
        + (f"; resuming at step {trainer.step}" if trainer.step else "")
    )
    bar = tqdm(
        total=cfg.optim.steps,
        initial=trainer.step,
        disable=quiet,
        desc=cfg.name,
        dynamic_ncols=True,
        unit="step",
    )
    shown: dict[str, float] = {}

    def on_progress(step: int, record: dict[str, float]) -> None:
        shown["loss"] = record["train_loss"]
        if "validation_loss" in record:
            shown["val"] = record["validation_loss"]
        bar.set_postfix({k: f"{v:.3f}" for k, v in shown.items()}, refresh=False)
        bar.update(step - bar.n)

    result = trainer.run(on_progress)
    bar.close()
    click.echo("")
    click.echo(loss_table(result.history[-1] if result.history else {}, result.baselines))
    click.echo(
        f"\n{result.step} steps in {result.seconds:,.1f} s; model: {Path(result.out)}/model.pt"
    )


def loss_table(last: dict[str, float], baselines: dict[str, dict[str, float]]) -> str:
    """NLL per order (nats) of the model beside the baselines, one row per held-out split."""
    lines = [f"{'split':<12}{'model':>10}{'markov':>10}{'unigram':>10}   (nats per order)"]
    for split, base in baselines.items():
        model = last.get(f"{split}_loss")
        model_s = f"{model:>10.3f}" if model is not None else f"{'-':>10}"
        lines.append(f"{split:<12}{model_s}{base['markov']:>10.3f}{base['unigram']:>10.3f}")
    return "\n".join(lines)


CORPUS_OPTION = click.option(
    "--corpus",
    type=click.Path(dir_okay=False),
    default="corpus/default/corpus.parquet",
    show_default=True,
    help="corpus.parquet from `mars-ray data build-corpus` (its training split is used).",
)


@click.command("train-batch")
@CORPUS_OPTION
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    default="runs/batch-small.pt",
    show_default=True,
    help="Where to write the model.",
)
@click.option("--steps", type=click.IntRange(min=1), default=600, show_default=True)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
def train_batch(corpus: str, out: str, steps: int, seed: int) -> None:
    """Train the order-batch model (the next 10 s of aggregate flow) used for control.

    The shipped mars_ray/lmm/checkpoints/batch-small.pt is this command's output with the
    defaults, on the default corpus.
    """
    if not Path(corpus).is_file():
        raise click.ClickException(
            f"corpus not found: {corpus} (build it with `mars-ray data build-corpus "
            "configs/corpus.yaml`)"
        )
    import torch

    from mars_ray.lmm.batch_model import BatchConfig, save_batch_model, train_batch_model

    torch.set_num_threads(1)  # a GRU this small: more threads only add overhead on 2 cores
    try:
        model, history = train_batch_model(corpus, BatchConfig(), steps, seed)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    save_batch_model(out, model, history)
    last = history[-1]
    scores = ", ".join(f"{k} {v:.2f}" for k, v in last.items() if k.endswith("nll"))
    click.echo(f"wrote {out} after {steps} steps in {last['seconds']:.0f} s: {scores}")


@click.command("fit-decoding")
@click.argument("model", type=click.Path(dir_okay=False))
@CORPUS_OPTION
@click.option(
    "--out", type=click.Path(dir_okay=False), required=True, help="Where to write the model."
)
def fit_decoding(model: str, corpus: str, out: str) -> None:
    """Fit MODEL's decoding tables (how deep INSIDE orders go into the spread, the median
    spread of the training books, their orders per second at the touch, their orders'
    share per size bin) on a corpus,
    weights untouched: for models trained before `mars-ray train` fitted them (a training
    run fits its own).
    """
    from mars_ray.lmm.checkpoint import CheckpointError
    from mars_ray.lmm.corpus import CorpusError
    from mars_ray.lmm.train import fit_decoding as fit

    try:
        decoding = fit(model, corpus, out)
    except (CheckpointError, CorpusError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    quantiles = ", ".join(f"{v:.2f}" for v in decoding["inside_fractions"][::4])
    rate = decoding.get("touch_rate")
    pace = "unknown" if rate is None else f"{rate:.2f}"
    mix = decoding.get("size_mix")
    common = "unknown" if mix is None else f"{max(mix):.0%} in its most common size bin"
    click.echo(
        f"wrote {out} (card {Path(out).with_suffix('.json')}): INSIDE depth quantiles "
        f"0, 1/4, 1/2, 3/4, 1 of the room in the spread: {quantiles} "
        f"(from {decoding['inside_orders']:,} orders); median spread "
        f"{decoding.get('spread_ticks', 'unknown')} ticks; "
        f"{pace} orders a second at the touch; order sizes: {common}"
    )
