"""A fused CPU step for small batches: ``OrderModel.step`` + ``sample`` in one numba call.

At the batch sizes simulations use (one shard's books: 1-16 rows) a torch step is almost
all per-operation overhead: dozens of small tensor calls for about 2 MFLOP of work. Here
the whole step, input embedding, every layer's RMSNorm, RoPE, attention against the KV
cache, GELU MLP, the final norm and the head with its inverse-CDF sampling, is one
compiled function over the model's weights held as numpy arrays. It reads and writes the
same ``KVCache`` tensors as the torch step (numpy views of CPU tensors share their
memory), so a row can be stepped by either path and the cache stays one.

Same maths as ``OrderModel.step``/``sample`` in float32 (tests hold the hidden states and
the logits equal to 1e-5 and the sampled orders equal for the same uniforms), with three
differences in *how*: sums run in their own order, GELU is taken in float64 (from fitted
polynomials: numba's erf is a libm call that does not vectorise) and the attention's exp
is a float32 polynomial, so the last bits differ from torch's. No fastmath: with
reassociation or fused multiply-adds allowed, LLVM's choices differ between a fresh
compile and numba's cached code, so a run right after compiling and the runs after it
would sample different orders from one seed. A row's result does not depend on the other
rows of its batch or on its place in it (linears run in tiles of ``TILE`` rows that share
each weight read, and every row takes the same instructions), which keeps a book's
orders independent of the shard layout without torch's ``BATCH_FLOOR`` padding.

Above ``THREAD_MIN_ROWS`` rows per thread a step's rows are split across threads (torch's
thread count: one in a Ray worker); rows are independent, so the split does not change a
bit. ``use_fast`` makes the choice between this path and torch once, from the device: on
CPU the fused step is faster at every batch size measured, 1 to 256 rows, on one thread or
two (docs/performance.md).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import torch
from numba import njit

from mars_ray.lmm.model import _BELOW_ONE, MEMORY_AGES, ROPE_BASE, KVCache, OrderModel
from mars_ray.lmm.tokenizer import MARKETABLE, Kind

log = logging.getLogger(__name__)

TILE = 4  # rows per linear tile: a weight row read once serves TILE rows
# A step over fewer rows than this per thread is too short for threads to pay for
# themselves; above it the rows are split across ``FastStep.threads`` threads.
THREAD_MIN_ROWS = 4
_SQRT_HALF = 1.0 / math.sqrt(2.0)


def use_fast(model: OrderModel, batch: int) -> bool:
    """Whether ``batch``-row steps of ``model`` take the fused path: on CPU, where it is
    faster at every batch size. Logged once per caller (the choice is made once)."""
    fast = model.device.type == "cpu"
    path = "fused numba step" if fast else "torch step"
    log.info("LMM generation: %s (batch %d on %s)", path, batch, model.device)
    return fast


@dataclass(frozen=True)
class FastWeights:
    """The model's weights as contiguous float32 arrays, per layer stacked on axis 0."""

    embed: np.ndarray  # (sum sizes, C): the 4 component tables, one after another
    embed_at: np.ndarray  # (4,) first row of each component's table
    # linears' weights are stored transposed, (in, out), for ``_linear``
    book_w: np.ndarray  # (n_book, C)
    book_b: np.ndarray  # (C,)
    memory: np.ndarray  # (N_MEMORY, C) market-memory embedding, or (0, C) without one
    norm1: np.ndarray  # (L, C)
    qkv: np.ndarray  # (L, C, C + 2 G D)
    attn_proj: np.ndarray  # (L, C, C)
    norm2: np.ndarray  # (L, C)
    fc: np.ndarray  # (L, C, 4C)
    mlp_proj: np.ndarray  # (L, 4C, C)
    norm_f: np.ndarray  # (C,)
    inv_freq: np.ndarray  # (D/2,) float64 RoPE frequencies
    eps: float
    n_head: int
    n_kv: int
    sizes: np.ndarray  # (4,) component sizes
    joint: bool
    # factorised heads: condition tables of head c for component j < c at cond_at[c, j]
    cond: np.ndarray  # (rows, C)
    cond_at: np.ndarray  # (4, 4)
    head_fc: np.ndarray  # (4, C, C) transposed, (in, out)
    head_fc_b: np.ndarray  # (4, C)
    head_out: np.ndarray  # (C, sum sizes) transposed, head c's columns from out_at[c]
    head_out_b: np.ndarray  # (sum sizes,)
    out_at: np.ndarray  # (4,)
    # joint head
    joint_w: np.ndarray  # (vocab, C) or (0, C)
    joint_b: np.ndarray  # (vocab,) or (0,)

    @property
    def head(self) -> tuple:
        """The factorised heads' arrays, as ``head_logits`` takes them."""
        return (
            self.cond, self.cond_at, self.head_fc, self.head_fc_b,
            self.head_out, self.head_out_b, self.out_at,
        )  # fmt: skip

    @classmethod
    def from_model(cls, model: OrderModel) -> FastWeights:
        cfg = model.config
        if cfg.dropout and model.training:
            raise ValueError("the fused step is for inference: call model.eval() first")

        def a(t: torch.Tensor) -> np.ndarray:
            return np.ascontiguousarray(t.detach().to("cpu", torch.float32).numpy())

        def stack(get) -> np.ndarray:
            return np.ascontiguousarray(np.stack([a(get(b)).T for b in model.blocks]))

        sizes = np.array(cfg.component_sizes, dtype=np.int64)
        starts = np.concatenate(([0], np.cumsum(sizes)[:-1])).astype(np.int64)
        C = cfg.n_embd
        half = cfg.head_dim // 2
        # as rope_angles forms them: float64 powers of the base
        inv_freq = (
            torch.tensor(ROPE_BASE, dtype=torch.float64)
            ** (-torch.arange(half, dtype=torch.float64) / half)
        ).numpy()
        cond_at = np.zeros((4, 4), dtype=np.int64)
        if cfg.head == "factorised":
            tables = []
            n = 0
            for c, head in enumerate(model.heads):
                for j, emb in enumerate(head.cond):
                    cond_at[c, j] = n
                    tables.append(a(emb.weight))
                    n += emb.weight.shape[0]
            cond = np.concatenate(tables) if tables else np.zeros((0, C), np.float32)
            head_fc = np.stack([a(h.fc.weight).T for h in model.heads])
            head_fc_b = np.stack([a(h.fc.bias) for h in model.heads])
            head_out = np.concatenate([a(h.out.weight) for h in model.heads]).T
            head_out_b = np.concatenate([a(h.out.bias) for h in model.heads])
            joint_w, joint_b = np.zeros((0, C), np.float32), np.zeros(0, np.float32)
        else:
            cond = np.zeros((0, C), np.float32)
            head_fc = np.zeros((4, C, C), np.float32)
            head_fc_b = np.zeros((4, C), np.float32)
            head_out, head_out_b = np.zeros((C, 0), np.float32), np.zeros(0, np.float32)
            joint_w, joint_b = a(model.joint_head.weight), a(model.joint_head.bias)
        eps = model.norm_f.eps
        return cls(
            embed=np.concatenate([a(e.weight) for e in model.embed]),
            embed_at=starts,
            book_w=np.ascontiguousarray(a(model.book_proj.weight).T),
            book_b=a(model.book_proj.bias),
            memory=(
                a(model.memory_embed.weight)
                if model.memory_embed is not None
                else np.zeros((0, C), np.float32)
            ),
            norm1=stack(lambda b: b.norm1.weight),
            qkv=stack(lambda b: b.attn.qkv.weight),
            attn_proj=stack(lambda b: b.attn.proj.weight),
            norm2=stack(lambda b: b.norm2.weight),
            fc=stack(lambda b: b.mlp.fc.weight),
            mlp_proj=stack(lambda b: b.mlp.proj.weight),
            norm_f=a(model.norm_f.weight),
            inv_freq=np.ascontiguousarray(inv_freq),
            eps=float(torch.finfo(torch.float32).eps if eps is None else eps),
            n_head=cfg.n_head,
            n_kv=cfg.kv_heads,
            sizes=sizes,
            joint=cfg.head == "joint",
            cond=np.ascontiguousarray(cond),
            cond_at=cond_at,
            head_fc=np.ascontiguousarray(head_fc),
            head_fc_b=np.ascontiguousarray(head_fc_b),
            head_out=np.ascontiguousarray(head_out),
            head_out_b=np.ascontiguousarray(head_out_b),
            out_at=starts.copy(),
            joint_w=joint_w,
            joint_b=joint_b,
        )


