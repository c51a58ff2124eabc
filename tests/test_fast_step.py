"""The fused CPU step (mars_ray/lmm/fast_step.py) against OrderModel.step and sample."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mars_ray.lmm.checkpoint import load_model
from mars_ray.lmm.fast_step import FastStep, _exp_shifted, _gelu
from mars_ray.lmm.generate import RowPool, StepInput
from mars_ray.lmm.model import KVCache, LMMConfig, OrderModel

TOL = 1e-5


def tiny(head: str, n_kv_head: int | None, seed: int = 0, memory: bool = False) -> OrderModel:
    torch.manual_seed(seed)
    cfg = LMMConfig(
        n_layer=2, n_head=4, n_kv_head=n_kv_head, n_embd=32, block_size=16, head=head,
        market_memory=memory,
    )  # fmt: skip
    model = OrderModel(cfg).eval()
    with torch.no_grad():  # biases away from their zero init, so that they are tested too
        for name, p in model.named_parameters():
            if name.endswith("bias") or "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    return model


def ulps(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    """Distance in float32 units in the last place of ``want``."""
    return np.abs(got.astype(np.float64) - want) / np.spacing(np.abs(want).astype(np.float32))


def test_gelu_is_the_float32_rounding_of_the_exact_one() -> None:
    """The fused GELU's erf (fitted polynomials, no libm) against math.erfc in float64,
    over the whole range: the core, the tail, the switch at |x| = sqrt 2 and the far tail
    where the exact value is subnormal in float32 or below its least."""
    rng = np.random.default_rng(0)
    x = np.concatenate([
        np.linspace(-15, 15, 300_001), 3 * rng.standard_normal(100_000),
        [0.0, 1e-30, -1e-30, 1.4142135, -1.4142135, 1.4142137, -1.4142137, 14.142136, -200],
    ]).astype(np.float32)  # fmt: skip
    exact = np.array([0.5 * v * math.erfc(-v / math.sqrt(2.0)) for v in x.astype(np.float64)])
    got = x.copy()
    _gelu(got)
    normal = np.abs(exact) >= np.finfo(np.float32).tiny
    assert ulps(got[normal], exact[normal]).max() <= 1.0
    assert np.all(np.abs(got[~normal]) < np.finfo(np.float32).tiny)  # 0 or subnormal
    assert np.mean(got[normal] == exact[normal].astype(np.float32)) > 0.9999  # the rounding


def test_attention_exp_is_within_two_ulp_of_libm() -> None:
    rng = np.random.default_rng(1)
    s = np.concatenate([-90 * rng.random(100_000), [0.0, -1e-8, -87.0, -np.inf]]).astype(np.float32)
    got = np.empty_like(s)
    _exp_shifted(s, np.float32(0.0), got, np.empty_like(s))
    want = np.exp(s.astype(np.float64))
    live = s >= -87.0
    assert ulps(got[live], want[live]).max() <= 2.0
    assert np.all(got[~live] == 0.0)  # what exp gives past -87 adds nothing to a softmax


STREAMS = [(h, kv, False) for h in ("factorised", "joint") for kv in (None, 2, 1)]


@pytest.mark.parametrize(
    ("head", "n_kv_head", "memory"), [*STREAMS, ("factorised", None, True), ("joint", 1, True)]
)
def test_fused_step_equals_torch_over_a_long_stream(
    head: str, n_kv_head: int | None, memory: bool
) -> None:
    """Five rows, some inactive at times, for five windows: hidden states and every head's
    logits within 1e-5, the same sampled orders, positions and caches (and, with a market
    memory, the same last market orders; a third of the sampled orders made market ones)."""
    model = tiny(head, n_kv_head, memory=memory)
    fast = FastStep(model)
    B, steps = 5, 5 * model.config.block_size
    ref, mine = model.new_cache(B), model.new_cache(B)
    rng = np.random.default_rng(1)
    comp = np.zeros((B, 4), dtype=np.int64)
    temperature = np.array([1.0, 0.7, 1.3, 1.0, 2.0], dtype=np.float32)
    worst = 0.0
    for t in range(steps):
        book = rng.standard_normal((B, model.config.n_book)).astype(np.float32)
        active = rng.random(B) < 0.85
        u = rng.random((B, 4))
        kind = rng.standard_normal((B, 4)).astype(np.float32) if t % 3 == 0 else None
        gap = rng.standard_normal((B, 16)).astype(np.float32) if t % 4 == 0 else None
        h_ref = model.step(
            torch.from_numpy(comp), torch.from_numpy(book), ref, torch.from_numpy(active)
        )
        h = fast.hidden(mine, np.arange(B), comp, book, active)
        worst = max(worst, float(np.abs(h_ref.numpy() - h).max()))
        o_ref = model.sample(
            h_ref,
            torch.from_numpy(u),
            torch.from_numpy(temperature),
            None if kind is None else torch.from_numpy(kind),
            None if gap is None else torch.from_numpy(gap),
        ).numpy()
        o = fast.sample(h, u, temperature, kind, gap)
        if head == "joint":
            o = near_ties_as_reference(model, h_ref, u, temperature, kind, gap, o, o_ref)
        np.testing.assert_array_equal(o, o_ref)
        if head == "factorised":
            for c, component_head in enumerate(model.heads):
                lg_ref = component_head(h_ref, torch.from_numpy(o_ref[:, :c])).detach().numpy()
                np.testing.assert_allclose(fast.logits(h, c, o_ref), lg_ref, rtol=0, atol=TOL)
        comp = o_ref
        if memory:
            comp[rng.random(B) < 0.3, :2] = (int(t % 2), 0)
    assert worst < TOL
    np.testing.assert_array_equal(mine.pos.numpy(), ref.pos.numpy())
    if memory:
        np.testing.assert_array_equal(mine.market.numpy(), ref.market.numpy())
        assert (ref.market[:, 0] > model.config.block_size).all()
    assert int(ref.pos.min()) > model.config.block_size  # well past the window
    for a, b in zip(mine.k + mine.v, ref.k + ref.v, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=0, atol=TOL)


def near_ties_as_reference(
    model: OrderModel,
    hidden: torch.Tensor,
    u: np.ndarray,
    temperature: np.ndarray,
    kind: np.ndarray | None,
    gap: np.ndarray | None,
    o: np.ndarray,
    o_ref: np.ndarray,
) -> np.ndarray:
    """The joint head's 24,576-way cdf is summed in another order than torch's, so a
    uniform within float rounding of a class boundary may land on the class beside:
    such draws (every cdf value between the two classes within 1e-5 of the target) are
    taken as the reference's; any other difference stays one."""
    o = o.copy()
    sizes = model.config.component_sizes
    with torch.no_grad():
        logits = (
            model.joint_head(hidden).double() / torch.from_numpy(temperature)[:, None]
        ).numpy()
    for r in np.flatnonzero((o != o_ref).any(axis=1)):
        lg = logits[r].reshape(sizes[0], -1, sizes[3])
        if kind is not None:
            lg = lg + kind[r][:, None, None]
        if gap is not None:
            lg = lg + gap[r][None, None, :]
        cdf = np.cumsum(np.exp(lg.ravel() - lg.max()))
        cdf /= cdf[-1]
        ids = [int(np.ravel_multi_index(tuple(x[r]), sizes)) for x in (o, o_ref)]
        lo, hi = min(ids), max(ids)
        target = np.float32(min(u[r, 0], 1 - 2**-24))
        if np.all(np.abs(cdf[lo:hi] - target) < TOL):
            o[r] = o_ref[r]
    return o


