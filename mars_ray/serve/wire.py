"""One step's arrays as one float32 matrix: what a served step request carries.

A handle call costs about 2 ms of CPU on the 2-core machine, much of it pickling;
one array instead of a dict of five takes a measurable share off (an empty
batched deployment answered 645 vs 490 requests/s). float32 loses nothing:
component ids are small integers, the book features and kind bias are float32
already, and the model turns uniforms into float32 itself before sampling.

Columns: components (4), book (n_book), uniforms (4), active (1), then the kind
bias (4) when there is one.
"""

from __future__ import annotations

import numpy as np

from mars_ray.lmm.generate import StepInput


def pack_step(
    components: np.ndarray,
    book: np.ndarray,
    uniforms: np.ndarray,
    active: np.ndarray,
    kind_bias: np.ndarray | None = None,
) -> np.ndarray:
    parts = [
        np.asarray(components, dtype=np.float32),
        np.asarray(book, dtype=np.float32),
        np.asarray(uniforms, dtype=np.float32),
        np.asarray(active, dtype=np.float32).reshape(-1, 1),
    ]
    if kind_bias is not None:
        parts.append(np.asarray(kind_bias, dtype=np.float32))
    rows = {len(p) for p in parts}
    if len(rows) != 1 or any(p.ndim != 2 for p in parts):
        shapes = [np.shape(p) for p in (components, book, uniforms, active, kind_bias)]
        raise ValueError(
            "components, book, uniforms, active (and kind_bias) need one row per book; "
            f"got shapes {shapes}"
        )
    return np.concatenate(parts, axis=1)


def unpack_step(packed: np.ndarray, rows: np.ndarray, n_book: int, temperature: float) -> StepInput:
    """The StepInput for a session's pool ``rows``; ValueError naming what does not fit."""
    packed = np.asarray(packed)
    plain, biased = 9 + n_book, 13 + n_book
    if packed.ndim != 2 or packed.shape[1] not in (plain, biased):
        raise ValueError(
            f"a step must be (rows, {plain}) or (rows, {biased}) float32, got {packed.shape}"
        )
    if len(packed) != len(rows):
        raise ValueError(f"the session has {len(rows)} rows, the step {len(packed)}")
    comps = packed[:, :4]
    if not np.array_equal(comps, np.round(comps)):
        raise ValueError("components must be whole numbers")
    return StepInput(
        rows=rows,
        components=comps.astype(np.int64),
        book=packed[:, 4 : 4 + n_book],
        uniforms=packed[:, 4 + n_book : 8 + n_book],
        active=packed[:, 8 + n_book] > 0.5,
        kind_bias=packed[:, plain:] if packed.shape[1] == biased else None,
        temperature=temperature,
    )