# ----------------------------------------------------------------------------- kernels


@njit(cache=True)
def _linear(x: np.ndarray, wt: np.ndarray, n: int, y: np.ndarray) -> None:
    """y[:n] = x[:n] @ wt for weights stored transposed, wt (in, out).

    Each output is the sum over inputs in order, one multiply-add at a time, vectorised
    across outputs; four inputs are added per pass over a row's outputs, still in order, so
    the outputs are loaded and stored a quarter as often. A row gets the same bits alone or
    in a batch: rows go in tiles of TILE that share each group of weight rows while it is
    in L1, but every row takes the same instructions.
    """
    k, m = wt.shape
    k4 = k - k % 4
    for r in range(n):
        for o in range(m):
            y[r, o] = 0.0
    for r0 in range(0, n, TILE):
        r1 = min(r0 + TILE, n)
        for i in range(0, k4, 4):
            w0, w1, w2, w3 = wt[i], wt[i + 1], wt[i + 2], wt[i + 3]
            for r in range(r0, r1):
                a0, a1, a2, a3 = x[r, i], x[r, i + 1], x[r, i + 2], x[r, i + 3]
                yr = y[r]
                for o in range(m):
                    yr[o] = (((yr[o] + a0 * w0[o]) + a1 * w1[o]) + a2 * w2[o]) + a3 * w3[o]
        for i in range(k4, k):
            w = wt[i]
            for r in range(r0, r1):
                a = x[r, i]
                yr = y[r]
                for o in range(m):
                    yr[o] += a * w[o]


