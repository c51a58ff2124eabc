"""The Large Market Model: a small decoder-only transformer over order tokens.

One readable file in the spirit of nanoGPT. Each position of a book's order stream is one
order (4 components: kind, price level, size bin, gap bin, see docs/lmm.md) plus the 24
features of the book after it; the output at position t predicts order t + 1.

    components (B, T, 4) --sum of 4 embeddings--+
    (market_memory: the last market order's side and age, one more embedding)
    book (B, T, 24) --------Linear--------------+--> n_layer x [RMSNorm -> causal attention
                                                      with RoPE -> +, RMSNorm -> GELU MLP -> +]
                                                 --> RMSNorm --> hidden (B, T, n_embd)
    hidden --> head: "factorised" (kind -> price -> size -> gap, each conditioned on the
                     earlier components) or "joint" (one softmax over all 24,576 ids)

Generation runs one order at a time through ``step`` with a ``KVCache``: a ring buffer of
the last ``block_size`` keys/values per row. Keys are rotated at their absolute positions
and attention scores under RoPE depend only on position differences, so a cached step
equals an uncached ``forward`` over the last ``block_size`` orders (to float rounding)
while a row holds at most block_size orders, and at any length for a one-layer model.
Beyond that, a deeper model's cached keys still carry what their own windows saw (the
receptive field grows to n_layer * block_size, as in any sliding-window KV cache); the
exact uncached reference is then ``forward`` over the whole stream, whose attention is
banded to the same block_size window in every layer.
Sampling is inverse-CDF with caller-given uniforms, so a numpy RNG drives it reproducibly.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mars_ray.lmm.tokenizer import MARKETABLE, Kind

HEADS = ("factorised", "joint")
INIT_STD = 0.02  # GPT-2's initial weight std
ROPE_BASE = 10_000.0
_BELOW_ONE = 1.0 - 2.0**-24  # the largest float32 below 1


@dataclass(frozen=True)
class LMMConfig:
    """Model shape; the defaults are the intended shipped model (about 0.9M parameters)."""

    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    # key/value heads (grouped-query attention): None = n_head. Fewer shrink the KV cache,
    # which generation reads in full for every new order.
    n_kv_head: int | None = None
    block_size: int = 256
    dropout: float = 0.0
    component_sizes: tuple[int, ...] = (4, 24, 16, 16)
    n_book: int = 24
    head: str = "factorised"
    # corpus sources with an input embedding of their own (0: none). Training tags every
    # window with its source; a model to generate with has one folded in (``fold_source``).
    n_sources: int = 0
    # an input embedding of the side of the stream's last market order and its age in
    # orders (``market_memory``): order flow's memory stated as an input (docs/lmm.md: with
    # the shipped training mix the model still did not learn it; off by default)
    market_memory: bool = False
    # initial std of the order-component (and memory) input embeddings. They are added to
    # the book projection, which starts several times larger at INIT_STD, so rare
    # conditionals on the orders (the side of the last market order) are learned late or
    # not at all (docs/lmm.md, order-flow memory)
    input_embedding_std: float = INIT_STD

    def __post_init__(self) -> None:
        # Checkpoints store configs as JSON, where tuples come back as lists.
        object.__setattr__(self, "component_sizes", tuple(self.component_sizes))
        for name in ("n_layer", "n_head", "n_embd", "block_size", "n_book"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"LMMConfig.{name}={value!r} must be a positive integer")
        if self.n_embd % self.n_head:
            raise ValueError(
                f"LMMConfig.n_embd={self.n_embd} must be divisible by n_head={self.n_head}"
            )
        kv = self.n_kv_head
        if kv is not None and (
            not isinstance(kv, int) or isinstance(kv, bool) or kv < 1 or self.n_head % kv
        ):
            raise ValueError(
                f"LMMConfig.n_kv_head={kv!r} must be a positive divisor of n_head={self.n_head}"
            )
        if (self.n_embd // self.n_head) % 2:
            raise ValueError(
                f"LMMConfig.n_embd={self.n_embd} / n_head={self.n_head} = "
                f"{self.n_embd // self.n_head} must be even (RoPE rotates pairs of channels)"
            )
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, int | float):
            raise ValueError(f"LMMConfig.dropout={self.dropout!r} must be a number in [0, 1)")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"LMMConfig.dropout={self.dropout!r} must be in [0, 1)")
        sizes = self.component_sizes
        if len(sizes) != 4 or any(
            not isinstance(s, int) or isinstance(s, bool) or s < 1 for s in sizes
        ):
            raise ValueError(
                f"LMMConfig.component_sizes={sizes!r} must be 4 positive integers "
                "(kind, price level, size bin, gap bin)"
            )
        ns = self.n_sources
        if not isinstance(ns, int) or isinstance(ns, bool) or ns < 0:
            raise ValueError(f"LMMConfig.n_sources={ns!r} must be a non-negative integer")
        if self.head not in HEADS:
            raise ValueError(f"LMMConfig.head={self.head!r} must be one of {HEADS}")
        if not isinstance(self.market_memory, bool):
            raise ValueError(f"LMMConfig.market_memory={self.market_memory!r} must be a bool")
        std = self.input_embedding_std
        if isinstance(std, bool) or not isinstance(std, int | float) or not 0 < std <= 10:
            raise ValueError(f"LMMConfig.input_embedding_std={std!r} must be a number in (0, 10]")

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def kv_heads(self) -> int:
        return self.n_head if self.n_kv_head is None else self.n_kv_head

    @property
    def vocab_size(self) -> int:
        """Number of joint order ids: 4 * 24 * 16 * 16 = 24,576 for the default sizes."""
        return math.prod(self.component_sizes)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (for checkpoints; no pickles)."""
        out = asdict(self)
        out["component_sizes"] = list(self.component_sizes)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LMMConfig:
        """Inverse of ``to_dict``; unknown keys are an error rather than silently dropped."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"LMMConfig: unknown key(s) {unknown}; expected a subset of {known}")
        return cls(**data)


def joint_ids(components: Tensor, sizes: tuple[int, ...]) -> Tensor:
    """(..., 4) component indices -> (...) joint ids, ((k*24 + p)*16 + s)*16 + g."""
    ids = components[..., 0]
    for c in range(1, len(sizes)):
        ids = ids * sizes[c] + components[..., c]
    return ids


# ----------------------------------------------------------------------------- memory

# A market order is a new order (kind BUY or SELL) at the MARKETABLE price level. Its
# memory state: 0 when the stream has none yet, else 1 + side * 5 + the bucket of its age
# in orders (0, 1, 2-4, 5-19, 20 and more; 0: the order itself), side 0 buy, 1 sell.
MEMORY_AGES = (1, 2, 5, 20)
N_MEMORY = 1 + 2 * (len(MEMORY_AGES) + 1)


def memory_state(last: Tensor, side: Tensor, position: Tensor) -> Tensor:
    """Memory states for the last market order at ``last`` (-1: none) on ``side``, seen
    from ``position``."""
    edges = torch.tensor(MEMORY_AGES, device=last.device)
    bucket = torch.bucketize(position - last, edges, right=True)
    return torch.where(last >= 0, 1 + side * (len(MEMORY_AGES) + 1) + bucket, 0)


def is_market(components: Tensor) -> Tensor:
    return (components[..., 0] <= Kind.SELL) & (components[..., 1] == MARKETABLE)


def market_memory(components: Tensor) -> Tensor:
    """Each position's memory state (B, T) over a stream of components (B, T, 4)."""
    T = components.shape[-2]
    t = torch.arange(T, device=components.device).expand(components.shape[:-1])
    last = torch.where(is_market(components), t, -1).cummax(dim=-1).values
    side = torch.gather(components[..., 0], -1, last.clamp(min=0))
    return memory_state(last, side, t)


