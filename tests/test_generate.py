"""The row pool behind local and served generation: shared forwards, separate books."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from mars_ray.lmm.checkpoint import load_model
from mars_ray.lmm.generate import BATCH_FLOOR, LocalGenerator, RowPool, StepInput


@pytest.fixture(scope="module")
def loaded():
    return load_model(None, device="cpu")  # the shipped model: real layer sizes


def inputs(rows: np.ndarray, seed: int, n_book: int) -> list[StepInput]:
    """Twelve steps of made-up orders for these pool rows."""
    rng = np.random.default_rng(seed)
    n = len(rows)
    return [
        StepInput(
            rows,
            np.stack([rng.integers(0, s, n) for s in (4, 24, 16, 16)], axis=1),
            rng.normal(size=(n, n_book)).astype(np.float32),
            rng.random((n, 4)),
            rng.random(n) < 0.9,
        )
        for _ in range(12)
    ]


def test_hidden_states_are_bitwise_equal_in_any_batch_from_the_floor_up(loaded) -> None:
    """What BATCH_FLOOR rests on: a row's hidden state, to the last bit, whatever the batch
    size (from the floor up) and whatever the other rows hold."""
    model = loaded.model
    g = torch.Generator().manual_seed(0)
    T = 40
    comps = torch.stack([torch.randint(0, s, (64, T), generator=g) for s in (4, 24, 16, 16)], -1)
    book = torch.randn(64, T, model.config.n_book, generator=g)

    def hidden(rows: list[int]) -> torch.Tensor:
        cache = model.new_cache(len(rows))
        with torch.inference_mode():
            return torch.stack(
                [model.step(comps[rows, t], book[rows, t], cache) for t in range(T)], 1
            )

    full = hidden(list(range(64)))
    for rows in (list(range(BATCH_FLOOR)), list(range(40, 64)), list(range(0, 64, 2))[::-1]):
        assert torch.equal(hidden(rows), full[rows]), f"batch of {len(rows)} rows differs"


def test_every_pooled_forward_covers_the_floor(loaded) -> None:
    pool = RowPool(loaded, 100)
    for rows in ([0], [99], [50, 51], list(range(30, 70))):
        part = inputs(np.array(rows), 0, pool.n_book)[0]
        lo, hi = pool.window([part])
        assert hi - lo >= BATCH_FLOOR and lo <= min(rows) and max(rows) < hi <= pool.capacity


def test_a_callers_rows_do_not_depend_on_who_shares_the_forward(loaded) -> None:
    alone = RowPool(loaded)
    mine = alone.allocate(3)
    steps = inputs(mine, 1, alone.n_book)
    expected = [alone.step([s])[0] for s in steps]

    crowded = RowPool(loaded)
    others = crowded.allocate(40)  # rows before ours: a different window and batch size
    ours = crowded.allocate(3)
    assert crowded.capacity > BATCH_FLOOR
    theirs = inputs(others, 2, crowded.n_book)
    for k, s in enumerate(inputs(ours, 1, crowded.n_book)):
        got = crowded.step([theirs[k], s])[1]
        np.testing.assert_array_equal(got, expected[k])


def test_released_rows_start_with_an_empty_context(loaded) -> None:
    pool = RowPool(loaded)
    rows = pool.allocate(2)
    steps = inputs(rows, 3, pool.n_book)
    first = [pool.step([s])[0] for s in steps]
    pool.release(rows)
    again = pool.allocate(2)
    np.testing.assert_array_equal(again, rows)
    second = [
        pool.step([StepInput(again, s.components, s.book, s.uniforms, s.active)])[0] for s in steps
    ]
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)


def test_the_pool_grows_without_disturbing_open_rows(loaded) -> None:
    pool = RowPool(loaded)
    rows = pool.allocate(4)
    steps = inputs(rows, 4, pool.n_book)
    reference = RowPool(loaded)
    ref_rows = reference.allocate(4)
    for k, s in enumerate(steps):
        if k == 6:
            pool.allocate(100)  # grows the cache mid-sequence
        got = pool.step([s])[0]
        want = reference.step([StepInput(ref_rows, s.components, s.book, s.uniforms, s.active)])[0]
        np.testing.assert_array_equal(got, want)
    assert pool.capacity >= 104


def test_a_served_step_packs_into_one_matrix_and_back(loaded) -> None:
    from mars_ray.serve.wire import pack_step, unpack_step

    rng = np.random.default_rng(0)
    comps = rng.integers(0, 16, (3, 4))
    book = rng.normal(size=(3, 24)).astype(np.float32)
    u = rng.random((3, 4)).astype(np.float32)
    active = np.array([True, False, True])
    kind = rng.normal(size=(3, 4)).astype(np.float32)
    gap = rng.normal(size=(3, 16)).astype(np.float32)
    rows = np.array([5, 6, 7])
    for kind_bias, gap_bias in ((None, None), (kind, None), (None, gap), (kind, gap)):
        packed = pack_step(comps, book, u, active, kind_bias, gap_bias)
        part = unpack_step(packed, rows, 24, 16, 0.5)
        np.testing.assert_array_equal(part.components, comps)
        np.testing.assert_array_equal(part.book, book)
        np.testing.assert_array_equal(part.uniforms, u)
        np.testing.assert_array_equal(part.active, active)
        for got, sent in ((part.kind_bias, kind_bias), (part.gap_bias, gap_bias)):
            assert (got is None) == (sent is None)
            if sent is not None:
                np.testing.assert_array_equal(got, sent)
    with pytest.raises(ValueError, match=r"a step must be \(rows, 53\)"):
        unpack_step(np.zeros((3, 30), np.float32), rows, 24, 16, 1.0)
    with pytest.raises(ValueError, match="the session has 3 rows, the step 2"):
        unpack_step(pack_step(comps[:2], book[:2], u[:2], active[:2]), rows, 24, 16, 1.0)
    with pytest.raises(ValueError, match="one row per book"):
        pack_step(comps, book[:2], u, active)


def test_local_generator_is_a_pool_of_its_own(loaded) -> None:
    gen = LocalGenerator(loaded, 2, temperature=0.7)
    out = gen.next(np.zeros((2, 4)), np.zeros((2, 24)), np.full((2, 4), 0.5), np.ones(2, bool))
    assert out.shape == (2, 4)
    # the fused step needs no padding rows; the torch step pads to BATCH_FLOOR
    assert gen.pool.capacity == (2 if gen.pool.fast is not None else BATCH_FLOOR)


def test_a_pickled_pool_goes_on_as_the_original(loaded) -> None:
    """A shard checkpoint pickles the pool. The copy steps as the original would, and its
    fused step writes the copy's own cache tensors, not a detached copy of them."""
    pool = RowPool(loaded, 2)
    assert pool.fast is not None and pool.capacity == 2
    rows = pool.allocate(2)
    steps = inputs(rows, 5, pool.n_book)
    for s in steps[:6]:
        pool.step([s])
    copy = pickle.loads(pickle.dumps(pool))
    for s in steps[6:]:
        np.testing.assert_array_equal(copy.step([s])[0], pool.step([s])[0])
    for mine, theirs in zip(copy.cache.k + copy.cache.v, pool.cache.k + pool.cache.v, strict=True):
        assert torch.equal(mine, theirs)
    assert torch.equal(copy.cache.pos, pool.cache.pos)