@pytest.mark.parametrize("threads", [1, 3])
def test_a_row_gets_the_same_bits_alone_or_in_any_batch(threads: int) -> None:
    """What lets the fused path skip BATCH_FLOOR: a row's result does not depend on the
    other rows of its step, its place among them (linears run in tiles of 4 rows) or the
    thread that steps it (9 rows on 3 threads: two parts of 4 and 5)."""
    model = tiny("factorised", None)
    fast = FastStep(model, threads=threads)
    rng = np.random.default_rng(2)
    book = rng.standard_normal((9, model.config.n_book)).astype(np.float32)
    uniforms = rng.random((20, 9, 4))
    results = []
    for rows in ([3], [5, 3], [0, 1, 2, 3, 4, 5, 6], [8, 3, 5], list(range(9))[::-1]):
        cache = model.new_cache(9)
        at = rows.index(3)
        comp = np.zeros((len(rows), 4), dtype=np.int64)
        stream = []
        for t in range(20):  # each row's own sampled orders fed back, as a simulation does
            h = fast.hidden(cache, np.array(rows), comp, book[rows])
            comp = fast.sample(h, uniforms[t, rows])
            stream.append((h[at].copy(), comp[at].copy()))
        results.append(stream)
    for other in results[1:]:
        for (h, o), (h0, o0) in zip(other, results[0], strict=True):
            np.testing.assert_array_equal(h, h0)
            np.testing.assert_array_equal(o, o0)