# ----------------------------------------------------------------------------- RoPE


def rope_angles(positions: Tensor, head_dim: int, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """cos/sin of shape (*positions.shape, head_dim // 2) for integer absolute positions.

    Angles are formed in float64: a generated day can run to millions of orders, where
    position * frequency in float32 would lose the phase.
    """
    half = head_dim // 2
    inv_freq = ROPE_BASE ** (
        -torch.arange(half, device=positions.device, dtype=torch.float64) / half
    )
    angles = positions.to(torch.float64)[..., None] * inv_freq
    return angles.cos().to(dtype), angles.sin().to(dtype)


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate channel pairs (i, i + head_dim/2) of x (..., head_dim) by the given angles."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)


# ----------------------------------------------------------------------------- cache


@dataclass
class KVCache:
    """Per-row ring buffers of the last ``block_size`` keys and values of every layer.

    ``pos[b]`` counts the orders committed to row b; the next one goes to slot
    ``pos[b] % block_size``, overwriting the order that just left the window. One extra
    scratch slot (index block_size) takes the key/value of rows stepped while inactive,
    so that they attend to their new order without committing it.

    Keys are stored transposed, slots last: a query's scores over the window are then
    products along contiguous rows of slots, which a CPU vectorises across the slots with
    each score still summed over the head's channels in order (docs/performance.md).
    """

    k: list[Tensor]  # n_layer x (B, kv_heads, head_dim, block_size + 1), rotated keys
    v: list[Tensor]  # n_layer x (B, kv_heads, block_size + 1, head_dim)
    pos: Tensor  # (B,) int64
    # (B, 2) int64, for a model with market_memory: the position of each row's last market
    # order (-1: none yet) and its kind (0 buy, 1 sell)
    market: Tensor | None = None

    @property
    def batch(self) -> int:
        return self.pos.shape[0]

    @property
    def block_size(self) -> int:
        return self.v[0].shape[2] - 1

    def check_layout(self, head_dim: int) -> None:
        """Refuse keys not stored slots-last (a cache pickled by an older mars-ray, in a
        checkpoint, kept its keys (B, kv_heads, slots, head_dim)): read the other way they
        would give wrong scores, not an error."""
        keys = tuple(self.k[0].shape[2:])
        if keys != (head_dim, self.block_size + 1):
            raise ValueError(
                f"KV cache keys have shape {tuple(self.k[0].shape)}; this version stores them "
                f"(B, kv_heads, head_dim={head_dim}, block_size + 1={self.block_size + 1}): "
                "a cache saved by an older mars-ray cannot be stepped, start the run afresh"
            )

    def reset(self, rows: Tensor | None = None) -> None:
        """Start rows afresh (all rows by default): stale slots are masked out by ``pos``.
        ``rows``: a boolean mask or row indices."""
        if rows is None:
            picked: Tensor | slice = slice(None)
        else:
            rows = rows.to(self.pos.device)
            picked = rows if rows.dtype == torch.bool else rows.long()
        self.pos[picked] = 0
        if self.market is not None:
            self.market[picked, 0] = -1


@dataclass
class _StepCtx:
    """Where one step writes and what it may see, shared by all layers."""

    flat: Tensor  # (B * kv_heads,) row of the new value in a cache viewed as (-1, head_dim)
    slot: Tensor  # (B * kv_heads, head_dim, 1) the slot of the new key, per channel
    bias: Tensor  # (B * kv_heads, 1, block_size + 1) 0 for slots in the window, -inf outside


# ----------------------------------------------------------------------------- trunk


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: LMMConfig) -> None:
        super().__init__()
        self.n_head, self.n_kv, self.head_dim = cfg.n_head, cfg.kv_heads, cfg.head_dim
        # columns: queries (n_head heads), then keys and values (kv_heads each); with
        # kv_heads = n_head this is the plain 3 * n_embd projection
        self.split = (cfg.n_embd, self.n_kv * cfg.head_dim, self.n_kv * cfg.head_dim)
        self.qkv = nn.Linear(cfg.n_embd, sum(self.split), bias=False)
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=False)
        self.dropout = cfg.dropout
        self.block_size = cfg.block_size

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        """Causal attention over x (B, T, C); cos/sin (T, head_dim/2) at positions 0..T-1.

        Each position sees itself and the block_size - 1 before it (a plain causal mask
        when T <= block_size), the same window as the cached ``step``.
        """
        B, T, C = x.shape
        H, G, D = self.n_head, self.n_kv, self.head_dim
        q, k, v = self.qkv(x).split(self.split, dim=-1)
        q = apply_rope(q.view(B, T, H, D).transpose(1, 2), cos, sin)
        k = apply_rope(k.view(B, T, G, D).transpose(1, 2), cos, sin)
        v = v.view(B, T, G, D).transpose(1, 2)
        p = self.dropout if self.training else 0.0
        gqa = G != H  # each key/value head serves H / G consecutive query heads
        if T <= self.block_size:
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True, enable_gqa=gqa)
        else:
            i = torch.arange(T, device=x.device)
            lag = i.unsqueeze(1) - i.unsqueeze(0)
            band = (lag >= 0) & (lag < self.block_size)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=band, dropout_p=p, enable_gqa=gqa)
        return self.proj(y.transpose(1, 2).reshape(B, T, C))

    def step(
        self, x: Tensor, cos: Tensor, sin: Tensor, k_cache: Tensor, v_cache: Tensor, ctx: _StepCtx
    ) -> Tensor:
        """One new position per row: x (B, C); the new key/value go into the ring in place.

        Decoding is one query against the window, a memory-bound matrix-vector product,
        written here as two batched matmuls, which on CPUs ran a whole step a little faster
        than SDPA (docs/performance.md), with the same maths (tests hold it equal to
        ``forward``, which uses SDPA).
        """
        B, C = x.shape
        H, G, D = self.n_head, self.n_kv, self.head_dim
        S = v_cache.shape[2]
        q, k, v = self.qkv(x).split(self.split, dim=-1)
        q = apply_rope(q.view(B, H, D), cos, sin)
        k = apply_rope(k.view(B, G, D), cos, sin)
        # Write the new key/value into their slots: a column of the transposed keys and a
        # row of D values per (row, kv head).
        keys = k_cache.view(B * G, D, S)
        keys.scatter_(2, ctx.slot, k.reshape(B * G, D, 1).to(k_cache))
        v_cache.view(B * G * S, D).index_copy_(0, ctx.flat, v.reshape(B * G, D).to(v_cache))
        q = q.reshape(B * G, H // G, D)  # the query heads that share each kv head
        # bias (0 or -inf) hides slots outside the window; baddbmm fuses it with the scores.
        scores = torch.baddbmm(ctx.bias, q, keys, alpha=D**-0.5)
        y = torch.bmm(torch.softmax(scores, dim=-1), v_cache.view(B * G, S, D))
        return self.proj(y.view(B, C))


class MLP(nn.Module):
    def __init__(self, cfg: LMMConfig) -> None:
        super().__init__()
        self.fc = nn.Linear(cfg.n_embd, 4 * cfg.n_embd, bias=False)
        self.proj = nn.Linear(4 * cfg.n_embd, cfg.n_embd, bias=False)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.proj(F.gelu(self.fc(x))))


