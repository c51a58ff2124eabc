"""Model checkpoints: one torch file holding weights, model config, tokenizer and history.

Everything needed to use a model travels in the one file (no side pickles), and
it loads with ``torch.load(weights_only=True)``: only tensors, numbers, strings,
lists and dicts inside. Loading checks the format tag, the keys and that the
weights fit the stored model config, and says which of these is wrong.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mars_ray.lmm.model import LMMConfig, OrderModel
from mars_ray.lmm.tokenizer import Tokenizer

FORMAT = "mars-ray-lmm/1"
SHIPPED_DIR = Path(__file__).resolve().parent / "checkpoints"
SHIPPED = SHIPPED_DIR / "lmm-small.pt"
REQUIRED = ("format", "model_config", "model", "tokenizer", "step")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message says which file and what is wrong."""


@dataclass
class LoadedModel:
    model: OrderModel
    tokenizer: Tokenizer
    meta: dict[str, Any]  # everything else stored: step, history, baselines, configs
    path: Path

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Write atomically (temp file + rename): an interrupted save never leaves a torn file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"format": FORMAT, **payload}, tmp)
    os.replace(tmp, path)


def model_payload(model: OrderModel, tokenizer: Tokenizer) -> dict[str, Any]:
    state = {k: v.detach().to("cpu") for k, v in model.state_dict().items()}
    return {
        "model_config": model.config.to_dict(),
        "model": state,
        "tokenizer": tokenizer.to_state(),
    }


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for torn or foreign files
        raise CheckpointError(
            f"checkpoint {path} cannot be read (truncated or not a mars-ray checkpoint): "
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        ) from None
    if not isinstance(raw, dict):
        raise CheckpointError(f"checkpoint {path}: expected a dict, got {type(raw).__name__}")
    if raw.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path}: format {raw.get('format')!r} is not {FORMAT!r}")
    missing = [k for k in REQUIRED if k not in raw]
    if missing:
        raise CheckpointError(f"checkpoint {path}: missing keys {missing}")
    return raw


def build_model(raw: dict[str, Any], path: str | Path = "<memory>") -> OrderModel:
    """The model described by ``raw['model_config']`` with ``raw['model']`` weights loaded."""
    cfg_raw, state = raw["model_config"], raw["model"]
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path}: 'model' must be a dict of tensors")
    if not isinstance(cfg_raw, dict):
        raise CheckpointError(f"checkpoint {path}: model_config must be a dict, got {cfg_raw!r}")
    try:
        config = LMMConfig.from_dict(cfg_raw)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path}: bad model_config: {exc}") from None
    model = OrderModel(config)
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise CheckpointError(
            f"checkpoint {path}: weights do not match its model_config: "
            f"missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    for name, tensor in state.items():
        if own[name].shape != tensor.shape:
            raise CheckpointError(
                f"checkpoint {path}: weight {name} has shape {tuple(tensor.shape)}, "
                f"its model_config needs {tuple(own[name].shape)}"
            )
    model.load_state_dict(state)
    return model


def load_model(
    path: str | Path | None = None, device: str | torch.device | None = None
) -> LoadedModel:
    """Load a checkpoint (default: the shipped model) for inference; CUDA when there is one."""
    path = Path(path) if path is not None else SHIPPED
    raw = read_checkpoint(path)
    model = build_model(raw, path)
    if model.config.n_sources:
        raise CheckpointError(
            f"checkpoint {path} has a source embedding (a training checkpoint such as "
            "last.pt): generate with the run's model.pt, which has its source folded in"
        )
    try:
        tokenizer = Tokenizer.from_state(raw["tokenizer"])
    except (TypeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"checkpoint {path}: bad tokenizer state: {exc}") from None
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device).eval()
    meta = {k: v for k, v in raw.items() if k not in ("model", "tokenizer", "optimizer")}
    return LoadedModel(model, tokenizer, meta, path)
