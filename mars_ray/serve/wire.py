"""One step's arrays as one float32 matrix: what a served step request carries.

Much of a handle call's CPU cost is pickling, and one array pickles faster than a
dict of five (docs/performance.md has the measurement). float32 loses nothing:
component ids are small integers, the book features and biases are float32
already, and the model turns uniforms into float32 itself before sampling.

Columns: components (4), book (n_book), uniforms (4), active (1), kind bias (4),
gap bias (n_gap). A missing bias travels as zeros, and an all-zero bias is
unpacked as none: adding zeros to logits changes nothing, so both are the same.
"""

from __future__ import annotations

import numpy as np

from mars_ray.lmm.generate import StepInput


def step_width(n_book: int, n_gap: int) -> int:
    return 13 + n_book + n_gap


def pack_step(
    components: np.ndarray,
    book: np.ndarray,
    uniforms: np.ndarray,
    active: np.ndarray,
    kind_bias: np.ndarray | None = None,
    gap_bias: np.ndarray | None = None,
    n_gap: int = 16,
) -> np.ndarray:
    n = len(components)
    kind_bias = np.zeros((n, 4)) if kind_bias is None else kind_bias
    gap_bias = np.zeros((n, n_gap)) if gap_bias is None else gap_bias
    parts = [
        np.asarray(components, dtype=np.float32),
        np.asarray(book, dtype=np.float32),
        np.asarray(uniforms, dtype=np.float32),
        np.asarray(active, dtype=np.float32).reshape(-1, 1),
        np.asarray(kind_bias, dtype=np.float32),
        np.asarray(gap_bias, dtype=np.float32),
    ]
    if {len(p) for p in parts} != {n} or any(p.ndim != 2 for p in parts):
        shapes = [np.shape(p) for p in parts]
        raise ValueError(
            "components, book, uniforms, active and the biases need one row per book; "
            f"got shapes {shapes}"
        )
    return np.concatenate(parts, axis=1)


def unpack_step(
    packed: np.ndarray, rows: np.ndarray, n_book: int, n_gap: int, temperature: float
) -> StepInput:
    """The StepInput for a session's pool ``rows``; ValueError naming what does not fit."""
    packed = np.asarray(packed)
    width = step_width(n_book, n_gap)
    if packed.ndim != 2 or packed.shape[1] != width:
        raise ValueError(f"a step must be (rows, {width}) float32, got {packed.shape}")
    if len(packed) != len(rows):
        raise ValueError(f"the session has {len(rows)} rows, the step {len(packed)}")
    comps = packed[:, :4]
    if not np.array_equal(comps, np.round(comps)):
        raise ValueError("components must be whole numbers")
    at = 9 + n_book
    kind_bias, gap_bias = packed[:, at : at + 4], packed[:, at + 4 :]
    return StepInput(
        rows=rows,
        components=comps.astype(np.int64),
        book=packed[:, 4 : 4 + n_book],
        uniforms=packed[:, 4 + n_book : 8 + n_book],
        active=packed[:, 8 + n_book] > 0.5,
        kind_bias=kind_bias if kind_bias.any() else None,
        temperature=temperature,
        gap_bias=gap_bias if gap_bias.any() else None,
    )