@njit(cache=True)
def _rms_norm(x: np.ndarray, weight: np.ndarray, eps: float, out: np.ndarray) -> None:
    for r in range(x.shape[0]):
        ss = np.float32(0.0)
        for i in range(x.shape[1]):
            ss += x[r, i] * x[r, i]
        scale = np.float32(1.0) / np.sqrt(ss / np.float32(x.shape[1]) + np.float32(eps))
        for i in range(x.shape[1]):
            out[r, i] = x[r, i] * scale * weight[i]


# erf for GELU in float64 without libm (numba's math.erf is a call per element and does
# not vectorise). Least-squares fits, at Chebyshev nodes, to math.erf and math.erfc:
# erf(z) / z as a polynomial in z*z for z <= 1 (abs error 8e-13), and erfc(z) * exp(z*z)
# as a polynomial in u = 4t - 5/3, t = 1 / (1 + z/2), for 1 <= z <= 10 (rel error 6e-14;
# past 10 erfc is below float32's least value). Tests hold the GELU to math.erfc's.
_ERF_CORE = np.array([
    1.1283791670946954, -0.37612638889876115, 0.11283791313581014, -0.02686613362977947,
    0.00522378501856878, -0.0008542670731452246, 0.00011956948012357021,
    -1.3911704652765457e-05, 1.0595276351417717e-06,
])  # fmt: skip
_ERFCX_TAIL = np.array([
    0.19054887968999362, 0.1765596695949441, 0.05077565033035988, 0.009331321116534978,
    0.0005660801778209244, -0.0001751975963116384, -2.9508443706220196e-05,
    5.801405411340303e-06, 1.2250816564780979e-06, -3.2340298957174495e-07,
    -4.269274286589787e-08, 2.1768248511936668e-08, 1.9068396592580656e-10,
    -1.1798492219619757e-09, 1.1574821624984818e-10,
])  # fmt: skip
_LN2_HI, _LN2_LO = 6.93147180369123816490e-01, 1.90821492927058770002e-10  # fdlibm's split


@njit(cache=True, error_model="numpy")  # no zero-division check: it would stop vectorising
def _gelu(x: np.ndarray) -> None:
    """x = x * (1 + erf(x / sqrt 2)) / 2 in place over a 1-D float32 array, evaluated in
    float64: erf from the fits above, exp(-z*z) as 2**k * e**r with e**r by its Taylor
    series to r**11 (|r| <= ln2 / 2: error below 1e-14), the 2**k written as float bits."""
    n = x.shape[0]
    part = np.empty(n, dtype=np.float64)  # erfc(|z|), but for the tail's power of two
    two = np.empty(n, dtype=np.float64)
    bits = two.view(np.int64)
    for i in range(n):
        z = min(abs(np.float64(x[i])) * _SQRT_HALF, 10.0)
        zz = z * z
        p = _ERF_CORE[8]
        for j in range(7, -1, -1):
            p = p * zz + _ERF_CORE[j]
        u = 4.0 / (1.0 + 0.5 * z) - 5.0 / 3.0
        q = _ERFCX_TAIL[14]
        for j in range(13, -1, -1):
            q = q * u + _ERFCX_TAIL[j]
        k = math.floor(zz * -1.4426950408889634 + 0.5)
        r = (-zz - k * _LN2_HI) - k * _LN2_LO
        e = 1.0 / 39916800.0
        for f in (3628800.0, 362880.0, 40320.0, 5040.0, 720.0, 120.0, 24.0, 6.0, 2.0, 1.0, 1.0):
            e = e * r + 1.0 / f
        core = z <= 1.0
        part[i] = 1.0 - z * p if core else (q * e if z < 10.0 else 0.0)
        bits[i] = (0 if core else np.int64(k)) + 1023 << 52
    for i in range(n):
        v = np.float64(x[i])
        erfc = part[i] * two[i]
        x[i] = np.float32(0.5 * v * (erfc if v < 0.0 else 2.0 - erfc))


