"""Training the order model: ``mars-ray train CONFIG``.

Deterministic by seed: the windows of step ``s`` are drawn from a generator
seeded with ``(seed, s)``, so a run resumed from its last checkpoint draws
exactly the batches the uninterrupted run would have drawn. A checkpoint
(``last.pt``, written atomically) is saved every ``checkpoint_every`` steps and
at the end; ``--resume`` continues from it without losing finished steps.
The final model is also written as ``model.pt`` (weights and tokenizer only,
what ``load_model`` needs) with a JSON card of losses next to it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import torch
from pydantic import Field, model_validator

from mars_ray.lmm.baselines import MarkovBaseline, UnigramBaseline
from mars_ray.lmm.checkpoint import (
    CheckpointError,
    build_model,
    model_payload,
    read_checkpoint,
    save_checkpoint,
)
from mars_ray.lmm.corpus import SOURCES, load_corpus
from mars_ray.lmm.dataset import (
    TokenSplit,
    decoding_inputs,
    fit_tokenizer,
    split_table,
    tokenize,
)
from mars_ray.lmm.model import INIT_STD, LMMConfig, OrderModel
from mars_ray.lmm.tokenizer import DECODING_KEYS, Tokenizer, token_ids
from mars_ray.schema.validation import StrictModel, read_yaml, validate_model


class ModelSection(StrictModel):
    n_layer: int = Field(default=4, ge=1, le=48)
    n_head: int = Field(default=4, ge=1, le=64)
    n_embd: int = Field(default=128, ge=8, le=4096)
    n_kv_head: int | None = Field(
        default=None, ge=1, description="key/value heads (grouped-query attention); null: n_head"
    )
    block_size: int = Field(default=256, ge=2, le=8192, description="context (sliding window)")
    dropout: float = Field(default=0.0, ge=0, lt=1)
    head: Literal["factorised", "joint"] = "factorised"
    source_embedding: bool = Field(
        default=False,
        description="learn an input embedding per corpus source (real days, synthetic "
        "flow), so the synthetic flow teaches the model markets without setting its pace; "
        "model.pt generates as generate_as (its embedding folded into the weights)",
    )
    generate_as: Literal["lobster", "synthetic"] = "lobster"
    market_memory: bool = Field(
        default=False,
        description="an input embedding of the side of the stream's last market order and "
        "its age in orders: order flow's memory (docs/lmm.md, Realism)",
    )
    input_embedding_std: float = Field(
        default=INIT_STD,
        gt=0,
        le=10,
        description="initial std of the order-component input embeddings; each is added to "
        "the book projection, and at 0.02 rare conditionals on the orders (the side of the "
        "last market order) are learned late (docs/lmm.md)",
    )

    @model_validator(mode="after")
    def _heads(self) -> ModelSection:
        if self.n_embd % self.n_head:
            raise ValueError(
                f"n_embd must be divisible by n_head, got {self.n_embd} and {self.n_head}"
            )
        if self.n_kv_head is not None and self.n_head % self.n_kv_head:
            raise ValueError(
                f"n_kv_head must divide n_head, got {self.n_kv_head} and {self.n_head}"
            )
        return self


class OptimSection(StrictModel):
    steps: int = Field(default=2000, ge=1)
    batch_size: int = Field(default=32, ge=1)
    lr: float = Field(default=1e-3, gt=0, le=1)
    min_lr: float = Field(default=1e-4, ge=0, le=1)
    warmup: int = Field(default=100, ge=0)
    weight_decay: float = Field(default=0.1, ge=0)
    grad_clip: float = Field(default=1.0, gt=0)
    eval_every: int = Field(default=250, ge=1)
    eval_windows: int = Field(default=64, ge=1, description="validation windows per evaluation")
    checkpoint_every: int = Field(default=250, ge=1)
    source_weights: dict[Literal["lobster", "synthetic"], Annotated[float, Field(gt=0)]] = Field(
        default_factory=dict,
        description="window sampling weight per corpus source (default 1): real days are few",
    )
    mirrored: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="share of training windows with buy and sell swapped (kinds, and the "
        "book's bid and ask features): a model that sees each day both ways round has no "
        "side it favours, where one real day's trend would otherwise become its drift",
    )
    max_train_orders: int | None = Field(
        default=None, ge=1, description="use only the first N training orders (data scaling)"
    )


class TokenizerSection(StrictModel):
    gaps_from: Literal["lobster", "synthetic", "weighted"] | None = Field(
        default=None,
        description="fit the inter-arrival bins on this source's training orders only, or "
        "(weighted) on every source in the mix optim.source_weights draws windows in "
        "(default: every order alike); the largest gap the model can decode is its top bin's",
    )


class TrainConfig(StrictModel):
    name: str = "lmm"
    seed: int = Field(default=0, ge=0)
    corpus: Path = Field(description="corpus.parquet written by `mars-ray data build-corpus`")
    out: Path = Path("runs/lmm")
    init_from: Path | None = Field(
        default=None,
        description="a trained model.pt whose weights and tokenizer start this run "
        "(fine-tuning, e.g. on real days after synthetic pre-training); `model` must match it",
    )
    device: Literal["auto", "cpu", "cuda"] = "auto"
    model: ModelSection = ModelSection()
    tokenizer: TokenizerSection = TokenizerSection()
    optim: OptimSection = OptimSection()

    def model_config_(self) -> LMMConfig:
        shape = self.model.model_dump(exclude={"source_embedding", "generate_as"})
        return LMMConfig(**shape, n_sources=len(SOURCES) if self.model.source_embedding else 0)


def load_train_config(path: str | Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Read a training YAML; a relative corpus path is taken from the working directory."""
    return validate_model(TrainConfig, read_yaml(path, overrides), str(path))