def test_a_pickled_fused_step_steps_again_also_from_before_threads() -> None:
    import pickle

    model = tiny("factorised", None)
    fast = FastStep(model, threads=2)
    rows, comp, book = np.arange(8), np.zeros((8, 4)), np.zeros((8, model.config.n_book))
    want = fast.hidden(model.new_cache(8), rows, comp, book)
    again = pickle.loads(pickle.dumps(fast))
    old = dict(fast.__getstate__())
    del old["threads"], old["_pool"]  # what a FastStep pickled before threads held
    older = FastStep.__new__(FastStep)
    older.__setstate__(old)
    assert again.threads == 2 and older.threads == 1
    for f in (again, older):
        np.testing.assert_array_equal(f.hidden(model.new_cache(8), rows, comp, book), want)


def test_threads_refuse_a_row_stepped_twice() -> None:
    model = tiny("factorised", None)
    fast, cache = FastStep(model, threads=2), model.new_cache(9)
    rows = np.array([0, 1, 2, 3, 4, 5, 6, 3])
    with pytest.raises(ValueError, match="rows must be distinct"):
        fast.hidden(cache, rows, np.zeros((8, 4)), np.zeros((8, model.config.n_book)))


def test_pool_orders_are_the_same_by_either_path() -> None:
    """The shipped model in a small pool: the fused path is chosen, and its orders are the
    torch path's."""
    loaded = load_model(None, device="cpu")
    fast, slow = RowPool(loaded, 3), RowPool(loaded, 3, fused=False)
    assert fast.fast is not None and slow.fast is None
    rows_f, rows_s = fast.allocate(3), slow.allocate(3)
    rng = np.random.default_rng(3)
    comp = np.zeros((3, 4), dtype=np.int64)
    for _ in range(40):
        book = rng.standard_normal((3, loaded.model.config.n_book)).astype(np.float32)
        u, active = rng.random((3, 4)), rng.random(3) < 0.9
        a = fast.step([StepInput(rows_f, comp, book, u, active)])[0]
        b = slow.step([StepInput(rows_s, comp, book, u, active)])[0]
        np.testing.assert_array_equal(a, b)
        comp = b


_CACHE_BITS = """
import hashlib
import numpy as np
import torch
from mars_ray.lmm.checkpoint import load_model
from mars_ray.lmm.fast_step import FastStep
model = load_model(device="cpu").model  # the shipped shape: wide enough to vectorise
fast, cache = FastStep(model), model.new_cache(3)
rng = np.random.default_rng(0)
comp = np.zeros((3, 4), dtype=np.int64)
for _ in range(100):
    book = rng.standard_normal((3, model.config.n_book)).astype(np.float32)
    h = fast.hidden(cache, np.arange(3), comp, book, np.ones(3, dtype=bool))
    comp = fast.sample(h, rng.random((3, 4)), np.ones(3, dtype=np.float32), None, None)
digest = hashlib.sha256(h.tobytes())
for layer in (*cache.k, *cache.v):
    digest.update(layer.numpy().tobytes())
print(digest.hexdigest())
"""


@pytest.mark.slow
def test_a_fresh_compile_and_numba_s_cached_code_give_the_same_bits(tmp_path) -> None:
    """The first run after compiling must sample what every later run samples: the same
    hidden state and cache bits from a fresh compile as from numba's cache."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba")}
    runs = [
        subprocess.run([sys.executable, "-c", _CACHE_BITS], env=env, capture_output=True, text=True)
        for _ in range(2)
    ]
    assert all(r.returncode == 0 for r in runs), runs[0].stderr[-2000:]
    assert any((tmp_path / "numba").rglob("*.nbi"))  # the second run loaded the cache
    assert runs[0].stdout == runs[1].stdout


def test_a_cache_with_the_old_key_layout_is_refused_by_both_paths() -> None:
    model = tiny("factorised", None)
    cache = model.new_cache(2)
    old = KVCache(  # keys (B, kv_heads, slots, head_dim), as mars-ray stored them before
        k=[k.transpose(2, 3).contiguous() for k in cache.k], v=cache.v, pos=cache.pos
    )
    components, book = torch.zeros(2, 4, dtype=torch.long), torch.zeros(2, model.config.n_book)
    with pytest.raises(ValueError, match="older mars-ray"):
        model.step(components, book, old)
    with pytest.raises(ValueError, match="older mars-ray"):
        FastStep(model).hidden(old, np.arange(2), components.numpy(), book.numpy())