@njit(cache=True)
def _rope(x: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> None:
    """Rotate each head's channel pairs (i, i + D/2) of x (heads, D) in place."""
    half = cos.shape[0]
    for h in range(x.shape[0]):
        for i in range(half):
            x1 = x[h, i]
            x2 = x[h, i + half]
            x[h, i] = x1 * cos[i] - x2 * sin[i]
            x[h, i + half] = x1 * sin[i] + x2 * cos[i]


@njit(cache=True)
def _exp_shifted(s: np.ndarray, best: np.float32, e: np.ndarray, scale: np.ndarray) -> None:
    """e = exp(s - best) for s <= best, -inf giving 0, in float32 (Cephes' expf).

    numba's exp is a libm call per element; this one vectorises: a degree-6 polynomial on
    the reduced argument and the power of two written as float bits (``scale``, an int32
    scratch viewed as float32). Within 2 ulp of libm's, which the tests' 1e-5 covers.
    """
    bits = scale.view(np.int32)
    for j in range(s.shape[0]):
        x = max(s[j] - best, np.float32(-87.0))
        fx = math.floor(x * np.float32(1.44269504088896341) + np.float32(0.5))
        x = x - fx * np.float32(0.693359375) - fx * np.float32(-2.12194440e-4)
        p = np.float32(1.9875691500e-4) * x + np.float32(1.3981999507e-3)
        p = p * x + np.float32(8.3334519073e-3)
        p = p * x + np.float32(4.1665795894e-2)
        p = p * x + np.float32(1.6666665459e-1)
        p = p * x + np.float32(5.0000001201e-1)
        e[j] = p * x * x + x + np.float32(1.0)
        bits[j] = (np.int32(fx) + np.int32(127)) << 23
    for j in range(s.shape[0]):
        e[j] = e[j] * scale[j] if s[j] - best >= np.float32(-87.0) else np.float32(0.0)


@njit(cache=True)
def _attend(
    qkv: np.ndarray,
    k_cache: np.ndarray,
    v_cache: np.ndarray,
    row: int,
    pos: int,
    write: int,
    n_head: int,
    n_kv: int,
    cos: np.ndarray,
    sin: np.ndarray,
    scratch: np.ndarray,
    y: np.ndarray,
) -> None:
    """One row's attention: rotate q and k, store k and v at ``write``, attend over the
    window (the block_size - 1 previous orders and the new one), y (C,) = heads' outputs.
    ``scratch`` is (4, block_size + 1) float32 working space."""
    S = v_cache.shape[2]
    bs = S - 1
    D = v_cache.shape[3]
    C = n_head * D
    q = qkv[:C].reshape(n_head, D)
    k = qkv[C : C + n_kv * D].reshape(n_kv, D)
    v = qkv[C + n_kv * D :].reshape(n_kv, D)
    _rope(q, cos, sin)
    _rope(k, cos, sin)
    for g in range(n_kv):
        for d in range(D):
            k_cache[row, g, d, write] = k[g, d]
            v_cache[row, g, write, d] = v[g, d]
    slot = pos % bs
    seen = min(pos, bs)
    scale = np.float32(D**-0.5)
    per = n_head // n_kv
    scores, p, hide, two = scratch[0], scratch[1], scratch[2], scratch[3]
    for j in range(S):  # 0 for the slots in the window, -inf outside it
        seen_j = j == write or (j < seen and j != slot)
        hide[j] = np.float32(0.0) if seen_j else np.float32(-np.inf)
    D4 = D - D % 4
    S4 = S - S % 4
    for h in range(n_head):
        g = h // per
        keys = k_cache[row, g]  # (D, S): vectorised across the slots, four channels a pass
        values = v_cache[row, g]  # (S, D)
        for j in range(S):
            scores[j] = 0.0
        for d in range(0, D4, 4):
            a0, a1, a2, a3 = q[h, d], q[h, d + 1], q[h, d + 2], q[h, d + 3]
            k0, k1, k2, k3 = keys[d], keys[d + 1], keys[d + 2], keys[d + 3]
            for j in range(S):
                scores[j] = (((scores[j] + a0 * k0[j]) + a1 * k1[j]) + a2 * k2[j]) + a3 * k3[j]
        for d in range(D4, D):
            a = q[h, d]
            for j in range(S):
                scores[j] += a * keys[d, j]
        best = np.float32(-np.inf)
        for j in range(S):
            scores[j] = scores[j] * scale + hide[j]
            best = max(best, scores[j])
        _exp_shifted(scores, best, p, two)
        total = np.float32(0.0)
        for j in range(S):
            total += p[j]
        inv = np.float32(1.0) / total
        for j in range(S):
            p[j] = p[j] * inv
        yh = y[h * D : (h + 1) * D]
        for d in range(D):
            yh[d] = 0.0
        # slots outside the window have p = 0 and add nothing
        for j in range(0, S4, 4):
            p0, p1, p2, p3 = p[j], p[j + 1], p[j + 2], p[j + 3]
            v0, v1, v2, v3 = values[j], values[j + 1], values[j + 2], values[j + 3]
            for d in range(D):
                yh[d] = (((yh[d] + p0 * v0[d]) + p1 * v1[d]) + p2 * v2[d]) + p3 * v3[d]
        for j in range(S4, S):
            pj = p[j]
            for d in range(D):
                yh[d] += pj * values[j, d]


@njit(cache=True, nogil=True)
def trunk(
    rows: np.ndarray,
    components: np.ndarray,
    book: np.ndarray,
    active: np.ndarray,
    pos: np.ndarray,
    market: np.ndarray,
    k_caches: tuple,
    v_caches: tuple,
    embed: np.ndarray,
    embed_at: np.ndarray,
    book_w: np.ndarray,
    book_b: np.ndarray,
    memory: np.ndarray,
    norm1: np.ndarray,
    qkv_w: np.ndarray,
    attn_proj: np.ndarray,
    norm2: np.ndarray,
    fc: np.ndarray,
    mlp_proj: np.ndarray,
    norm_f: np.ndarray,
    inv_freq: np.ndarray,
    eps: float,
    n_head: int,
    n_kv: int,
    hidden: np.ndarray,
) -> None:
    """``OrderModel.step`` for cache rows ``rows``: hidden (n, C) out, caches, ``pos`` and
    ``market`` (the rows' last market orders, for a model with a memory embedding: rows of
    ``memory``) updated in place (inactive rows write the scratch slot and keep their
    position and memory)."""
    n = rows.shape[0]
    C = book_w.shape[1]
    S = v_caches[0].shape[2]
    bs = S - 1
    x = np.empty((n, C), dtype=np.float32)
    xn = np.empty((n, C), dtype=np.float32)
    qkv = np.empty((n, qkv_w.shape[2]), dtype=np.float32)
    att = np.empty((n, C), dtype=np.float32)
    out = np.empty((n, C), dtype=np.float32)
    mid = np.empty((n, fc.shape[2]), dtype=np.float32)
    _linear(book, book_w, n, x)
    half = inv_freq.shape[0]
    cos = np.zeros((n, half), dtype=np.float32)
    sin = np.zeros((n, half), dtype=np.float32)
    write = np.zeros(n, dtype=np.int64)
    for r in range(n):
        for i in range(C):
            x[r, i] += book_b[i]
        for c in range(4):
            e = embed_at[c] + components[r, c]
            for i in range(C):
                x[r, i] += embed[e, i]
        p = pos[rows[r]]
        if memory.shape[0] > 0:
            last, side = market[rows[r], 0], market[rows[r], 1]
            if components[r, 0] <= Kind.SELL and components[r, 1] == MARKETABLE:
                last, side = p, components[r, 0]
                if active[r]:
                    market[rows[r], 0], market[rows[r], 1] = last, side
            state = 0
            if last >= 0:
                age = p - last
                bucket = 0
                for edge in MEMORY_AGES:
                    if age >= edge:
                        bucket += 1
                state = 1 + side * (len(MEMORY_AGES) + 1) + bucket
            for i in range(C):
                x[r, i] += memory[state, i]
        for i in range(half):
            angle = np.float64(p) * inv_freq[i]
            cos[r, i] = np.float32(math.cos(angle))
            sin[r, i] = np.float32(math.sin(angle))
        write[r] = p % bs if active[r] else bs
    scratch = np.zeros((4, S), dtype=np.float32)
    for layer in range(norm1.shape[0]):
        _rms_norm(x, norm1[layer], eps, xn)
        _linear(xn, qkv_w[layer], n, qkv)
        kc = k_caches[layer]
        vc = v_caches[layer]
        for r in range(n):
            _attend(
                qkv[r], kc, vc, rows[r], pos[rows[r]], write[r],
                n_head, n_kv, cos[r], sin[r], scratch, att[r],
            )  # fmt: skip
        _linear(att, attn_proj[layer], n, out)
        for r in range(n):
            for i in range(C):
                x[r, i] += out[r, i]
        _rms_norm(x, norm2[layer], eps, xn)
        _linear(xn, fc[layer], n, mid)
        for r in range(n):
            _gelu(mid[r])
        _linear(mid, mlp_proj[layer], n, out)
        for r in range(n):
            for i in range(C):
                x[r, i] += out[r, i]
    _rms_norm(x, norm_f, eps, xn)
    for r in range(n):
        for i in range(C):
            hidden[r, i] = xn[r, i]
        if active[r]:
            pos[rows[r]] += 1


@njit(cache=True)
def _inverse_cdf(logits: np.ndarray, u: np.float32) -> int:
    """As model._inverse_cdf: the smallest class i with u * total < cdf[i]."""
    n = logits.shape[0]
    best = logits[0]
    for i in range(1, n):
        if logits[i] > best:
            best = logits[i]
    total = np.float32(0.0)
    for i in range(n):
        e = np.exp(logits[i] - best)
        logits[i] = e
        total += e
    cdf = 0.0  # torch's CPU cumsum of float32 accumulates in float64: so does this one
    for i in range(n):  # normalised first, then summed, as torch does
        cdf += np.float64(logits[i] / total)
        logits[i] = np.float32(cdf)
    target = u * logits[n - 1]
    for i in range(n):
        if logits[i] > target:
            return i
    return n - 1


@njit(cache=True)
def head_logits(
    h: np.ndarray,
    c: int,
    earlier: np.ndarray,
    head: tuple,
    size: int,
    logits: np.ndarray,
) -> None:
    """Factorised head c's logits (size,) for one row: hidden h (C,), earlier components;
    ``head`` is ``FastWeights.head`` (cond, cond_at, fc, fc_b, out, out_b, out_at)."""
    cond, cond_at, head_fc, head_fc_b, head_out, head_out_b, out_at = head
    C = h.shape[0]
    z = np.empty(C, dtype=np.float32)
    for i in range(C):
        z[i] = h[i]
    for j in range(c):
        e = cond_at[c, j] + earlier[j]
        for i in range(C):
            z[i] += cond[e, i]
    m = np.empty((1, C), dtype=np.float32)
    _linear(z.reshape(1, C), head_fc[c], 1, m)
    m = m[0]
    for o in range(C):
        m[o] += head_fc_b[c, o]
    _gelu(m)
    base = out_at[c]
    for o in range(size):
        logits[o] = 0.0
    for i in range(C):
        a = m[i]
        for o in range(size):
            logits[o] += a * head_out[i, base + o]
    for o in range(size):
        logits[o] += head_out_b[base + o]


@njit(cache=True, nogil=True)
def sample(
    hidden: np.ndarray,
    uniforms: np.ndarray,
    temperature: np.ndarray,
    kind_bias: np.ndarray,
    gap_bias: np.ndarray,
    sizes: np.ndarray,
    joint: bool,
    head: tuple,
    joint_w: np.ndarray,
    joint_b: np.ndarray,
    out: np.ndarray,
) -> None:
    """``OrderModel.sample`` for each row: out (n, 4). kind_bias (n, 4) and gap_bias
    (n, n_gap) are added after the temperature (zeros where the caller gave none)."""
    n, C = hidden.shape
    biggest = max(sizes.max(), joint_w.shape[0])
    logits = np.empty(biggest, dtype=np.float32)
    n_gap = sizes[3]
    for r in range(n):
        t = temperature[r]
        if joint:
            V = joint_w.shape[0]
            per_kind = V // sizes[0]
            for o in range(V):
                s = np.float32(0.0)
                for i in range(C):
                    s += joint_w[o, i] * hidden[r, i]
                s = (s + joint_b[o]) / t
                logits[o] = s + kind_bias[r, o // per_kind] + gap_bias[r, o % n_gap]
            u = min(max(np.float32(uniforms[r, 0]), np.float32(0.0)), np.float32(_BELOW_ONE))
            ids = _inverse_cdf(logits[:V], u)
            for c in range(3, -1, -1):
                out[r, c] = ids % sizes[c]
                ids //= sizes[c]
            continue
        for c in range(4):
            size = sizes[c]
            head_logits(hidden[r], c, out[r], head, size, logits)
            for o in range(size):
                logits[o] = logits[o] / t
                if c == 0:
                    logits[o] += kind_bias[r, o]
                elif c == 3:
                    logits[o] += gap_bias[r, o]
            u = min(max(np.float32(uniforms[r, c]), np.float32(0.0)), np.float32(_BELOW_ONE))
            out[r, c] = _inverse_cdf(logits[:size], u)


# ----------------------------------------------------------------------------- driver


class FastStep:
    """The fused step over one model's weights, on the rows of a CPU ``KVCache``."""

    def __init__(self, model: OrderModel, threads: int | None = None) -> None:
        self.w = FastWeights.from_model(model)
        self.n_gap = int(self.w.sizes[3])
        # torch's thread count by default: 1 in a Ray worker (OMP_NUM_THREADS), the cores
        # on a driver or a Serve replica given several CPUs
        self.threads = max(1, torch.get_num_threads() if threads is None else int(threads))
        self._views: tuple[KVCache, tuple, tuple, np.ndarray, np.ndarray] | None = None
        self._zero: dict[tuple[str, int, int], np.ndarray] = {}
        self._pool: ThreadPoolExecutor | None = None

    def __getstate__(self) -> dict:
        """Without the cache views, the zeros and the threads: pickled (a shard checkpoint),
        a view would come back as a copy of the cache apart from its tensors. All three are
        made again."""
        return {**self.__dict__, "_views": None, "_zero": {}, "_pool": None}

    def __setstate__(self, state: dict) -> None:
        """A shard checkpoint from before the threads steps on one, as it did."""
        self.__dict__.update({"threads": 1, "_pool": None, **state})

    def _parts(self, n: int) -> list[slice]:
        """Row ranges stepped in parallel: one per thread, none under ``THREAD_MIN_ROWS``."""
        k = max(1, min(self.threads, n // THREAD_MIN_ROWS))
        cuts = [n * i // k for i in range(k + 1)]
        return [slice(a, b) for a, b in pairwise(cuts)]

    def _run(self, job: Callable[[slice], None], parts: list[slice]) -> None:
        """``job`` over the row ranges, on threads when there are several (the kernels
        release the GIL; rows are independent, so the bits do not depend on the split)."""
        if len(parts) == 1:
            job(parts[0])
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="fused-step")
        for done in [self._pool.submit(job, part) for part in parts]:
            done.result()

    def _zeros(self, n: int, what: str, width: int) -> np.ndarray:
        """float32 zeros (n, width), kept per shape (the kernels only read them): a step
        per order should not allocate the biases it was not given."""
        key = (what, n, width)
        z = self._zero.get(key)
        if z is None:
            z = self._zero[key] = np.zeros((n, width), dtype=np.float32)
        return z

    def _cache_views(self, cache: KVCache) -> tuple[tuple, tuple, np.ndarray, np.ndarray]:
        """numpy views of a CPU cache's tensors (same memory), made once per cache."""
        if self._views is None or self._views[0] is not cache:
            if cache.pos.device.type != "cpu":
                raise ValueError(f"the fused step runs on CPU caches, not {cache.pos.device}")
            cache.check_layout(self.w.book_w.shape[1] // self.w.n_head)
            if len(self.w.memory) and cache.market is None:
                raise ValueError("this model has market_memory: step it on a cache it made")
            k = tuple(t.numpy() for t in cache.k)
            v = tuple(t.numpy() for t in cache.v)
            market = np.zeros((0, 2), np.int64) if cache.market is None else cache.market.numpy()
            self._views = (cache, k, v, cache.pos.numpy(), market)
        return self._views[1:]

    def hidden(
        self,
        cache: KVCache,
        rows: np.ndarray,
        components: np.ndarray,
        book: np.ndarray,
        active: np.ndarray | None = None,
    ) -> np.ndarray:
        """Step cache rows ``rows``: hidden states (n, C), as ``OrderModel.step``."""
        w = self.w
        n = len(rows)
        if active is None:
            active = np.ones(n, dtype=np.bool_)
        hidden = np.empty((n, w.book_w.shape[1]), dtype=np.float32)
        k, v, pos, market = self._cache_views(cache)
        rows = np.ascontiguousarray(rows, dtype=np.int64)
        components = np.ascontiguousarray(components, dtype=np.int64)
        book = np.ascontiguousarray(book, dtype=np.float32)
        active = np.ascontiguousarray(active, dtype=np.bool_)
        parts = self._parts(n)
        if len(parts) > 1 and len(np.unique(rows)) != n:
            raise ValueError("rows must be distinct: each is one cache row stepped once")

        def job(part: slice) -> None:
            trunk(
                rows[part], components[part], book[part], active[part], pos, market, k, v,
                w.embed, w.embed_at, w.book_w, w.book_b, w.memory, w.norm1, w.qkv, w.attn_proj,
                w.norm2, w.fc, w.mlp_proj, w.norm_f, w.inv_freq, w.eps, w.n_head, w.n_kv,
                hidden[part],
            )  # fmt: skip

        self._run(job, parts)
        return hidden

    def sample(
        self,
        hidden: np.ndarray,
        uniforms: np.ndarray,
        temperature: np.ndarray | float = 1.0,
        kind_bias: np.ndarray | None = None,
        gap_bias: np.ndarray | None = None,
    ) -> np.ndarray:
        """Next components (n, 4), as ``OrderModel.sample``."""
        w = self.w
        n = hidden.shape[0]
        if isinstance(temperature, float | int):
            temps = self._zeros(n, "temperature", 1) + np.float32(temperature)
        else:
            temps = np.ascontiguousarray(np.broadcast_to(temperature, (n,)), dtype=np.float32)
        if kind_bias is None:
            kind_bias = self._zeros(n, "kind", int(w.sizes[0]))
        if gap_bias is None:
            gap_bias = self._zeros(n, "gap", self.n_gap)
        out = np.zeros((n, 4), dtype=np.int64)
        hidden = np.ascontiguousarray(hidden, dtype=np.float32)
        uniforms = np.ascontiguousarray(uniforms, dtype=np.float64)
        temps = temps.reshape(n)
        kind_bias = np.ascontiguousarray(kind_bias, dtype=np.float32)
        gap_bias = np.ascontiguousarray(gap_bias, dtype=np.float32)

        def job(part: slice) -> None:
            sample(
                hidden[part], uniforms[part], temps[part], kind_bias[part], gap_bias[part],
                w.sizes, w.joint, w.head, w.joint_w, w.joint_b, out[part],
            )  # fmt: skip

        self._run(job, self._parts(n))
        return out

    def logits(self, hidden: np.ndarray, c: int, earlier: np.ndarray) -> np.ndarray:
        """Factorised head c's logits (n, size_c) given the earlier components (n, >= c)."""
        w = self.w
        size = int(w.sizes[c])
        out = np.empty((hidden.shape[0], size), dtype=np.float32)
        earlier = np.ascontiguousarray(earlier, dtype=np.int64)
        for r in range(hidden.shape[0]):
            head_logits(hidden[r], c, earlier[r], w.head, size, out[r])
        return out


def warm_up() -> None:
    """Compile the kernels into numba's cache (the set-up script runs this once)."""
    from mars_ray.lmm.model import LMMConfig

    # the kernels' types include the number of layers (a tuple of caches): the shipped 4
    for head in ("factorised", "joint"):
        cfg = LMMConfig(n_layer=4, n_head=2, n_embd=8, block_size=4, head=head)
        model = OrderModel(cfg).eval()
        fast = FastStep(model)
        cache = model.new_cache(2)
        rows = np.arange(2)
        h = fast.hidden(cache, rows, np.zeros((2, 4)), np.zeros((2, cfg.n_book)))
        fast.sample(h, np.full((2, 4), 0.5))
        if head == "factorised":
            fast.logits(h, 1, np.zeros((2, 4)))