class Block(nn.Module):
    """Pre-norm residual block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, cfg: LMMConfig) -> None:
        super().__init__()
        self.norm1 = nn.RMSNorm(cfg.n_embd)
        self.attn = CausalSelfAttention(cfg)
        self.norm2 = nn.RMSNorm(cfg.n_embd)
        self.mlp = MLP(cfg)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        x = x + self.drop(self.attn(self.norm1(x), cos, sin))
        return x + self.mlp(self.norm2(x))

    def step(
        self, x: Tensor, cos: Tensor, sin: Tensor, k: Tensor, v: Tensor, ctx: _StepCtx
    ) -> Tensor:
        x = x + self.attn.step(self.norm1(x), cos, sin, k, v, ctx)
        return x + self.mlp(self.norm2(x))


# ----------------------------------------------------------------------------- heads


class ComponentHead(nn.Module):
    """Logits of one component given the hidden state and the earlier components.

    The earlier components enter as embeddings added to the hidden state, followed by a
    GELU MLP, so that e.g. the price distribution can depend on the side and the book
    jointly (a linear head would only shift the logits per kind).
    """

    def __init__(self, n_embd: int, n_out: int, earlier_sizes: tuple[int, ...]) -> None:
        super().__init__()
        self.cond = nn.ModuleList(nn.Embedding(n, n_embd) for n in earlier_sizes)
        self.fc = nn.Linear(n_embd, n_embd)
        self.out = nn.Linear(n_embd, n_out)

    def forward(self, h: Tensor, earlier: Tensor | None = None) -> Tensor:
        """h (..., C), earlier (..., c) long with c = number of earlier components."""
        for j, emb in enumerate(self.cond):
            h = h + emb(earlier[..., j])
        return self.out(F.gelu(self.fc(h)))


# ----------------------------------------------------------------------------- model


class OrderModel(nn.Module):
    """Decoder-only transformer over a book's order stream (see the module docstring)."""

    def __init__(self, cfg: LMMConfig) -> None:
        super().__init__()
        self.config = cfg
        d, sizes = cfg.n_embd, cfg.component_sizes
        self.embed = nn.ModuleList(nn.Embedding(n, d) for n in sizes)
        self.book_proj = nn.Linear(cfg.n_book, d)
        self.source_embed = nn.Embedding(cfg.n_sources, d) if cfg.n_sources else None
        self.memory_embed = nn.Embedding(N_MEMORY, d) if cfg.market_memory else None
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.norm_f = nn.RMSNorm(d)
        if cfg.head == "factorised":
            self.heads = nn.ModuleList(
                ComponentHead(d, sizes[c], sizes[:c]) for c in range(len(sizes))
            )
        else:
            self.joint_head = nn.Linear(d, cfg.vocab_size)
        self.apply(self._init_weights)
        # GPT-2 style: shrink the residual-branch outputs so the stream's variance stays ~1.
        for name, p in self.named_parameters():
            if name.endswith("attn.proj.weight") or name.endswith("mlp.proj.weight"):
                nn.init.normal_(p, mean=0.0, std=INIT_STD / math.sqrt(2 * cfg.n_layer))
        if cfg.input_embedding_std != INIT_STD:  # else as drawn: older runs reproduce
            memory = [self.memory_embed] if self.memory_embed is not None else []
            for emb in [*self.embed, *memory]:
                nn.init.normal_(emb.weight, mean=0.0, std=cfg.input_embedding_std)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=INIT_STD)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=INIT_STD)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    @property
    def device(self) -> torch.device:
        return self.book_proj.weight.device

    def _check_components(self, components: Tensor, what: str) -> None:
        if components.shape[-1] != len(self.config.component_sizes):
            raise ValueError(
                f"{what} must have 4 components in its last dim, got {tuple(components.shape)}"
            )

    def _input(
        self,
        components: Tensor,
        book: Tensor,
        source: Tensor | None = None,
        memory: Tensor | None = None,
    ) -> Tensor:
        x = self.book_proj(book.to(self.book_proj.weight.dtype))
        for c, emb in enumerate(self.embed):
            x = x + emb(components[..., c])
        if self.memory_embed is not None:
            x = x + self.memory_embed(market_memory(components) if memory is None else memory)
        if self.source_embed is not None:
            if source is None or source.shape != components.shape[:1]:
                raise ValueError(
                    f"this model has n_sources={self.config.n_sources}: pass one source id "
                    "per row, or generate with a model that has one folded in (fold_source)"
                )
            x = x + self.source_embed(source)[:, None, :]
        return x

    def fold_source(self, source: int) -> OrderModel:
        """A copy with no source embedding, which computes what this model computes for
        rows of ``source``: its embedding is a constant input, so it becomes part of the
        book projection's bias, and generation, caching and the fast path are unchanged."""
        if self.source_embed is None:
            raise ValueError("fold_source: this model has no source embedding (n_sources=0)")
        if not 0 <= source < self.config.n_sources:
            raise ValueError(
                f"fold_source: source={source} must be in 0..{self.config.n_sources - 1}"
            )
        folded = OrderModel(dataclasses.replace(self.config, n_sources=0)).to(self.device)
        state = {k: v for k, v in self.state_dict().items() if not k.startswith("source_embed.")}
        state["book_proj.bias"] = state["book_proj.bias"] + self.source_embed.weight[source]
        folded.load_state_dict(state)
        return folded.train(self.training)

    # -------------------------------------------------------------- training / scoring

    def hidden(self, components: Tensor, book: Tensor, source: Tensor | None = None) -> Tensor:
        """Final hidden states (B, T, n_embd) of an uncached pass; positions 0..T-1.

        T may exceed block_size: every layer then attends over a sliding window of
        block_size positions, which is exactly what ``step`` computes with its cache.
        ``source`` (B,): each row's corpus source, for a model with n_sources > 0.
        """
        self._check_components(components, "components")
        B, T, _ = components.shape
        if book.shape != (B, T, self.config.n_book):
            raise ValueError(
                f"book must have shape {(B, T, self.config.n_book)}, got {tuple(book.shape)}"
            )
        x = self.drop(self._input(components, book, source))
        positions = torch.arange(T, device=x.device)
        cos, sin = rope_angles(positions, self.config.head_dim, x.dtype)
        for block in self.blocks:
            x = block(x, cos, sin)
        return self.norm_f(x)

    def forward(
        self,
        components: Tensor,
        book: Tensor,
        targets: Tensor | None = None,
        source: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """(logits, loss); loss = mean joint NLL per order in nats.

        Logits: joint head (B, T, vocab_size). Factorised head: with targets, the teacher-forced
        logits of the 4 components concatenated along the last dim (B, T, 4+24+16+16);
        without targets, the kind logits (B, T, 4) only (the rest need a sampled kind).
        """
        h = self.hidden(components, book, source)
        sizes = self.config.component_sizes
        if self.config.head == "joint":
            logits = self.joint_head(h)
            if targets is None:
                return logits, None
            self._check_components(targets, "targets")
            ids = joint_ids(targets, sizes)
            return logits, F.cross_entropy(logits.flatten(0, -2).float(), ids.flatten())
        if targets is None:
            return self.heads[0](h), None
        self._check_components(targets, "targets")
        per_comp = [head(h, targets[..., :c]) for c, head in enumerate(self.heads)]
        loss = sum(
            F.cross_entropy(lg.flatten(0, -2).float(), targets[..., c].flatten())
            for c, lg in enumerate(per_comp)
        )
        return torch.cat(per_comp, dim=-1), loss

    def log_probs(self, hidden: Tensor) -> Tensor:
        """Joint log-probabilities (B, vocab_size) of the next order, in joint-id order."""
        if self.config.head == "joint":
            return F.log_softmax(self.joint_head(hidden).float(), dim=-1)
        B, C = hidden.shape
        sizes = self.config.component_sizes
        # prefix (B, P, c) enumerates every combination of the earlier components in id order.
        prefix = torch.zeros(B, 1, 0, dtype=torch.long, device=hidden.device)
        total = torch.zeros(B, 1, device=hidden.device)
        for c, head in enumerate(self.heads):
            P = prefix.shape[1]
            h = hidden.unsqueeze(1).expand(B, P, C)
            lp = F.log_softmax(head(h, prefix).float(), dim=-1)  # (B, P, n_c)
            total = (total.unsqueeze(-1) + lp).reshape(B, P * sizes[c])
            choice = torch.arange(sizes[c], device=hidden.device)
            prefix = torch.cat(
                (
                    prefix.unsqueeze(2).expand(B, P, sizes[c], c),
                    choice.view(1, 1, -1, 1).expand(B, P, sizes[c], 1),
                ),
                dim=-1,
            ).reshape(B, P * sizes[c], c + 1)
        return total

    # -------------------------------------------------------------- generation

    def new_cache(self, batch: int, device: torch.device | str | None = None) -> KVCache:
        """Empty ring buffers for ``batch`` rows on ``device`` (default: the model's)."""
        p = self.book_proj.weight
        device = p.device if device is None else torch.device(device)
        cfg = self.config
        keys = (batch, cfg.kv_heads, cfg.head_dim, cfg.block_size + 1)
        values = (batch, cfg.kv_heads, cfg.block_size + 1, cfg.head_dim)
        market = None
        if cfg.market_memory:
            market = torch.zeros(batch, 2, dtype=torch.long, device=device)
            market[:, 0] = -1
        return KVCache(
            k=[torch.zeros(keys, dtype=p.dtype, device=device) for _ in self.blocks],
            v=[torch.zeros(values, dtype=p.dtype, device=device) for _ in self.blocks],
            pos=torch.zeros(batch, dtype=torch.long, device=device),
            market=market,
        )

    @torch.no_grad()
    def step(
        self,
        components: Tensor,
        book: Tensor,
        cache: KVCache,
        active: Tensor | None = None,
    ) -> Tensor:
        """Append one order per active row and return the hidden states (B, n_embd).

        components (B, 4): the latest order of each row; book (B, 24): the book after it.
        Each row is at its own position ``cache.pos``. Inactive rows (``active`` False) get
        the hidden state they would have, but their cache and position stay unchanged.
        """
        B, bs = cache.batch, self.config.block_size
        if cache.block_size != bs:
            raise ValueError(f"cache has block_size={cache.block_size}, the model {bs}")
        cache.check_layout(self.config.head_dim)
        if components.shape != (B, 4) or book.shape != (B, self.config.n_book):
            raise ValueError(
                f"step expects components (B, 4) and book (B, {self.config.n_book}) with "
                f"B={B} (the cache's batch), got {tuple(components.shape)} and {tuple(book.shape)}"
            )
        components = components.to(self.device)
        pos = cache.pos
        if active is not None:
            active = active.to(device=pos.device, dtype=torch.bool)
        memory = None
        if self.memory_embed is not None:
            if cache.market is None:
                raise ValueError("this model has market_memory: step it on a cache it made")
            new = is_market(components).to(pos.device)
            last = torch.where(new, pos, cache.market[:, 0])
            side = torch.where(new, components[:, 0].to(pos.device), cache.market[:, 1])
            memory = memory_state(last, side, pos).to(self.device)
            keep = new if active is None else new & active
            cache.market[keep] = torch.stack((last, side), dim=1)[keep]
        x = self._input(components, book.to(self.device), memory=memory)
        slot = pos % bs
        write = slot if active is None else torch.where(active, slot, bs)
        # Visible: the block_size - 1 previous orders (slots below pos, minus the one about to
        # leave the window) and the new order wherever it was written.
        j = torch.arange(bs + 1, device=x.device)
        previous = (j < pos.clamp(max=bs).unsqueeze(1)) & (j != slot.unsqueeze(1))
        visible = previous | (j == write.unsqueeze(1))
        G, S, D = self.config.kv_heads, bs + 1, self.config.head_dim
        heads = torch.arange(B * G, device=x.device).view(B, G)
        flat = (heads * S + write.unsqueeze(1)).view(-1)
        slot_of_key = write.repeat_interleave(G).view(B * G, 1, 1).expand(B * G, D, 1)
        bias = torch.zeros(B, G, 1, S, dtype=x.dtype, device=x.device)
        bias.masked_fill_(~visible.view(B, 1, 1, S), float("-inf"))
        ctx = _StepCtx(flat, slot_of_key, bias.view(B * G, 1, S))
        cos, sin = rope_angles(pos, self.config.head_dim, x.dtype)  # (B, head_dim/2)
        cos, sin = cos.view(B, 1, -1), sin.view(B, 1, -1)  # over the heads
        for i, block in enumerate(self.blocks):
            x = block.step(x, cos, sin, cache.k[i], cache.v[i], ctx)
        pos += 1 if active is None else active.long()
        return self.norm_f(x)

    @torch.no_grad()
    def sample(
        self,
        hidden: Tensor,
        uniforms: Tensor,
        temperature: float | Tensor = 1.0,
        kind_bias: Tensor | None = None,
        gap_bias: Tensor | None = None,
    ) -> Tensor:
        """Draw the next order's components (B, 4) by inverse CDF of the given uniforms.

        ``temperature`` is one value or one per row (B,), for batches that mix callers.

        The factorised head uses uniforms[:, c] for component c in turn; the joint head uses
        uniforms[:, 0] for its single draw. ``kind_bias`` (B, 4) is added to the kind logits
        after the temperature (for the joint head: to every id of that kind), so it tilts the
        kind marginal without changing the rest given the kind. ``gap_bias`` (B, n_gap) does
        the same for the inter-arrival bins: the order rate (volume control).
        """
        B = hidden.shape[0]
        if isinstance(temperature, Tensor):
            if temperature.shape != (B,) or not bool((temperature > 0).all()):
                raise ValueError(f"temperature must be (B,)={(B,)} values > 0, got {temperature}")
            temperature = temperature.to(hidden.device, torch.float32).unsqueeze(1)
        elif temperature <= 0:
            raise ValueError(f"temperature={temperature} must be > 0")
        sizes = self.config.component_sizes
        uniforms = torch.as_tensor(uniforms, device=hidden.device, dtype=torch.float32)
        if uniforms.shape != (B, 4):
            raise ValueError(f"uniforms must have shape {(B, 4)}, got {tuple(uniforms.shape)}")
        # float64 uniforms just below 1 round to 1.0 in float32: keep them inside [0, 1).
        uniforms = uniforms.clamp(0.0, _BELOW_ONE)
        if kind_bias is not None:
            kind_bias = torch.as_tensor(kind_bias, device=hidden.device, dtype=torch.float32)
            if kind_bias.shape != (B, sizes[0]):
                raise ValueError(
                    f"kind_bias must have shape {(B, sizes[0])}, got {tuple(kind_bias.shape)}"
                )
        if gap_bias is not None:
            gap_bias = torch.as_tensor(gap_bias, device=hidden.device, dtype=torch.float32)
            if gap_bias.shape != (B, sizes[3]):
                raise ValueError(
                    f"gap_bias must have shape {(B, sizes[3])}, got {tuple(gap_bias.shape)}"
                )
        if self.config.head == "joint":
            logits = self.joint_head(hidden).float()
            if isinstance(temperature, Tensor) or temperature != 1.0:
                logits = logits / temperature
            if kind_bias is not None:
                logits = (logits.view(B, sizes[0], -1) + kind_bias.unsqueeze(-1)).view(B, -1)
            if gap_bias is not None:  # the gap is the fastest-varying part of a joint id
                logits = (logits.view(B, -1, sizes[3]) + gap_bias.unsqueeze(1)).view(B, -1)
            ids = _inverse_cdf(logits, uniforms[:, 0])
            out = torch.empty(B, 4, dtype=torch.long, device=hidden.device)
            for c in range(3, -1, -1):
                out[:, c] = ids % sizes[c]
                ids = ids // sizes[c]
            return out
        out = torch.empty(B, 4, dtype=torch.long, device=hidden.device)
        for c, head in enumerate(self.heads):
            logits = head(hidden, out[:, :c]).float()
            if isinstance(temperature, Tensor) or temperature != 1.0:
                logits = logits / temperature
            if c == 0 and kind_bias is not None:
                logits = logits + kind_bias
            if c == 3 and gap_bias is not None:
                logits = logits + gap_bias
            out[:, c] = _inverse_cdf(logits, uniforms[:, c])
        return out


def _inverse_cdf(logits: Tensor, u: Tensor) -> Tensor:
    """Smallest class i with u * total < cdf[i], for u in [0, 1) (float32, below 1).

    Under round-to-nearest u * total < total for every float32 u < 1, so a class is
    chosen only where the cdf rises: classes of zero probability are never drawn.
    """
    cdf = torch.softmax(logits, dim=-1).cumsum(dim=-1)
    idx = torch.searchsorted(cdf, (u * cdf[:, -1]).unsqueeze(1), right=True).squeeze(1)
    return idx.clamp_(max=logits.shape[-1] - 1)
