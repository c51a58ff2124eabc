"""The order model: cache equivalence, per-row positions, losses, sampling and learning.

Tiny configs on CPU; every test runs in well under a few seconds.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mars_ray.lmm.model import (
    N_MEMORY,
    LMMConfig,
    OrderModel,
    apply_rope,
    joint_ids,
    market_memory,
    rope_angles,
)

HEADS = ("factorised", "joint")
ATOL = 1e-5


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors gain nothing from threads, and on a busy machine they lose a lot."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny(head: str = "factorised", **kw) -> OrderModel:
    torch.manual_seed(0)
    cfg = dict(n_layer=2, n_head=2, n_embd=16, block_size=8, head=head)
    cfg.update(kw)
    model = OrderModel(LMMConfig(**cfg)).eval()
    # Sharper attention than the init's near-uniform one, so that a wrong window or
    # position shows up as a large difference instead of hiding below the tolerance.
    with torch.no_grad():
        for block in model.blocks:
            block.attn.qkv.weight.mul_(10.0)
    return model


def random_stream(model: OrderModel, batch: int, length: int, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    sizes = model.config.component_sizes
    comp = torch.stack([torch.randint(0, n, (batch, length), generator=g) for n in sizes], -1)
    book = torch.randn(batch, length, model.config.n_book, generator=g)
    return comp, book


# ----------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"n_embd": 130, "n_head": 4}, "n_embd=130"),
        ({"n_embd": 12, "n_head": 4}, "n_embd=12"),  # head_dim 3: RoPE needs pairs
        ({"n_head": 0}, "n_head=0"),
        ({"n_layer": -1}, "n_layer=-1"),
        ({"n_layer": True}, "n_layer=True"),
        ({"block_size": 0}, "block_size=0"),
        ({"n_book": 0}, "n_book=0"),
        ({"dropout": 1.0}, "dropout=1.0"),
        ({"dropout": -0.1}, "dropout=-0.1"),
        ({"head": "mixed"}, "head='mixed'"),
        ({"n_sources": -1}, "n_sources=-1"),
        ({"component_sizes": (4, 24, 16)}, "component_sizes=(4, 24, 16)"),
        ({"component_sizes": (4, 0, 16, 16)}, "component_sizes=(4, 0, 16, 16)"),
        ({"input_embedding_std": 0}, "input_embedding_std=0"),
        ({"input_embedding_std": True}, "input_embedding_std=True"),
    ],
)
def test_bad_config_names_field_and_value(kwargs: dict, field: str) -> None:
    with pytest.raises(
        ValueError, match=f"LMMConfig.{field}".replace("(", r"\(").replace(")", r"\)")
    ):
        LMMConfig(**kwargs)


@pytest.mark.parametrize("memory", [False, True])
def test_input_embedding_std_sets_only_the_input_embeddings(memory: bool) -> None:
    base = tiny(market_memory=memory)
    loud = tiny(market_memory=memory, input_embedding_std=1.0)
    inputs = {"embed.", "memory_embed."}
    for (name, a), (_, b) in zip(base.state_dict().items(), loud.state_dict().items(), strict=True):
        if any(name.startswith(prefix) for prefix in inputs):
            assert a.std().item() == pytest.approx(0.02, rel=0.3)
            assert b.std().item() == pytest.approx(1.0, rel=0.3)
        else:  # everything else drawn as before, the same seed giving the same weights
            assert torch.equal(a, b), name


def test_config_round_trips_through_a_plain_dict() -> None:
    cfg = LMMConfig(n_layer=2, n_head=2, n_embd=16, block_size=8, head="joint")
    raw = cfg.to_dict()
    assert raw["component_sizes"] == [4, 24, 16, 16]
    assert LMMConfig.from_dict(raw) == cfg
    assert LMMConfig().vocab_size == 4 * 24 * 16 * 16
    with pytest.raises(ValueError, match="unknown key"):
        LMMConfig.from_dict({**raw, "n_embed": 16})


def test_a_folded_source_computes_what_the_tagged_rows_did() -> None:
    """fold_source turns a source embedding into the book projection's bias: the folded
    model (no source input, so it caches and steps like any other) equals the tagged one on
    that source's rows, and differs from the other source's."""
    model = tiny(n_sources=2)
    with torch.no_grad():
        model.source_embed.weight.normal_(0, 1.0)
    comp, book = random_stream(model, 3, 12)
    lobster, synthetic = torch.zeros(3, dtype=torch.long), torch.ones(3, dtype=torch.long)
    folded = model.fold_source(0)
    assert folded.config.n_sources == 0 and folded.source_embed is None
    assert folded.num_params() == model.num_params() - 2 * model.config.n_embd
    want = model.hidden(comp, book, lobster)
    torch.testing.assert_close(folded.hidden(comp, book), want, atol=1e-6, rtol=0)
    assert not torch.allclose(folded.hidden(comp, book), model.hidden(comp, book, synthetic))
    cache = folded.new_cache(3)
    for t in range(comp.shape[1]):
        h = folded.step(comp[:, t], book[:, t], cache)
    torch.testing.assert_close(h, want[:, -1], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="n_sources=2: pass one source id per row"):
        model.hidden(comp, book)
    with pytest.raises(ValueError, match="fold_source"):
        model.step(comp[:, 0], book[:, 0], model.new_cache(3))
    with pytest.raises(ValueError, match=r"source=2 must be in 0\.\.1"):
        model.fold_source(2)
    with pytest.raises(ValueError, match="no source embedding"):
        folded.fold_source(0)


# ----------------------------------------------------------------------------- cache


@pytest.mark.parametrize("head", HEADS)
def test_cached_equals_uncached_shorter_than_block(head: str) -> None:
    model = tiny(head)
    comp, book = random_stream(model, 3, model.config.block_size)
    cache = model.new_cache(3)
    for t in range(comp.shape[1]):
        h = model.step(comp[:, t], book[:, t], cache)
        ref = model.hidden(comp[:, : t + 1], book[:, : t + 1])[:, -1]
        torch.testing.assert_close(h, ref, atol=ATOL, rtol=0)
        torch.testing.assert_close(model.log_probs(h), model.log_probs(ref), atol=ATOL, rtol=0)
    assert cache.pos.tolist() == [comp.shape[1]] * 3


@pytest.mark.parametrize("kv_heads", [1, 2])
def test_grouped_query_attention_cached_equals_banded_forward(kv_heads: int) -> None:
    """Fewer key/value heads than query heads: the cache still equals the forward pass,
    within and past block_size, and holds only the kv heads."""
    model = tiny("factorised", n_layer=2, n_head=4, n_embd=32, n_kv_head=kv_heads)
    bs = model.config.block_size
    comp, book = random_stream(model, 3, 3 * bs + 2)
    full = model.hidden(comp, book)
    cache = model.new_cache(3)
    assert cache.k[0].shape == (3, kv_heads, 8, bs + 1)
    assert cache.v[0].shape == (3, kv_heads, bs + 1, 8)
    for t in range(comp.shape[1]):
        h = model.step(comp[:, t], book[:, t], cache)
        torch.testing.assert_close(h, full[:, t], atol=ATOL, rtol=0)
    mha = tiny("factorised", n_layer=2, n_head=4, n_embd=32)
    assert model.num_params() < mha.num_params()


def test_market_memory_states_of_a_hand_made_stream() -> None:
    """None yet, then side x age bucket of the last market order (kind 0/1 at level 0)."""
    cancel, limit_sell, market_buy, market_sell = (
        [2, 5, 0, 0],
        [1, 3, 0, 0],
        [0, 0, 0, 0],
        [1, 0, 0, 0],
    )
    stream = [cancel, market_buy, limit_sell, market_sell] + [limit_sell] * 21
    got = market_memory(torch.tensor([stream]))[0].tolist()
    # buy: 1 + age bucket (0, 1, 2-4, 5-19, 20+); sell: 6 + the same buckets
    assert got[:5] == [0, 1, 2, 6, 7]
    assert got[5:8] == [8, 8, 8] and got[8] == 9 and got[22] == 9 and got[23:] == [10, 10]


def test_market_memory_cached_equals_the_forward_past_the_window() -> None:
    """The memory is the whole stream's in both (a market order older than the window is
    still remembered), inactive rows keep theirs, and a reset row forgets it."""
    model = tiny("factorised", market_memory=True)
    bs = model.config.block_size
    comp, book = random_stream(model, 3, 3 * bs + 2)
    comp[:, :, 1] = torch.where(torch.rand(comp.shape[:2]) < 0.3, 0, comp[:, :, 1])
    comp[:, bs, :2] = torch.tensor([1, 0])  # a sell market order, then none for 2 windows
    comp[:, bs + 1 :, 0] = 2
    full = model.hidden(comp, book)
    cache, idle = model.new_cache(3), model.new_cache(3)
    active = torch.tensor([True, False, True])
    for t in range(comp.shape[1]):
        h = model.step(comp[:, t], book[:, t], cache)
        torch.testing.assert_close(h, full[:, t], atol=ATOL, rtol=0)
        model.step(comp[:, t], book[:, t], idle, active)
    assert cache.market.tolist() == [[bs, 1]] * 3  # the sell, two windows back
    assert idle.market[1].tolist() == [-1, 0] and idle.market[0].tolist() == [bs, 1]
    cache.reset(torch.tensor([True, False, False]))
    assert cache.market[:, 0].tolist() == [-1, bs, bs]
    without = tiny("factorised")
    assert model.num_params() == without.num_params() + N_MEMORY * model.config.n_embd


def test_kv_heads_must_divide_the_heads() -> None:
    with pytest.raises(ValueError, match="n_kv_head=3 must be a positive divisor of n_head=4"):
        LMMConfig(n_head=4, n_kv_head=3)


@pytest.mark.parametrize("head", HEADS)
def test_one_layer_sliding_window_equals_uncached_last_block(head: str) -> None:
    """With one layer, the window is the whole receptive field: equal to re-encoding."""
    model = tiny(head, n_layer=1)
    bs = model.config.block_size
    comp, book = random_stream(model, 2, 3 * bs + 3)
    cache = model.new_cache(2)
    for t in range(comp.shape[1]):
        h = model.step(comp[:, t], book[:, t], cache)
        lo = max(0, t - bs + 1)
        ref = model.hidden(comp[:, lo : t + 1], book[:, lo : t + 1])[:, -1]
        torch.testing.assert_close(h, ref, atol=ATOL, rtol=0)
        torch.testing.assert_close(model.log_probs(h), model.log_probs(ref), atol=ATOL, rtol=0)


@pytest.mark.parametrize("head", HEADS)
def test_sliding_window_equals_banded_forward(head: str) -> None:
    """Deeper models: the cache equals forward over the whole stream with windowed layers."""
    model = tiny(head, n_layer=3)
    bs = model.config.block_size
    comp, book = random_stream(model, 2, 4 * bs + 1)
    full = model.hidden(comp, book)
    cache = model.new_cache(2)
    for t in range(comp.shape[1]):
        h = model.step(comp[:, t], book[:, t], cache)
        torch.testing.assert_close(h, full[:, t], atol=ATOL, rtol=0)
    # The banded forward itself: a window of exactly block_size gives plain causal attention.
    torch.testing.assert_close(model.hidden(comp[:, :bs], book[:, :bs]), full[:, :bs])
    # And a layer really is limited to its window: the first order cannot reach position bs
    # through one layer, but can through the later layers (receptive field n_layer * bs).
    one = tiny(head, n_layer=1)
    a = one.hidden(comp[:1], book[:1])
    changed = comp[:1].clone()
    changed[0, 0] = (changed[0, 0] + 1) % torch.tensor(one.config.component_sizes)
    b = one.hidden(changed, book[:1])
    torch.testing.assert_close(a[:, bs:], b[:, bs:], atol=ATOL, rtol=0)
    assert (a[:, : bs - 1] - b[:, : bs - 1]).abs().max() > 1e-3


@pytest.mark.parametrize("head", HEADS)
def test_rows_at_their_own_positions_with_active_mask(head: str) -> None:
    """Rows advanced at different times equal their own single-row runs."""
    model = tiny(head)
    B, L = 4, 3 * model.config.block_size
    comp, book = random_stream(model, B, L)
    rng = np.random.default_rng(0)
    cache = model.new_cache(B)
    singles = [model.new_cache(1) for _ in range(B)]
    committed = [0] * B
    while min(committed) < L:
        active = torch.from_numpy(rng.random(B) < 0.5) & torch.tensor([c < L for c in committed])
        idx = torch.tensor([min(c, L - 1) for c in committed])
        rows = torch.arange(B)
        h = model.step(comp[rows, idx], book[rows, idx], cache, active=active)
        for b in range(B):
            i = idx[b].item()
            if committed[b] == L:
                continue  # finished rows only ride along
            if active[b]:
                ref = model.step(comp[b : b + 1, i], book[b : b + 1, i], singles[b])[0]
                committed[b] += 1
            else:
                # Not committed, but computed as if appended: the uncached reference.
                ref = model.hidden(comp[b : b + 1, : i + 1], book[b : b + 1, : i + 1])[0, -1]
            torch.testing.assert_close(h[b], ref, atol=ATOL, rtol=0)
        assert cache.pos.tolist() == committed
    assert committed == [L] * B


def test_reset_restarts_a_row() -> None:
    model = tiny()
    comp, book = random_stream(model, 2, 12)
    cache = model.new_cache(2)
    for t in range(11):
        model.step(comp[:, t], book[:, t], cache)
    cache.reset(torch.tensor([True, False]))
    assert cache.pos.tolist() == [0, 11]
    h = model.step(comp[:, 0], book[:, 0], cache)
    fresh = model.step(comp[:1, 0], book[:1, 0], model.new_cache(1))
    torch.testing.assert_close(h[0], fresh[0], atol=ATOL, rtol=0)


def test_step_rejects_wrong_shapes() -> None:
    model = tiny()
    comp, book = random_stream(model, 2, 1)
    with pytest.raises(ValueError, match="cache's batch"):
        model.step(comp[:, 0], book[:, 0], model.new_cache(3))
    with pytest.raises(ValueError, match="book"):
        model.hidden(comp, book[..., :5])


def test_rope_keeps_relative_phase_at_large_absolute_positions() -> None:
    """A day can run to millions of orders: scores must depend on the lag only."""
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(2, 32, generator=g).unbind(0)

    def score(p: int) -> float:
        cq, sq = rope_angles(torch.tensor(p), 32, torch.float32)
        ck, sk = rope_angles(torch.tensor(p - 5), 32, torch.float32)
        return float(apply_rope(q, cq, sq) @ apply_rope(k, ck, sk))

    assert score(5) == pytest.approx(score(10_000_005), abs=1e-4)


# ----------------------------------------------------------------------------- losses


@pytest.mark.parametrize("head", HEADS)
def test_loss_is_the_joint_nll_of_log_probs(head: str) -> None:
    model = tiny(head)
    comp, book = random_stream(model, 3, 9)
    x, b, y = comp[:, :-1], book[:, 1:], comp[:, 1:]
    logits, loss = model(x, b, y)
    lp = model.log_probs(model.hidden(x, b).reshape(-1, model.config.n_embd))
    assert lp.shape == (3 * 8, 24576)
    torch.testing.assert_close(lp.logsumexp(-1), torch.zeros(3 * 8), atol=1e-5, rtol=0)
    ids = joint_ids(y, model.config.component_sizes).reshape(-1, 1)
    nll = -lp.gather(1, ids).mean()
    torch.testing.assert_close(loss, nll, atol=1e-5, rtol=1e-6)
    width = 24576 if head == "joint" else 4 + 24 + 16 + 16
    assert logits.shape == (3, 8, width)
    kind_logits, none = model(x, b)
    assert none is None
    assert kind_logits.shape == (3, 8, 24576 if head == "joint" else 4)


def test_joint_ids_follow_the_spec() -> None:
    comp = torch.tensor([[3, 23, 15, 15], [1, 2, 3, 4]])
    assert joint_ids(comp, (4, 24, 16, 16)).tolist() == [24575, ((1 * 24 + 2) * 16 + 3) * 16 + 4]


# ----------------------------------------------------------------------------- sampling


@pytest.mark.parametrize("head", HEADS)
def test_sample_is_a_function_of_the_uniforms(head: str) -> None:
    model = tiny(head)
    comp, book = random_stream(model, 64, 4)
    hidden = model.hidden(comp, book)[:, -1]
    u = torch.from_numpy(np.random.default_rng(3).random((64, 4), dtype=np.float32))
    torch.manual_seed(1)
    a = model.sample(hidden, u)
    torch.manual_seed(2)  # torch's global RNG plays no part
    b = model.sample(hidden, u.numpy())
    assert torch.equal(a, b)
    assert a.dtype == torch.long and a.shape == (64, 4)
    for c, n in enumerate(model.config.component_sizes):
        assert 0 <= a[:, c].min() and a[:, c].max() < n
    # Edges of [0, 1) give valid draws with probability mass.
    lp = model.log_probs(hidden)
    for edge in (0.0, float(np.nextafter(np.float32(1), np.float32(0)))):
        s = model.sample(hidden, torch.full((64, 4), edge))
        assert torch.isfinite(
            lp.gather(1, joint_ids(s, model.config.component_sizes)[:, None])
        ).all()


@pytest.mark.parametrize("head", HEADS)
def test_huge_kind_bias_forces_the_kind(head: str) -> None:
    model = tiny(head)
    comp, book = random_stream(model, 256, 3)
    hidden = model.hidden(comp, book)[:, -1]
    u = torch.rand(256, 4, generator=torch.Generator().manual_seed(0))
    kinds = torch.arange(256) % 4
    bias = torch.full((256, 4), -1e9)
    bias[torch.arange(256), kinds] = 0.0
    assert torch.equal(model.sample(hidden, u, kind_bias=bias)[:, 0], kinds)
    # Also at the ends of [0, 1), float64 uniforms that round to 1.0 in float32 included.
    for edge in (0.0, 1.0 - 1e-12):
        ends = np.full((256, 4), edge)
        assert torch.equal(model.sample(hidden, ends, kind_bias=bias)[:, 0], kinds)
    # +huge works as well, and the bias leaves the rest of the order's distribution alone.
    up = torch.zeros(256, 4)
    up[torch.arange(256), kinds] = 1e4
    assert torch.equal(model.sample(hidden, u, kind_bias=up)[:, 0], kinds)


@pytest.mark.parametrize("head", HEADS)
def test_huge_gap_bias_forces_the_gap_and_leaves_the_kind(head: str) -> None:
    model = tiny(head)
    comp, book = random_stream(model, 256, 3)
    hidden = model.hidden(comp, book)[:, -1]
    u = torch.rand(256, 4, generator=torch.Generator().manual_seed(1))
    n_gap = model.config.component_sizes[3]
    gaps = torch.arange(256) % n_gap
    bias = torch.full((256, n_gap), -1e9)
    bias[torch.arange(256), gaps] = 0.0
    forced = model.sample(hidden, u, gap_bias=bias)
    assert torch.equal(forced[:, 3], gaps)
    if head == "factorised":  # the gap is drawn last: kind, level and size are untouched
        assert torch.equal(forced[:, :3], model.sample(hidden, u)[:, :3])
    with pytest.raises(ValueError, match="gap_bias must have shape"):
        model.sample(hidden, u, gap_bias=torch.zeros(256, 3))


@pytest.mark.slow
@pytest.mark.parametrize("head", HEADS)
def test_sample_frequencies_follow_log_probs(head: str) -> None:
    """Inverse CDF draws reproduce the model's joint distribution (one row, many draws)."""
    model = tiny(head)
    with torch.no_grad():  # peaky distributions, so that a shifted cell would show
        for name, p in model.named_parameters():
            if name == "joint_head.weight":
                p.mul_(100.0)
            elif name.startswith("heads.") and name.endswith(("fc.weight", "out.weight")):
                p.mul_(30.0)
    comp, book = random_stream(model, 1, 5)
    hidden = model.hidden(comp, book)[:, -1]
    n = 8000
    u = torch.from_numpy(np.random.default_rng(0).random((n, 4), dtype=np.float32))
    draws = model.sample(hidden.expand(n, -1), u)
    p = model.log_probs(hidden)[0].exp().double()
    sizes = model.config.component_sizes
    ids = joint_ids(draws, sizes)
    # Per-cell check of the joint distribution and of its (kind, price) marginal.
    for cells, groups in ((p, 1), (p.view(96, -1).sum(-1), sizes[2] * sizes[3])):
        freq = torch.bincount(ids // groups, minlength=cells.numel()).double() / n
        sigma = (cells * (1 - cells) / n).sqrt()
        assert ((freq - cells).abs() <= 5 * sigma + 1e-3).all()
    assert p.max() > 0.05  # the model really is peaky


def test_temperature_sharpens_and_rejects_nonpositive() -> None:
    model = tiny()
    comp, book = random_stream(model, 32, 3)
    hidden = model.hidden(comp, book)[:, -1]
    u = torch.rand(32, 4, generator=torch.Generator().manual_seed(0))
    cold = model.sample(hidden, u, temperature=1e-9)
    assert torch.equal(cold[:, 0], model.heads[0](hidden).argmax(-1))
    with pytest.raises(ValueError, match="temperature"):
        model.sample(hidden, u, temperature=0.0)


# ----------------------------------------------------------------------------- learning


@pytest.mark.parametrize("head", HEADS)
def test_training_learns_a_synthetic_pattern(head: str) -> None:
    """A deterministic order stream that needs the book and the context to predict.

    The kind cycles 0..3; the price level is the argmax of the book features; the size bin
    repeats the price level of two orders back and the gap bin the kind of two orders back.
    Without attention the size costs ln 8 = 2.1 nats; uniform guessing costs ln 1024 = 6.9.
    Smaller component sizes than the real ones keep the joint head quick to train.
    """
    sizes, n = (4, 8, 8, 4), 32
    torch.manual_seed(0)
    cfg = LMMConfig(
        n_layer=2, n_head=2, n_embd=n, block_size=16, head=head, component_sizes=sizes, n_book=8
    )
    model = OrderModel(cfg).train()
    g = torch.Generator().manual_seed(0)

    def batch(rows: int = 32, T: int = 16):
        L = T + 1
        price = torch.randint(0, 8, (rows, L), generator=g)
        kind = (torch.arange(L) + torch.randint(0, 4, (rows, 1), generator=g)) % 4
        comp = torch.stack((kind, price, price.roll(2, 1), kind.roll(2, 1)), -1)
        noise = 0.1 * torch.randn(rows, L, 8, generator=g)
        book = torch.nn.functional.one_hot(price, 8).float() + noise
        return comp[:, :-1], book[:, 1:], comp[:, 1:]

    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    first = model(*batch())[1].item()
    assert first == pytest.approx(math.log(1024), abs=0.5)
    for _ in range(250):
        _, loss = model(*batch())
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        x, b, y = batch(64)
        # From the third position on, two orders back are in the window: all predictable.
        lp = model.log_probs(model.hidden(x, b)[:, 2:].reshape(-1, n))
        nll = -lp.gather(1, joint_ids(y[:, 2:], sizes).reshape(-1, 1)).mean().item()
    assert nll < 0.5, (first, nll)


def test_attention_is_causal() -> None:
    """Changing an order never changes the hidden states before it."""
    model = tiny()
    comp, book = random_stream(model, 1, 12)
    a = model.hidden(comp, book)
    book2 = book.clone()
    book2[0, 7] += 1.0
    b = model.hidden(comp, book2)
    torch.testing.assert_close(a[:, :7], b[:, :7], atol=0, rtol=0)
    assert (a[:, 7:] - b[:, 7:]).abs().max() > 1e-3


def test_step_under_inference_mode() -> None:
    """Callers may wrap generation in torch.inference_mode() around a cache made outside."""
    model = tiny()
    comp, book = random_stream(model, 2, 3)
    cache = model.new_cache(2)
    with torch.inference_mode():
        for t in range(3):
            h = model.step(comp[:, t], book[:, t], cache)
    torch.testing.assert_close(h, model.hidden(comp, book)[:, -1], atol=ATOL, rtol=0)


# ----------------------------------------------------------------------------- device


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("head", HEADS)
def test_cuda_cache_matches_cpu(head: str) -> None:
    model = tiny(head)
    comp, book = random_stream(model, 3, 20)
    ref_cache = model.new_cache(3)
    gpu = tiny(head).cuda()
    cache = gpu.new_cache(3)
    assert cache.pos.device.type == "cuda"
    u = torch.rand(3, 4)
    for t in range(20):
        h = model.step(comp[:, t], book[:, t], ref_cache)
        hg = gpu.step(comp[:, t].cuda(), book[:, t].cuda(), cache)
        torch.testing.assert_close(hg.cpu(), h, atol=1e-4, rtol=0)
    assert gpu.sample(hg, u.cuda()).device.type == "cuda"
