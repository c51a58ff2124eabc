"""``OrderGenerator`` over the Serve model deployment: what ``backend: serve`` plugs in.

The LMM agent hands it the same arrays as ``LocalGenerator``; each step is one
handle call carrying all of this simulation's rows, which the deployment
batches with other simulations' steps into one forward pass.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from agents.lmm import GeneratorBackend, LMMParams
from mars_ray.lmm.tokenizer import Tokenizer
from mars_ray.serve.settings import MODEL_DEPLOYMENT
from mars_ray.serve.wire import pack_step


class ServedModelError(RuntimeError):
    """The served model is missing, different from the one asked for, or refused a step."""


class ModelBusyError(ServedModelError):
    """The served model has no room now (all its cache rows are in use): retry later."""


def model_handle(app_name: str) -> Any:
    """The model deployment's handle, with a clear error when nothing is serving it."""
    from ray import serve

    try:
        return serve.get_deployment_handle(MODEL_DEPLOYMENT, app_name=app_name)
    except Exception as exc:  # Serve raises several kinds here, none of them telling
        raise ServedModelError(
            f"no served model in Serve application {app_name!r} ({exc}); start one with "
            "`mars-ray serve` or `serve run configs/serve.yaml`, or set backend: local"
        ) from exc


class ServedGenerator:
    """One generation session (``rows`` KV-cache rows) in the served model."""

    def __init__(
        self,
        app_name: str,
        rows: int,
        temperature: float = 1.0,
        checkpoint: str | None = None,
        handle: Any = None,
    ) -> None:
        self.handle = handle if handle is not None else model_handle(app_name)
        self.info: dict[str, Any] = self.handle.info.remote().result()
        if checkpoint is not None:
            wanted = hashlib.sha256(Path(checkpoint).read_bytes()).hexdigest()
            if wanted != self.info["sha256"]:
                raise ServedModelError(
                    f"checkpoint {checkpoint} is not the served model "
                    f"({self.info['path']}, sha256 {self.info['sha256'][:12]}...)"
                )
        self.tokenizer = Tokenizer.from_state(self.info["tokenizer"])
        self.n_gap = int(self.info["config"]["component_sizes"][3])
        self.block_size = int(self.info["config"]["block_size"])  # orders a row attends to
        self.rows = rows
        opened = self.handle.open.remote(rows, temperature).result()
        if isinstance(opened, dict):
            error = ModelBusyError if "busy" in opened else ServedModelError
            raise error(f"served model refused a session: {next(iter(opened.values()))}")
        self.session: str | None = opened

    def next(
        self,
        components: np.ndarray,
        book: np.ndarray,
        uniforms: np.ndarray,
        active: np.ndarray,
        kind_bias: np.ndarray | None = None,
        gap_bias: np.ndarray | None = None,
    ) -> np.ndarray:
        if self.session is None:
            raise ServedModelError("this generator's session is closed")
        packed = pack_step(components, book, uniforms, active, kind_bias, gap_bias, self.n_gap)
        request = (self.session, packed)
        out = self.handle.step.remote(request).result()
        if isinstance(out, dict):
            raise ServedModelError(f"served model refused the step: {out['error']}")
        return out

    def close(self) -> None:
        """Give the rows back (the deployment also reclaims sessions idle for too long)."""
        if self.session is not None:
            session, self.session = self.session, None
            try:
                self.handle.close.remote(session).result()
            except Exception:  # best effort: the model expires sessions left open
                pass


def served_backend(params: LMMParams, rows: int) -> tuple[ServedGenerator, Tokenizer]:
    """``backend: serve``: a session of ``rows`` rows in the model deployment of the Serve
    application ``params.serve_app`` (started by ``mars-ray serve``)."""
    served = ServedGenerator(params.serve_app, rows, params.temperature, params.checkpoint)
    return served, served.tokenizer


# What the layers that run simulations hand to ``Simulation(..., backends=...)``.
SERVE_BACKENDS: dict[str, GeneratorBackend] = {"serve": served_backend}
