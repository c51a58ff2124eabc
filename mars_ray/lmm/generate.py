"""Next-order generation for many rows at once, behind one small interface.

A row is one book of one trajectory. Each call feeds every active row its
latest order and the book after it, and returns every row's next order
components: one batched forward pass with the KV cache, whatever the number of
rows. The LMM background agent talks to an ``OrderGenerator``: ``LocalGenerator``
runs the model in-process, ``mars_ray.serve.ServedGenerator`` asks a Ray Serve
deployment that batches many simulations, with the same arrays in and out.

Both sit on a ``RowPool``: KV-cache rows handed out to callers and stepped
together. Every torch forward covers at least ``BATCH_FLOOR`` rows (idle rows pad
smaller pools) because a row's logits are then bitwise the same whatever else
is in the batch: on the CPUs we measured, batches of 1-8 rows take other matrix
kernels than batches of 16 or more, whose results agree to the last bit
(``tests/test_generate.py`` checks it). So a book's orders do not depend on how
many other books, shards or concurrent simulations share its forward pass. The
price is small: at the shipped model's size a 16-row forward costs about a quarter
more than a 1-row one. The fused CPU step (``lmm/fast_step.py``) takes each row on its
own, so it needs no padding: its pools hold only the rows asked for.

Sampling is driven by uniforms the caller draws from its own per-book seeded
generators, so a row's orders do not depend on torch's global RNG.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from mars_ray.lmm.checkpoint import LoadedModel
from mars_ray.lmm.fast_step import FastStep, use_fast
from mars_ray.lmm.model import KVCache

BATCH_FLOOR = 16


class OrderGenerator(Protocol):
    rows: int

    def next(
        self,
        components: np.ndarray,
        book: np.ndarray,
        uniforms: np.ndarray,
        active: np.ndarray,
        kind_bias: np.ndarray | None = None,
        gap_bias: np.ndarray | None = None,
    ) -> np.ndarray:
        """(rows, 4) latest orders, (rows, 24) books after them, (rows, 4) uniforms and
        (rows,) active mask -> (rows, 4) next-order components (inactive rows: ignore).
        ``kind_bias`` (rows, 4) and ``gap_bias`` (rows, n_gap) tilt the kind and the
        inter-arrival distributions (controlled generation)."""
        ...


@dataclass
class StepInput:
    """One caller's part of a pooled step: its pool rows and the arrays of ``next``."""

    rows: np.ndarray  # (n,) pool row indices
    components: np.ndarray  # (n, 4)
    book: np.ndarray  # (n, n_book)
    uniforms: np.ndarray  # (n, 4)
    active: np.ndarray  # (n,) bool
    kind_bias: np.ndarray | None = None  # (n, 4)
    temperature: float = 1.0
    gap_bias: np.ndarray | None = None  # (n, n_gap)