@dataclasses.dataclass
class TrainResult:
    out: Path
    step: int
    history: list[dict[str, float]]
    baselines: dict[str, dict[str, float]]
    params: int
    seconds: float


def pick_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device: 'cuda' requested but torch sees no CUDA device")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def learning_rate(step: int, cfg: OptimSection) -> float:
    """Linear warm-up, then cosine decay to ``min_lr`` at the last step."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * min(1.0, progress)))


@dataclasses.dataclass
class TrainingData:
    """A run's tokenized splits, the tokenizer that made them and the corpus description
    stored with the model. ``load_training_data`` builds it from the config; callers that
    train many runs on one corpus (the scaling experiment) build it once per data size and
    hand it to ``Trainer(data=...)``."""

    tokenizer: Tokenizer
    splits: dict[str, TokenSplit]  # "train", and "validation" / "test" where present
    corpus_meta: dict[str, Any]


def load_training_data(config: TrainConfig, tokenizer: Tokenizer | None = None) -> TrainingData:
    """Read ``config.corpus`` and make its ``TrainingData`` (see ``training_data``)."""
    return training_data(load_corpus(config.corpus), config, tokenizer)


def training_data(
    table: Any,
    config: TrainConfig,
    tokenizer: Tokenizer | None = None,
    held_out: dict[str, TokenSplit] | None = None,
) -> TrainingData:
    """Cut the corpus ``table``'s training split to ``optim.max_train_orders`` and tokenize it,
    fitting the tokenizer on it unless one is given; ``held_out`` are the validation / test
    splits already tokenized with that tokenizer (default: tokenized here)."""
    train_rows = split_table(table, "train", config.optim.max_train_orders)
    if tokenizer is None:
        tokenizer = fit_tokenizer(
            train_rows, config.tokenizer.gaps_from, config.optim.source_weights
        )
    held_out = tokenize_held_out(table, tokenizer) if held_out is None else held_out
    splits = {"train": tokenize(train_rows, tokenizer), **held_out}
    return TrainingData(tokenizer, splits, corpus_description(table, config))


def tokenize_held_out(table: Any, tokenizer: Tokenizer) -> dict[str, TokenSplit]:
    """The validation and test splits that have rows, tokenized."""
    return {
        name: tokenize(part, tokenizer)
        for name in ("validation", "test")
        if (part := split_table(table, name)).num_rows
    }


class Trainer:
    """Holds the data, model and optimiser of one run; ``run`` trains to ``optim.steps``."""

    def __init__(
        self, config: TrainConfig, resume: bool = False, data: TrainingData | None = None
    ) -> None:
        self.config = config
        self.device = pick_device(config.device)
        self.out = Path(config.out)
        self.last = self.out / "last.pt"
        raw = read_checkpoint(self.last) if resume and self.last.exists() else None
        if resume and raw is None:
            raise CheckpointError(f"--resume: no checkpoint at {self.last}")
        init = None if raw or config.init_from is None else self._read_init(config.init_from)
        start = raw or init
        if data is None:
            stored = Tokenizer.from_state(start["tokenizer"]) if start else None
            data = load_training_data(config, stored)
        elif start and data.tokenizer.to_state() != start["tokenizer"]:
            source = f"--resume: {self.last}" if raw else f"init_from: {config.init_from}"
            raise CheckpointError(
                f"{source} was trained with another tokenizer than the given data's"
            )
        self.tokenizer, self.corpus_meta = data.tokenizer, data.corpus_meta
        self.splits: dict[str, TokenSplit] = data.splits
        block = config.model.block_size
        usable = self.splits["train"].usable_units(block)
        if len(usable) == 0:
            raise ValueError(
                f"model.block_size={block}: no training unit is longer than that many orders"
            )
        trained_sources = set(self.splits["train"].sources[usable].tolist())
        if config.model.source_embedding and config.model.generate_as not in trained_sources:
            raise ValueError(
                f"model.generate_as={config.model.generate_as!r}: the training split has "
                f"no unit of that source longer than block_size (it has {sorted(trained_sources)})"
            )
        torch.manual_seed(config.seed)
        if raw:
            self._check_same_run(raw)
            self.model = build_model(raw, self.last).to(self.device)
        elif init:
            self.model = build_model(init, str(config.init_from)).to(self.device)
        else:
            self.model = OrderModel(config.model_config_()).to(self.device)
        self.optimizer = self._optimizer()
        if raw:
            self.optimizer.load_state_dict(raw["optimizer"])
        self.step = int(raw["step"]) if raw else 0
        self.history: list[dict[str, float]] = list(raw.get("history", [])) if raw else []
        self.eval_starts = {
            name: split.eval_windows(block, config.optim.eval_windows)
            for name, split in self.splits.items()
            if name != "train"
        }
        self.baselines = raw.get("baselines") if raw else None
        self.pretraining = raw.get("pretraining") if raw else pretraining_of(init, config)

    def _read_init(self, path: Path) -> dict[str, Any]:
        """``init_from``'s checkpoint, refused unless it holds this config's model shape."""
        init = read_checkpoint(path)
        want = self.config.model_config_().to_dict()
        try:  # keys added since the checkpoint was written take their defaults
            have = LMMConfig.from_dict(init["model_config"]).to_dict()
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"init_from {path}: bad model_config: {exc}") from None
        for key, value in want.items():
            if have[key] != value:
                field, says, had = key, value, have[key]
                if key == "n_sources":  # the config's name for it, and its yes / no
                    field, says, had = "source_embedding", bool(value), bool(have[key])
                raise CheckpointError(
                    f"model.{field}: the config says {says!r}, but init_from {path} "
                    f"was trained with {had!r}"
                )
        return init

    def _check_same_run(self, raw: dict[str, Any]) -> None:
        stored = raw.get("train_config", {})
        now = json.loads(self.config.model_dump_json())
        for key in ("seed", "model", "corpus"):
            if stored.get(key) != now.get(key):
                raise CheckpointError(
                    f"--resume: {self.last} was trained with {key}={stored.get(key)!r}, "
                    f"the config says {now.get(key)!r}"
                )

    def _optimizer(self) -> torch.optim.Optimizer:
        decay, no_decay = [], []
        for p in self.model.parameters():
            (decay if p.dim() >= 2 else no_decay).append(p)
        groups = [
            {"params": decay, "weight_decay": self.config.optim.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]
        return torch.optim.AdamW(groups, lr=self.config.optim.lr, betas=(0.9, 0.95))

    def _loss(self, arrays: tuple[np.ndarray, ...], sources: np.ndarray) -> torch.Tensor:
        """Mean NLL of windows (x, book, y), each tagged with its source where the model
        has source embeddings."""
        x, book, y = (torch.from_numpy(a).to(self.device) for a in arrays)
        source = None
        if self.model.config.n_sources:
            ids = np.array([SOURCES.index(name) for name in sources], dtype=np.int64)
            source = torch.from_numpy(ids).to(self.device)
        _, loss = self.model(x, book, y, source)
        assert loss is not None
        return loss

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Mean NLL per order (nats) on the fixed evaluation windows of each held-out split."""
        self.model.eval()
        block = self.config.model.block_size
        out = {}
        for name, starts in self.eval_starts.items():
            if len(starts) == 0:
                continue
            total, count = 0.0, 0
            split = self.splits[name]
            for chunk in np.array_split(starts, max(1, len(starts) // 16)):
                loss = self._loss(split.windows(chunk, block), split.window_sources(chunk))
                total += float(loss) * len(chunk) * block
                count += len(chunk) * block
            out[name] = total / count
        self.model.train()
        return out

    def compute_baselines(self) -> dict[str, dict[str, float]]:
        train = self.splits["train"]
        train_ids = token_ids(train.components)
        models = {
            "unigram": UnigramBaseline(train_ids),
            "markov": MarkovBaseline(train_ids, train.starts),
        }
        block = self.config.model.block_size
        result: dict[str, dict[str, float]] = {}
        for name, starts in self.eval_starts.items():
            if len(starts) == 0:
                continue
            prev, nxt = self.splits[name].pairs(starts, block)
            result[name] = {k: m.nll(prev, nxt) for k, m in models.items()}
        return result

    def run(
        self, on_progress: Callable[[int, dict[str, float]], None] | None = None
    ) -> TrainResult:
        cfg = self.config.optim
        start = time.perf_counter()
        if self.baselines is None:
            self.baselines = self.compute_baselines()
        block = self.config.model.block_size
        self.model.train()
        while self.step < cfg.steps:
            rng = np.random.default_rng([self.config.seed, self.step])
            *windows, sources = self.splits["train"].sample(
                rng, cfg.batch_size, block, cfg.source_weights, cfg.mirrored
            )
            lr = learning_rate(self.step, cfg)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            loss = self._loss(tuple(windows), sources)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
            self.optimizer.step()
            self.step += 1
            record: dict[str, float] = {
                "step": self.step,
                "train_loss": float(loss.detach()),
                "lr": lr,
            }
            if self.step % cfg.eval_every == 0 or self.step == cfg.steps:
                record.update({f"{k}_loss": v for k, v in self.evaluate().items()})
                self.history.append(record)
            if self.step % cfg.checkpoint_every == 0 or self.step == cfg.steps:
                self.save()
            if on_progress is not None:
                on_progress(self.step, record)
        self.save_final()
        return TrainResult(
            self.out,
            self.step,
            self.history,
            self.baselines,
            self.model.num_params(),
            time.perf_counter() - start,
        )

    def _payload(self) -> dict[str, Any]:
        return {
            **model_payload(self.model, self.tokenizer),
            "step": self.step,
            "train_config": json.loads(self.config.model_dump_json()),
            "history": self.history,
            "baselines": self.baselines,
            "corpus": self.corpus_meta,
            "pretraining": self.pretraining,
        }

    def save(self) -> None:
        save_checkpoint(self.last, {**self._payload(), "optimizer": self.optimizer.state_dict()})

    def save_final(self) -> None:
        """``model.pt``: the model to generate with (for a source-conditioned run, the one
        ``model.generate_as`` folded in) and its card."""
        payload = self._payload()
        final = self.model
        if self.model.config.n_sources:
            source = self.config.model.generate_as
            final = self.model.fold_source(SOURCES.index(source))
            payload.update(model_payload(final, self.tokenizer), generates_as=source)
        save_checkpoint(self.out / "model.pt", payload)
        card = {k: v for k, v in payload.items() if k not in ("model", "tokenizer")}
        card["params"] = final.num_params()
        (self.out / "model.json").write_text(json.dumps(card, indent=2) + "\n")


def pretraining_of(init: dict[str, Any] | None, config: TrainConfig) -> dict[str, Any] | None:
    """What the ``init_from`` model was trained on, for the new model's card."""
    if init is None:
        return None
    return {
        "init_from": str(config.init_from),
        "steps": init.get("step"),
        "train_config": init.get("train_config"),
        "corpus": init.get("corpus"),
        "history": init.get("history"),
    }


def corpus_description(table: Any, config: TrainConfig) -> dict[str, Any]:
    """Orders and units per split and source: stored with the model, so it says what it saw."""
    out: dict[str, Any] = {"path": str(config.corpus), "splits": {}}
    splits = table["split"].to_numpy(zero_copy_only=False)
    sources = table["source"].to_numpy(zero_copy_only=False)
    sequences = table["sequence"].to_numpy()
    for split in ("train", "validation", "test"):
        mask = splits == split
        per_source = {}
        for source in sorted(set(sources[mask].tolist())):
            m = mask & (sources == source)
            per_source[source] = {
                "orders": int(m.sum()),
                "units": len(np.unique(sequences[m])),
            }
        out["splits"][split] = per_source
    if config.optim.max_train_orders is not None:
        out["max_train_orders"] = config.optim.max_train_orders
    return out


def fit_decoding(model: str | Path, corpus: str | Path, out: str | Path) -> dict[str, Any]:
    """Fit a trained model's decoding tables (how deep INSIDE orders go into the spread,
    ``inside_fractions``; the training books' median spread, ``spread_ticks``; their orders
    per second at the touch, ``touch_rate``; their orders' share per size bin,
    ``size_mix``) on a corpus's training split, with its
    weights untouched, and write the model to ``out`` with its card beside it (``out``
    with ``.json``).

    For models trained before the tables existed: they are fitted by the rules a training
    run uses, so the result decodes as a retrain on that corpus would, with the weights it
    already has. Returns the card's ``decoding`` entry."""
    raw = read_checkpoint(model)
    inputs = decoding_inputs(split_table(load_corpus(corpus), "train"))
    fitted = Tokenizer.from_state(raw["tokenizer"]).with_decoding(*inputs)
    inside = inputs[0]
    state = fitted.to_state()
    tables = {k: state[k] for k in DECODING_KEYS if k in state}
    decoding = {"fitted_on": str(corpus), "inside_orders": len(inside[0]), **tables}
    payload = {k: v for k, v in raw.items() if k != "format"}
    payload.update(tokenizer=state, decoding=decoding)
    out = Path(out)
    save_checkpoint(out, payload)
    card_path = Path(model).with_suffix(".json")
    card = json.loads(card_path.read_text()) if card_path.is_file() else {}
    if not card:
        card = {k: v for k, v in payload.items() if k not in ("model", "tokenizer")}
    card["decoding"] = decoding
    out.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")
    return decoding
