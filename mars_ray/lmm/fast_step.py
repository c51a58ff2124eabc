"""A fused CPU step for small batches: ``OrderModel.step`` + ``sample`` in one numba call.

At the batch sizes simulations use (one shard's books: 1-16 rows) a torch step is almost
all per-operation overhead: dozens of small tensor calls for about 2 MFLOP of work. Here
the whole step, input embedding, every layer's RMSNorm, RoPE, attention against the KV
cache, GELU MLP, the final norm and the head with its inverse-CDF sampling, is one
compiled function over the model's weights held as numpy arrays. It reads and writes the
same ``KVCache`` tensors as the torch step (numpy views of CPU tensors share their
memory), so a row can be stepped by either path and the cache stays one.

Same maths as ``OrderModel.step``/``sample`` in float32 (tests hold the hidden states and
the logits equal to 1e-5 and the sampled orders equal for the same uniforms), with two
differences in *how*: sums run in their own order and GELU's erf is taken in float64, so
the last bits differ from torch's. No fastmath: with reassociation or fused multiply-adds
allowed, LLVM's choices differ between a fresh compile and numba's cached code, so a run
right after compiling and the runs after it would sample different orders from one seed.
A row's result does not depend on the other rows of its batch or on its place in it
(linears run in tiles of ``TILE`` rows, padded, so every row takes the same
instructions), which keeps a book's orders independent of the shard layout without
torch's ``BATCH_FLOOR`` padding.

``use_fast`` makes the choice between this path and torch once, from the device and the
batch size (docs/performance.md has the measurements behind ``FAST_MAX_BATCH``).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import torch
from numba import njit

from mars_ray.lmm.model import _BELOW_ONE, ROPE_BASE, KVCache, OrderModel

log = logging.getLogger(__name__)

TILE = 4  # rows per linear tile: a weight row read once serves TILE rows
# Up to this many rows per step the fused step is faster than torch on one CPU core
# (benchmarks/generation.py: per-path breakdown; docs/performance.md).
FAST_MAX_BATCH = 64
_SQRT_HALF = 1.0 / math.sqrt(2.0)


def use_fast(model: OrderModel, batch: int) -> bool:
    """Whether ``batch``-row steps of ``model`` take the fused path: on CPU, for the
    batch sizes where it is faster. Logged once per caller (the choice is made once)."""
    fast = model.device.type == "cpu" and batch <= FAST_MAX_BATCH
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
    across outputs: a row gets the same bits alone, in a pair or in a tile of TILE rows
    (which share each weight row read).
    """
    k, m = wt.shape
    for r in range(n):
        for o in range(m):
            y[r, o] = 0.0
    r = 0
    while r + TILE <= n:
        for i in range(k):
            a0 = x[r, i]
            a1 = x[r + 1, i]
            a2 = x[r + 2, i]
            a3 = x[r + 3, i]
            for o in range(m):
                w = wt[i, o]
                y[r, o] += a0 * w
                y[r + 1, o] += a1 * w
                y[r + 2, o] += a2 * w
                y[r + 3, o] += a3 * w
        r += TILE
    if r + 2 <= n:  # a pair (a shard of two books) shares its weight reads as well
        for i in range(k):
            a0 = x[r, i]
            a1 = x[r + 1, i]
            for o in range(m):
                w = wt[i, o]
                y[r, o] += a0 * w
                y[r + 1, o] += a1 * w
        r += 2
    while r < n:
        for i in range(k):
            a = x[r, i]
            for o in range(m):
                y[r, o] += a * wt[i, o]
        r += 1


@njit(cache=True)
def _rms_norm(x: np.ndarray, weight: np.ndarray, eps: float, out: np.ndarray) -> None:
    for r in range(x.shape[0]):
        ss = np.float32(0.0)
        for i in range(x.shape[1]):
            ss += x[r, i] * x[r, i]
        scale = np.float32(1.0) / np.sqrt(ss / np.float32(x.shape[1]) + np.float32(eps))
        for i in range(x.shape[1]):
            out[r, i] = x[r, i] * scale * weight[i]


@njit(cache=True)
def _gelu(x: np.ndarray) -> None:
    for r in range(x.shape[0]):
        for i in range(x.shape[1]):
            v = np.float64(x[r, i])
            x[r, i] = np.float32(0.5 * v * (1.0 + math.erf(v * _SQRT_HALF)))


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
    scores: np.ndarray,
    y: np.ndarray,
) -> None:
    """One row's attention: rotate q and k, store k and v at ``write``, attend over the
    window (the block_size - 1 previous orders and the new one), y (C,) = heads' outputs."""
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
    for h in range(n_head):
        g = h // per
        # every slot's score, summed over the channels in order: vectorised across the
        # slots (keys are stored transposed); slots outside the window are skipped below
        for j in range(S):
            scores[j] = 0.0
        for d in range(D):
            a = q[h, d]
            for j in range(S):
                scores[j] += a * k_cache[row, g, d, j]
        best = np.float32(-np.inf)
        for j in range(S):
            if j == write or (j < seen and j != slot):
                s = scores[j] * scale
                scores[j] = s
                if s > best:
                    best = s
        total = np.float32(0.0)
        for j in range(S):
            if j == write or (j < seen and j != slot):
                e = np.exp(scores[j] - best)
                scores[j] = e
                total += e
            else:
                scores[j] = 0.0
        for d in range(D):
            y[h * D + d] = 0.0
        inv = np.float32(1.0) / total
        for j in range(S):
            p = scores[j] * inv
            if p != 0.0:
                for d in range(D):
                    y[h * D + d] += p * v_cache[row, g, j, d]