class RowPool:
    """KV-cache rows for many callers, stepped together in one forward pass."""

    def __init__(
        self, loaded: LoadedModel, capacity: int = BATCH_FLOOR, fused: bool | None = None
    ) -> None:
        """``fused``: the fused CPU step (lmm/fast_step.py) or torch's; by default the
        faster one for the device, chosen once and logged."""
        self.model = loaded.model
        self.device = loaded.device
        self.n_book = self.model.config.n_book
        if fused and self.model.device.type != "cpu":
            raise ValueError(f"fused=True needs a CPU model, this one is on {self.model.device}")
        if fused is None:
            fused = use_fast(self.model, capacity)
        self.fast = FastStep(self.model) if fused else None
        # the fused step needs no BATCH_FLOOR padding: its pool holds only the rows asked
        # for (a cache row is 1 MB at the shipped size, and a shard checkpoint saves them)
        rows = capacity if self.fast is not None else max(capacity, BATCH_FLOOR)
        self.cache = self.model.new_cache(rows, self.device)
        self.free = list(range(self.cache.batch))

    @property
    def capacity(self) -> int:
        return self.cache.batch

    @property
    def in_use(self) -> int:
        return self.capacity - len(self.free)

    def allocate(self, n: int) -> np.ndarray:
        """``n`` fresh rows (empty context), growing the cache when none are free."""
        if n < 1:
            raise ValueError(f"rows must be >= 1, got {n}")
        if n > len(self.free):
            self._grow(max(2 * self.capacity, self.in_use + n))
        self.free.sort()
        rows, self.free = self.free[:n], self.free[n:]
        self.cache.reset(torch.tensor(rows, dtype=torch.long))
        return np.array(rows, dtype=np.int64)

    def release(self, rows: np.ndarray) -> None:
        self.free.extend(int(r) for r in rows)

    def _grow(self, capacity: int) -> None:
        old, new = self.cache, self.model.new_cache(capacity, self.device)
        n = old.batch
        for dst, src in zip(new.k + new.v, old.k + old.v, strict=True):
            dst[:n] = src
        new.pos[:n] = old.pos
        if new.market is not None and old.market is not None:
            new.market[:n] = old.market
        self.cache = new
        self.free.extend(range(n, capacity))

    def window(self, parts: list[StepInput]) -> tuple[int, int]:
        """The contiguous pool rows [lo, hi) a step computes: every part's rows, widened to
        BATCH_FLOOR. A slice of the cache is a view, so a step never copies the cache, and a
        lone small caller costs a 16-row forward however many rows the pool holds."""
        lo = min(int(p.rows.min()) for p in parts)
        hi = max(int(p.rows.max()) for p in parts) + 1
        if hi - lo < BATCH_FLOOR:
            hi = min(lo + BATCH_FLOOR, self.capacity)
            lo = hi - BATCH_FLOOR
        return lo, hi

    def step(self, parts: list[StepInput]) -> list[np.ndarray]:
        """One forward pass for every part; returns each part's (n, 4) next components."""
        if not parts:
            return []
        if self.fast is not None:
            return self._step_fast(parts)
        lo, hi = self.window(parts)
        B = hi - lo
        components = np.zeros((B, 4), dtype=np.int64)
        book = np.zeros((B, self.n_book), dtype=np.float32)
        uniforms = np.zeros((B, 4), dtype=np.float64)
        active = np.zeros(B, dtype=bool)
        temperature = np.ones(B, dtype=np.float32)
        bias = gap = None
        if any(p.kind_bias is not None for p in parts):
            bias = np.zeros((B, 4), dtype=np.float32)
        if any(p.gap_bias is not None for p in parts):
            gap = np.zeros((B, self.model.config.component_sizes[3]), dtype=np.float32)
        for p in parts:
            at = p.rows - lo
            components[at] = p.components
            book[at] = p.book
            uniforms[at] = p.uniforms
            active[at] = p.active
            temperature[at] = p.temperature
            if bias is not None and p.kind_bias is not None:
                bias[at] = p.kind_bias
            if gap is not None and p.gap_bias is not None:
                gap[at] = p.gap_bias
        cache = self.cache
        view = KVCache(
            k=[k[lo:hi] for k in cache.k],
            v=[v[lo:hi] for v in cache.v],
            pos=cache.pos[lo:hi],
            market=None if cache.market is None else cache.market[lo:hi],
        )
        dev = self.device
        with torch.inference_mode():
            hidden = self.model.step(
                torch.from_numpy(components).to(dev),
                torch.from_numpy(book).to(dev),
                view,
                torch.from_numpy(active).to(dev),
            )
            out = self.model.sample(
                hidden,
                torch.from_numpy(uniforms).to(dev),
                torch.from_numpy(temperature).to(dev),
                None if bias is None else torch.from_numpy(bias).to(dev),
                None if gap is None else torch.from_numpy(gap).to(dev),
            )
        out = out.cpu().numpy()
        return [out[p.rows - lo] for p in parts]

    def _step_fast(self, parts: list[StepInput]) -> list[np.ndarray]:
        """``step`` by the fused kernel, over the parts' rows only: a row's result does not
        depend on the others there, so no BATCH_FLOOR padding is needed."""
        assert self.fast is not None
        if len(parts) == 1:  # one caller (a local generator): its arrays as they are
            p = parts[0]
            hidden = self.fast.hidden(self.cache, p.rows, p.components, p.book, p.active)
            return [self.fast.sample(hidden, p.uniforms, p.temperature, p.kind_bias, p.gap_bias)]
        cat = np.concatenate
        rows = cat([p.rows for p in parts])
        sizes = self.model.config.component_sizes
        n = len(rows)

        def bias(get, width: int) -> np.ndarray | None:
            if all(get(p) is None for p in parts):
                return None
            out = np.zeros((n, width), dtype=np.float32)
            at = 0
            for p in parts:
                if get(p) is not None:
                    out[at : at + len(p.rows)] = get(p)
                at += len(p.rows)
            return out

        hidden = self.fast.hidden(
            self.cache,
            rows,
            cat([p.components for p in parts]),
            cat([p.book for p in parts]),
            cat([p.active for p in parts]),
        )
        temperature = cat([np.full(len(p.rows), p.temperature, np.float32) for p in parts])
        out = self.fast.sample(
            hidden,
            cat([p.uniforms for p in parts]),
            temperature,
            bias(lambda p: p.kind_bias, sizes[0]),
            bias(lambda p: p.gap_bias, sizes[3]),
        )
        bounds = np.cumsum([len(p.rows) for p in parts])[:-1]
        return np.split(out, bounds)


class LocalGenerator:
    """The model in this process: a pool with this caller's rows only."""

    def __init__(self, loaded: LoadedModel, rows: int, temperature: float = 1.0) -> None:
        self.pool = RowPool(loaded, rows)
        self.rows = rows
        self.block_size = loaded.model.config.block_size  # orders a row attends to
        self.temperature = temperature
        self.mine = self.pool.allocate(rows)

    def next(
        self,
        components: np.ndarray,
        book: np.ndarray,
        uniforms: np.ndarray,
        active: np.ndarray,
        kind_bias: np.ndarray | None = None,
        gap_bias: np.ndarray | None = None,
    ) -> np.ndarray:
        part = StepInput(
            self.mine, components, book, uniforms, active, kind_bias, self.temperature, gap_bias
        )
        return self.pool.step([part])[0]
