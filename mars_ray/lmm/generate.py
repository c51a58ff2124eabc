"""Next-order generation for many rows at once, behind one small interface.

A row is one book of one trajectory. Each call feeds every active row its
latest order and the book after it, and returns every row's next order
components: one batched forward pass with the KV cache, whatever the number of
rows. The LMM background agent talks to an ``OrderGenerator``; the local one
below runs the model in-process, and a served one (Ray Serve) can stand in for
it with the same arrays in and out.

Sampling is driven by uniforms the caller draws from its own per-book seeded
generators, so a row's orders do not depend on torch's global RNG.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch

from mars_ray.lmm.checkpoint import LoadedModel


class OrderGenerator(Protocol):
    rows: int

    def next(
        self,
        components: np.ndarray,
        book: np.ndarray,
        uniforms: np.ndarray,
        active: np.ndarray,
        kind_bias: np.ndarray | None = None,
    ) -> np.ndarray:
        """(rows, 4) latest orders, (rows, 24) books after them, (rows, 4) uniforms and
        (rows,) active mask -> (rows, 4) next-order components (inactive rows: ignore).
        ``kind_bias`` (rows, 4) tilts the kind distribution (controlled generation)."""
        ...


class LocalGenerator:
    """The model in this process, one KV cache row per book."""

    def __init__(self, loaded: LoadedModel, rows: int, temperature: float = 1.0) -> None:
        self.model = loaded.model
        self.rows = rows
        self.temperature = temperature
        self.device = loaded.device
        self.cache = self.model.new_cache(rows, self.device)

    def next(
        self,
        components: np.ndarray,
        book: np.ndarray,
        uniforms: np.ndarray,
        active: np.ndarray,
        kind_bias: np.ndarray | None = None,
    ) -> np.ndarray:
        dev = self.device
        bias = None if kind_bias is None else torch.from_numpy(kind_bias).to(dev)
        with torch.inference_mode():
            hidden = self.model.step(
                torch.from_numpy(np.ascontiguousarray(components, dtype=np.int64)).to(dev),
                torch.from_numpy(np.ascontiguousarray(book, dtype=np.float32)).to(dev),
                self.cache,
                torch.from_numpy(np.ascontiguousarray(active, dtype=bool)).to(dev),
            )
            out = self.model.sample(
                hidden, torch.from_numpy(uniforms).to(dev), self.temperature, bias
            )
        return out.cpu().numpy()