@njit(cache=True)
def trunk(
    rows: np.ndarray,
    components: np.ndarray,
    book: np.ndarray,
    active: np.ndarray,
    pos: np.ndarray,
    k_caches: tuple,
    v_caches: tuple,
    embed: np.ndarray,
    embed_at: np.ndarray,
    book_w: np.ndarray,
    book_b: np.ndarray,
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
    """``OrderModel.step`` for cache rows ``rows``: hidden (n, C) out, caches and ``pos``
    updated in place (inactive rows write the scratch slot and keep their position)."""
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
        for i in range(half):
            angle = np.float64(p) * inv_freq[i]
            cos[r, i] = np.float32(math.cos(angle))
            sin[r, i] = np.float32(math.sin(angle))
        write[r] = p % bs if active[r] else bs
    scores = np.zeros(S, dtype=np.float32)
    for layer in range(norm1.shape[0]):
        _rms_norm(x, norm1[layer], eps, xn)
        _linear(xn, qkv_w[layer], n, qkv)
        kc = k_caches[layer]
        vc = v_caches[layer]
        for r in range(n):
            _attend(
                qkv[r], kc, vc, rows[r], pos[rows[r]], write[r],
                n_head, n_kv, cos[r], sin[r], scores, att[r],
            )  # fmt: skip
        _linear(att, attn_proj[layer], n, out)
        for r in range(n):
            for i in range(C):
                x[r, i] += out[r, i]
        _rms_norm(x, norm2[layer], eps, xn)
        _linear(xn, fc[layer], n, mid)
        _gelu(mid)
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
    # each output's sum runs over the inputs in order, vectorised across the outputs (the
    # weights are stored transposed): one running sum per output waited on every add
    m = np.zeros(C, dtype=np.float32)
    for i in range(C):
        a = z[i]
        for o in range(C):
            m[o] += a * head_fc[c, i, o]
    for o in range(C):
        v = np.float64(m[o] + head_fc_b[c, o])
        m[o] = np.float32(0.5 * v * (1.0 + math.erf(v * _SQRT_HALF)))
    base = out_at[c]
    for o in range(size):
        logits[o] = 0.0
    for i in range(C):
        a = m[i]
        for o in range(size):
            logits[o] += a * head_out[i, base + o]
    for o in range(size):
        logits[o] += head_out_b[base + o]


@njit(cache=True)
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

    def __init__(self, model: OrderModel) -> None:
        self.w = FastWeights.from_model(model)
        self.n_gap = int(self.w.sizes[3])
        self._views: tuple[KVCache, tuple, tuple, np.ndarray] | None = None
        self._zero: dict[tuple[str, int, int], np.ndarray] = {}

    def __getstate__(self) -> dict:
        """Without the cache views and the zeros: pickled (a shard checkpoint), a view would
        come back as a copy of the cache apart from its tensors. Both are made again."""
        return {**self.__dict__, "_views": None, "_zero": {}}

    def _zeros(self, n: int, what: str, width: int) -> np.ndarray:
        """float32 zeros (n, width), kept per shape (the kernels only read them): a step
        per order should not allocate the biases it was not given."""
        key = (what, n, width)
        z = self._zero.get(key)
        if z is None:
            z = self._zero[key] = np.zeros((n, width), dtype=np.float32)
        return z

    def _cache_views(self, cache: KVCache) -> tuple[tuple, tuple, np.ndarray]:
        """numpy views of a CPU cache's tensors (same memory), made once per cache."""
        if self._views is None or self._views[0] is not cache:
            if cache.pos.device.type != "cpu":
                raise ValueError(f"the fused step runs on CPU caches, not {cache.pos.device}")
            cache.check_layout(self.w.book_w.shape[1] // self.w.n_head)
            k = tuple(t.numpy() for t in cache.k)
            v = tuple(t.numpy() for t in cache.v)
            self._views = (cache, k, v, cache.pos.numpy())
        return self._views[1], self._views[2], self._views[3]

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
        k, v, pos = self._cache_views(cache)
        trunk(
            np.ascontiguousarray(rows, dtype=np.int64),
            np.ascontiguousarray(components, dtype=np.int64),
            np.ascontiguousarray(book, dtype=np.float32),
            np.ascontiguousarray(active, dtype=np.bool_),
            pos,
            k,
            v,
            w.embed, w.embed_at, w.book_w, w.book_b, w.norm1, w.qkv, w.attn_proj,
            w.norm2, w.fc, w.mlp_proj, w.norm_f, w.inv_freq, w.eps, w.n_head, w.n_kv,
            hidden,
        )  # fmt: skip
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
        sample(
            hidden,
            np.ascontiguousarray(uniforms, dtype=np.float64),
            temps.reshape(n),
            np.ascontiguousarray(kind_bias, dtype=np.float32),
            np.ascontiguousarray(gap_bias, dtype=np.float32),
            w.sizes, w.joint, w.head, w.joint_w, w.joint_b, out,
        )  # fmt: skip
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
