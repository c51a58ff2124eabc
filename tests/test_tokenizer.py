"""The LMM tokenizer: price-level rules, bins, joint ids, decoding, state, book features."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mars_ray.lmm.tokenizer import (
    BEHIND,
    COMPONENT_SIZES,
    DEEP,
    DEEP_TICKS,
    INSIDE,
    MARKETABLE,
    N_BOOK,
    N_GAP,
    N_SIZE,
    OPEN_NS,
    SESSION_NS,
    VOCAB_SIZE,
    Kind,
    Tokenizer,
    TokenizerStateError,
    book_features,
    book_features_one,
    decode_price,
    decode_price_one,
    encode_price_level,
    inside_fractions,
    median_spread,
    mirror,
    price_levels,
    scale_levels,
    scale_spread_features,
    token_components,
    token_ids,
    touch_order_rate,
)
from mars_ray.schema.events import OrderType

B, S, CB, CS = int(Kind.BUY), int(Kind.SELL), int(Kind.CANCEL_BUY), int(Kind.CANCEL_SELL)


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    rng = np.random.default_rng(0)
    sizes = np.concatenate(
        [np.full(5000, 100), rng.integers(1, 5000, 5000), np.full(2000, 200)]
    )  # lumpy, like real sizes
    gaps = np.concatenate([np.zeros(1000, np.int64), rng.lognormal(15, 2, 9000).astype(np.int64)])
    return Tokenizer.fit(sizes, np.maximum(gaps, 0))


# ----------------------------------------------------------------------------- constants, ids
def test_sizes_of_the_vocabulary():
    assert COMPONENT_SIZES == (4, 24, 16, 16)
    assert VOCAB_SIZE == 4 * 24 * 16 * 16 == 24_576 and N_BOOK == 24
    assert (MARKETABLE, INSIDE, BEHIND, DEEP) == (0, 1, 2, 23)


def test_joint_ids_round_trip_over_the_whole_vocabulary():
    ids = np.arange(VOCAB_SIZE)
    comps = token_components(ids)
    assert comps.shape == (VOCAB_SIZE, 4)
    assert (comps.max(axis=0) + 1).tolist() == list(COMPONENT_SIZES)
    assert np.array_equal(token_ids(comps), ids)
    k, p, s, g = comps[1234]
    assert 1234 == ((k * 24 + p) * 16 + s) * 16 + g
    batch = token_components(ids.reshape(256, 96))  # any leading shape
    assert batch.shape == (256, 96, 4) and np.array_equal(token_ids(batch), ids.reshape(256, 96))
    assert np.array_equal(Tokenizer.token_ids(comps), ids)


def test_out_of_range_components_and_ids_are_refused():
    with pytest.raises(ValueError, match="price level 24"):
        token_ids(np.array([[0, 24, 0, 0]]))
    with pytest.raises(ValueError, match="kind -1"):
        token_ids(np.array([[-1, 0, 0, 0]]))
    with pytest.raises(ValueError, match="24576"):
        token_components(np.array([VOCAB_SIZE]))


# ----------------------------------------------------------------------------- price levels
def test_price_level_rules_against_a_two_sided_book():
    bid, ask = 100, 105
    cases = [  # (kind, price, level)
        (B, 105, MARKETABLE),
        (B, 110, MARKETABLE),
        (B, 104, INSIDE),
        (B, 101, INSIDE),
        (B, 100, BEHIND),
        (B, 95, BEHIND + 5),
        (B, 80, BEHIND + 20),
        (B, 79, DEEP),
        (S, 100, MARKETABLE),
        (S, 90, MARKETABLE),
        (S, 102, INSIDE),
        (S, 105, BEHIND),
        (S, 112, BEHIND + 7),
        (S, 126, DEEP),
        (CB, 100, BEHIND),
        (CB, 97, BEHIND + 3),
        (CS, 125, BEHIND + 20),
    ]
    kind, price, want = (np.array(c) for c in zip(*cases, strict=True))
    got = price_levels(kind, price, bid, ask, 0)
    assert got.dtype == np.int8
    assert got.tolist() == want.tolist()


def test_price_level_rules_with_empty_sides():
    # own side empty: measured from one tick inside the opposite best
    assert price_levels(B, 104, 0, 105, 0) == BEHIND
    assert price_levels(B, 100, 0, 105, 0) == BEHIND + 4
    assert price_levels(B, 105, 0, 105, 0) == MARKETABLE
    assert price_levels(S, 101, 100, 0, 0) == BEHIND
    assert price_levels(S, 130, 100, 0, 0) == DEEP
    # opposite side empty: nothing to cross, anything better than the own best is inside
    assert price_levels(B, 150, 100, 0, 0) == INSIDE
    assert price_levels(S, 10, 0, 50, 0) == INSIDE
    # both empty: from the reference price
    ref = 50
    assert price_levels(B, 50, 0, 0, ref) == BEHIND
    assert price_levels(B, 45, 0, 0, ref) == BEHIND + 5
    assert price_levels(B, 51, 0, 0, ref) == INSIDE
    assert price_levels(S, 49, 0, 0, ref) == INSIDE
    assert price_levels(S, 60, 0, 0, ref) == BEHIND + 10


def test_cancels_use_the_same_rule_even_in_a_crossed_book():
    # a call phase can leave the book crossed: a resting buy above the best ask
    assert price_levels(CB, 106, 106, 104, 0) == MARKETABLE
    assert price_levels(CS, 104, 106, 104, 0) == MARKETABLE
    assert price_levels(CB, 101, 100, 105, 0) == INSIDE  # allowed, if unlikely


def test_encode_price_level_of_a_distance():
    assert encode_price_level(0) == BEHIND
    assert encode_price_level(-3) == INSIDE
    assert encode_price_level(21) == DEEP
    assert encode_price_level(np.array([0, 20, 21])).tolist() == [2, 22, 23]


# ----------------------------------------------------------------------------- decode
def test_decode_price_cases():
    bid, ask, ref = 100, 105, 0
    assert decode_price(MARKETABLE, 1, bid, ask, ref) == (105, True)
    assert decode_price(MARKETABLE, -1, bid, ask, ref) == (100, True)
    assert decode_price(INSIDE, 1, bid, ask, ref) == (101, False)
    assert decode_price(INSIDE, -1, bid, ask, ref) == (104, False)
    assert decode_price(INSIDE, 1, 100, 101, ref) == (100, False)  # no room: join the best
    assert decode_price(BEHIND + 3, 1, bid, ask, ref) == (97, False)
    assert decode_price(BEHIND + 3, -1, bid, ask, ref) == (108, False)
    assert decode_price(DEEP, 1, bid, ask, ref) == (100 - DEEP_TICKS, False)
    assert decode_price(DEEP, 1, 5, 7, ref) == (1, False)  # never below one tick
    assert decode_price(MARKETABLE, 1, bid, 0, ref) == (100, True)  # nothing to hit
    assert decode_price(BEHIND, 1, 0, 0, 50) == (50, False)
    assert decode_price(INSIDE, -1, 0, 0, 50) == (49, False)
    assert decode_price(BEHIND + 1, 1, 0, 105, 0) == (103, False)
    # cancels: the level to cancel at; never marketable, levels 0 and 1 mean the own best
    assert decode_price(MARKETABLE, 1, bid, ask, ref, cancel=True) == (100, False)
    assert decode_price(INSIDE, -1, bid, ask, ref, cancel=True) == (105, False)
    assert decode_price(BEHIND + 2, -1, bid, ask, ref, cancel=True) == (107, False)
    price, marketable = decode_price(np.array([0, 2]), np.array([1, -1]), bid, ask, ref)
    assert price.tolist() == [105, 105] and marketable.tolist() == [True, False]


def random_books(rng: np.random.Generator, n: int) -> tuple[np.ndarray, ...]:
    """Best bid / ask (ticks, 0 = empty side) and a reference, far enough above 1 tick
    that no decoded price is clipped."""
    mid = rng.integers(1_000, 100_000, n)
    spread = rng.integers(1, 12, n)
    bid = mid - spread // 2
    ask = bid + spread
    empty = rng.random(n)
    bid = np.where((empty < 0.1) | (empty > 0.95), 0, bid)
    ask = np.where((empty > 0.9), 0, ask)
    ref = mid + rng.integers(-5, 6, n)
    return bid, ask, ref


def test_encode_decode_round_trip_on_random_books_and_orders(tok):
    rng = np.random.default_rng(1)
    n = 20_000
    bid, ask, ref = random_books(rng, n)
    kind = rng.integers(0, 4, n)
    side = np.where(kind % 2 == 0, 1, -1)
    own = np.where(side > 0, bid, ask)
    anchor = np.where(own > 0, own, ref)
    price = np.maximum(anchor - side * rng.integers(-8, 40, n), 1)
    size = rng.integers(1, 20_000, n)
    gap = np.where(rng.random(n) < 0.2, 0, rng.integers(1, 10**10, n))
    level = price_levels(kind, price, bid, ask, ref)
    comps = tok.encode(kind, level, size, gap)
    assert comps.shape == (n, 4) and comps.dtype == np.int64
    out = tok.decode(comps, bid, ask, ref)
    assert len(out) == n
    assert out.kind.tolist() == kind.tolist()
    assert out.side.tolist() == side.tolist()
    assert (out.price >= 1).all() and (out.size >= 1).all() and (out.gap_ns >= 0).all()
    # a level that names one price gives that price back exactly
    exact = (level >= BEHIND) & (level < DEEP)
    assert np.array_equal(out.price[exact], price[exact])
    # decoding then encoding again gives the same token, whatever the level, except that a
    # cancel at MARKETABLE / INSIDE (no resting order of its side there) targets the own best
    again = tok.encode(
        out.kind, price_levels(out.kind, out.price, bid, ask, ref), out.size, out.gap_ns
    )
    odd_cancel = (kind >= 2) & (level <= INSIDE)
    assert odd_cancel.sum() > 100
    assert np.array_equal(again[~odd_cancel], comps[~odd_cancel])
    assert (again[odd_cancel, 1] == BEHIND).all()
    # order types: cancels, market orders for marketable new orders, limits otherwise
    cancel = kind >= 2
    assert np.array_equal(out.is_cancel, cancel)
    market = ~cancel & (level == MARKETABLE)
    assert (out.order_type[market] == int(OrderType.MARKET)).all()
    assert (out.order_type[~cancel & ~market] == int(OrderType.LIMIT)).all()
    # every level and bin occurred, so the round trip covered them all
    assert set(level.tolist()) == set(range(24))


def test_bin_representatives_encode_to_their_own_bin(tok):
    assert np.array_equal(tok.size_bins(tok.size_values), np.arange(N_SIZE))
    assert np.array_equal(tok.gap_bins(tok.gap_values), np.arange(N_GAP))
    assert tok.gap_bins(np.array([0, 1])).tolist()[0] == 0
    assert tok.gap_bins(np.array([1])).tolist()[0] >= 1


# ----------------------------------------------------------------------------- fitting
def test_fit_gives_quantile_bins_on_smooth_data():
    rng = np.random.default_rng(2)
    sizes = rng.lognormal(6, 1.5, 50_000).astype(np.int64) + 1
    gaps = rng.lognormal(16, 2, 50_000).astype(np.int64)
    t = Tokenizer.fit(sizes, gaps)
    share = np.bincount(t.size_bins(sizes), minlength=N_SIZE) / sizes.size
    assert np.allclose(share, 1 / N_SIZE, atol=0.01)
    gshare = np.bincount(t.gap_bins(gaps), minlength=N_GAP)[1:] / (gaps > 0).sum()
    assert np.allclose(gshare, 1 / (N_GAP - 1), atol=0.01)
    assert (np.diff(t.size_values) >= 0).all() and (np.diff(t.gap_values) > 0).all()


def test_fit_gives_a_heavy_size_its_own_bin_and_leaves_no_bin_empty(tok):
    rng = np.random.default_rng(0)
    sizes = np.concatenate([np.full(5000, 100), rng.integers(1, 5000, 5000), np.full(2000, 200)])
    counts = np.bincount(tok.size_bins(sizes), minlength=N_SIZE)
    assert (counts > 0).all()
    assert 100 in tok.size_values.tolist() and 200 in tok.size_values.tolist()
    hundred = int(tok.size_bins(np.array([100]))[0])  # the 100s: a bin of (nearly) their own
    assert tok.size_values[hundred] == 100 and counts[hundred] < 1.01 * (sizes == 100).sum()


def test_fit_with_few_distinct_values_still_gives_a_valid_tokenizer():
    t = Tokenizer.fit(np.array([100, 100, 200, 300]), np.array([0, 0, 5, 5]))
    assert t.size_bins(np.array([100, 200, 300])).tolist() == [0, 1, 2]
    assert t.gap_bins(np.array([0, 5])).tolist() == [0, 1]
    assert (np.diff(t.size_edges) > 0).all() and (np.diff(t.size_values) >= 0).all()
    assert Tokenizer.from_state(t.to_state()) == t
    only_zero_gaps = Tokenizer.fit(np.array([1]), np.array([0, 0]))
    assert only_zero_gaps.gap_values[0] == 0


def test_fit_and_encode_refuse_bad_values(tok):
    with pytest.raises(ValueError, match="size must be at least 1 share: got 0 at index 1"):
        Tokenizer.fit(np.array([5, 0]), np.array([1]))
    with pytest.raises(ValueError, match="gap must not be negative: got -3"):
        tok.encode(np.array([0]), np.array([2]), np.array([100]), np.array([-3]))
    with pytest.raises(ValueError, match="no sizes"):
        Tokenizer.fit(np.array([], dtype=np.int64), np.array([1]))
    with pytest.raises(ValueError, match="price level 30"):
        tok.encode(np.array([0]), np.array([30]), np.array([100]), np.array([3]))


# ----------------------------------------------------------------------------- state
def test_state_round_trips_through_json(tok):
    state = tok.to_state()
    assert set(state) == {"component_sizes", "size_edges", "size_values", "gap_edges", "gap_values"}
    # inside_fractions is stored only when fitted (older models decode INSIDE one tick in)
    assert all(isinstance(v, list) for v in state.values())
    back = Tokenizer.from_state(json.loads(json.dumps(state)))
    assert back == tok
    sizes, gaps = np.array([1, 99, 100, 150, 10**6]), np.array([0, 1, 10**3, 10**9, 10**12])
    kinds, levels = np.zeros(5, np.int64), np.full(5, 2)
    assert np.array_equal(
        back.encode(kinds, levels, sizes, gaps), tok.encode(kinds, levels, sizes, gaps)
    )
    assert np.array_equal(back.size_values, tok.size_values)
    # the decoding tables, where fitted, travel with it
    tables = tok.with_decoding(None, 28.0, 1.875, np.array([100, 100, 100, 1]))
    state = json.loads(json.dumps(tables.to_state()))
    assert state["spread_ticks"] == 28.0 and state["touch_rate"] == 1.875
    mix = np.zeros(16)
    mix[tok.size_bins(np.array([100, 1]))] = [0.75, 0.25]  # each size bin's share
    assert np.allclose(state["size_mix"], mix)
    assert Tokenizer.from_state(state) == tables != tok


def _broken(tok: Tokenizer, key: str, value: object) -> dict:
    state = tok.to_state()
    if value is KeyError:
        del state[key]
    else:
        state[key] = value
    return state


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("size_edges", KeyError, "missing key.*size_edges"),
        ("extra", [1], "unknown key.*extra"),
        ("size_edges", [1.0, 2.0], "'size_edges' must hold 15 numbers, got 2"),
        ("gap_values", "0,1,2", "'gap_values' must be a list of numbers, got str"),
        ("size_values", [100] * 15 + ["x"], "'size_values' holds 'x' at index 15"),
        ("size_edges", [float("nan")] + [float(i) for i in range(14)], "'size_edges' holds nan"),
        ("size_values", [1.5] * 16, "'size_values' holds 1.5 at index 0, want an integer"),
        ("size_edges", [1.0] * 15, "'size_edges' must be strictly increasing"),
        ("size_values", [0] * 16, "'size_values' must be >= 1"),
        ("gap_values", list(range(1, 17)), "'gap_values' must be 0 for bin 0"),
        ("component_sizes", [4, 24, 16, 8], "'component_sizes' is \\[4, 24, 16, 8\\]"),
        ("gap_edges", [True] * 14, "'gap_edges' holds True at index 0"),
        ("inside_fractions", [0.5] * 3, "'inside_fractions' must hold 17 numbers, got 3"),
        ("inside_fractions", [0.5] * 16 + [0.1], "'inside_fractions' must be non-decreasing"),
        ("inside_fractions", [0.0] * 16 + [1.5], "fractions in \\[0, 1\\]"),
        ("spread_ticks", 0.5, "'spread_ticks' must be a spread of >= 1 tick, got 0.5"),
        ("spread_ticks", "wide", "'spread_ticks' holds 'wide'"),
        ("touch_rate", 0.0, "'touch_rate' must be a positive number of orders a second, got 0.0"),
        ("touch_rate", [2.0], "'touch_rate' holds \\[2.0\\]"),
        ("size_mix", [0.5] * 3, "'size_mix' must hold 16 numbers, got 3"),
        ("size_mix", [0.5] * 16, "'size_mix' must be 16 shares >= 0 summing to 1"),
        ("size_mix", [-0.5, 1.5] + [0.0] * 14, "'size_mix' must be 16 shares >= 0"),
    ],
)
def test_malformed_state_names_the_key(tok, key, value, message):
    with pytest.raises(TokenizerStateError, match=message):
        Tokenizer.from_state(_broken(tok, key, value))


def test_the_touch_rate_counts_what_a_level_1_view_shows():
    """Orders a second that are marketable, inside the spread or at their own best: a
    level-1 file holds just those orders, so it reads the same count (its span may end
    sooner, at its own last order)."""
    levels = np.array([MARKETABLE, INSIDE, BEHIND, BEHIND + 1, DEEP, BEHIND, BEHIND + 9])
    seconds = np.array([0, 1, 1, 2, 3, 3, 4]) * 10**9
    assert touch_order_rate(levels, seconds) == pytest.approx(4 / 4)
    level_1 = levels <= BEHIND
    assert touch_order_rate(levels[level_1], seconds[level_1]) == pytest.approx(4 / 3)
    assert touch_order_rate(levels[:1], seconds[:1]) is None  # nothing to time
    assert touch_order_rate(levels[1:3], seconds[1:3]) is None  # no time between them


def test_state_must_be_a_dict():
    with pytest.raises(TokenizerStateError, match="must be a dict, got list"):
        Tokenizer.from_state([1, 2])  # type: ignore[arg-type]
    assert issubclass(TokenizerStateError, ValueError)


# ----------------------------------------------------------------------------- drawing in bins
def test_gap_draws_stay_in_their_bin_and_spread_over_it(tok):
    rng = np.random.default_rng(5)
    for g in range(1, N_GAP):
        draws = np.array([tok.gap_draw(g, u) for u in rng.random(2000)])
        assert (tok.gap_bins(draws) == g).mean() > 0.99, g  # int() rounding may cross an edge
        logs = np.log(draws)
        assert logs.std() > 0.2 * tok.gap_log_width[g] > 0  # a range, not one point
        # the bin's median stays in the middle of the drawn range
        assert abs(np.median(logs) - np.log(tok.gap_values[g])) < 0.6 * tok.gap_log_width[g]
    assert tok.gap_draw(0, 0.7) == 0
    first, last = tok.gap_draw(1, 0.0), tok.gap_draw(N_GAP - 1, 0.999999)
    assert first >= 1 and last > tok.gap_values[-1]  # the open ends are mirrored, not cut


def test_inside_fractions_and_the_depth_they_decode_to():
    # spread 11 (10 prices inside): orders 1, 1, 1 and 10 ticks in; spread 2: left out
    fr = inside_fractions(np.array([1, 1, 1, 10, 1]), np.array([11, 11, 11, 11, 2]))
    assert fr.shape == (17,) and fr[0] == 0 and fr[-1] == 1 and (np.diff(fr) >= 0).all()
    assert np.array_equal(inside_fractions(np.array([1]), np.array([2])), np.zeros(17))
    base = Tokenizer.fit(np.array([100, 200]), np.array([0, 5, 9]))
    assert base.inside is None and base.inside_ticks(9, 0.99) == 1  # an older model: one tick
    fitted = Tokenizer.fit(
        np.array([100, 200]), np.array([0, 5, 9]), (np.array([1, 1, 1, 10]), np.full(4, 11))
    )
    assert Tokenizer.from_state(json.loads(json.dumps(fitted.to_state()))) == fitted
    assert fitted.inside_ticks(9, 0.0) == 1 and fitted.inside_ticks(9, 0.999) == 9
    assert fitted.inside_ticks(1, 0.999) == 1  # room for one price: one tick in
    ticks = [fitted.inside_ticks(20, u) for u in np.linspace(0, 0.999, 1000)]
    assert min(ticks) == 1 and max(ticks) <= 20
    # quantiles of (0, 0, 0, 1) are 0 up to u = 2/3 and climb to 1 after it
    assert 0.64 < np.mean(np.array(ticks) == 1) < 0.70 and max(ticks) == 20


def test_price_regime_helpers_scale_distances_and_the_spread_the_model_reads():
    levels = np.array([MARKETABLE, INSIDE, BEHIND, BEHIND + 4, BEHIND + 15, DEEP])
    half = scale_levels(levels, 0.5)
    assert half.tolist() == [MARKETABLE, INSIDE, BEHIND, BEHIND + 2, BEHIND + 8, BEHIND + 14]
    double = scale_levels(levels, 2.0)
    assert double.tolist() == [MARKETABLE, INSIDE, BEHIND, BEHIND + 8, DEEP, DEEP]
    book = np.zeros((3, 10, 4), dtype=np.int64)
    book[:, 0, :] = [[110, 100, 100, 100], [130, 100, 100, 100], [0, 0, 100, 100]]
    feats = book_features(book, OPEN_NS)
    assert median_spread(feats[:, 20]) == pytest.approx(20.0)  # 10 and 30; one-sided: out
    assert median_spread(feats[2:, 20]) is None
    halved = scale_spread_features(feats, 0.5)
    assert np.expm1(halved[:2, 20]) == pytest.approx([5.0, 15.0], rel=1e-5)
    assert np.array_equal(halved[:, :20], feats[:, :20]) and halved[2, 20] == 0


# ----------------------------------------------------------------------------- book features
def test_book_features_values():
    book = np.zeros((3, 10, 4), dtype=np.int64)
    # row 0: asks 105, 106, 110 / bids 100, 98 (sizes in shares)
    book[0, :3, 0], book[0, :3, 1] = [105, 106, 110], [100, 200, 300]
    book[0, :2, 2], book[0, :2, 3] = [100, 98], [50, 1000]
    # row 1: bids only; row 2: crossed (a call phase)
    book[1, 0, 2:] = [100, 300]
    book[2, 0] = [99, 100, 101, 100]
    times = np.array([OPEN_NS, OPEN_NS + SESSION_NS, OPEN_NS - SESSION_NS // 13])
    f = book_features(book, times)
    assert f.shape == (3, N_BOOK) and f.dtype == np.float32
    assert np.allclose(f[0, :3], np.log1p([1, 2, 3])) and (f[0, 3:10] == 0).all()
    assert np.allclose(f[0, 10:12], np.log1p([0.5, 10])) and (f[0, 12:20] == 0).all()
    assert np.isclose(f[0, 20], np.log1p(5))  # spread
    assert np.isclose(f[0, 21], np.log1p(5))  # 110 - 105
    assert np.isclose(f[0, 22], np.log1p(2))  # 100 - 98
    assert np.allclose(f[:, 23], [0.0, 1.0, -1 / 13])
    assert f[1, 20] == 0 and f[1, 21] == 0 and f[1, 22] == 0  # one side empty
    assert f[2, 20] == 0 and np.isfinite(f).all()  # crossed: spread 0, not NaN


def test_book_features_accept_flat_rows_and_fewer_levels():
    rng = np.random.default_rng(3)
    book = np.zeros((50, 10, 4), dtype=np.int64)
    book[:, :, 0] = 1000 + np.arange(10)
    book[:, :, 2] = 999 - np.arange(10)
    book[:, :, 1::2] = rng.integers(1, 5000, (50, 10, 2))
    times = rng.integers(OPEN_NS, OPEN_NS + SESSION_NS, 50)
    full = book_features(book, times)
    assert np.array_equal(book_features(book.reshape(50, 40), times), full)
    one = book_features(book[:, :1].reshape(50, 4), times)  # a 1-level LOBSTER file
    assert np.array_equal(one[:, [0, 10, 20, 23]], full[:, [0, 10, 20, 23]])
    assert (one[:, 1:10] == 0).all() and (one[:, 21:23] == 0).all()
    assert book_features(np.zeros((0, 10, 4)), np.zeros(0)).shape == (0, N_BOOK)
    with pytest.raises(ValueError, match="multiple of 4"):
        book_features(np.zeros((2, 6)), np.zeros(2))


def test_the_one_order_decoder_agrees_with_the_vectorised_one_in_every_case():
    """The agents decode one order at a time with ``decode_price_one``: every level, side,
    cancel flag and book shape (both sides, one side, none, a tight and a crossed spread)
    against ``decode_price`` over arrays."""
    quotes = [(100, 101), (100, 105), (100, 0), (0, 105), (0, 0), (101, 100), (1, 0)]
    cases = [
        (level, side, bid, ask, cancel)
        for level in range(24)
        for side in (1, -1)
        for bid, ask in quotes
        for cancel in (False, True)
    ]
    level, side, bid, ask, cancel = (np.array(c) for c in zip(*cases, strict=True))
    for scale in (1.0, 0.5, 2.5):  # the price regime scales distances behind the anchor
        price, marketable = decode_price(level, side, bid, ask, 3, cancel, scale)
        for i, case in enumerate(cases):
            got = decode_price_one(*case[:4], 3, case[4], scale)
            assert got == (price[i], marketable[i]), (case, scale)
    assert decode_price(BEHIND + 3, 1, 100, 105, 3, scale=2.5) == (92, False)  # 7.5 -> 8
    assert decode_price(DEEP, -1, 100, 105, 3, scale=0.5) == (105 + DEEP_TICKS // 2, False)
    with pytest.raises(ValueError, match="outside"):
        decode_price_one(24, 1, 100, 101, 3)


def test_the_one_book_features_agree_with_the_vectorised_ones():
    rng = np.random.default_rng(4)
    for _ in range(200):
        n_ask, n_bid = rng.integers(0, 11, 2)
        asks = np.cumsum(rng.integers(1, 4, n_ask)) + 1000
        bids = 1000 - np.cumsum(rng.integers(0, 4, n_bid))
        book = np.zeros((10, 4), dtype=np.int64)
        book[:n_ask, 0], book[:n_ask, 1] = asks, rng.integers(1, 10_000, n_ask)
        book[:n_bid, 2], book[:n_bid, 3] = bids, rng.integers(1, 10_000, n_bid)
        t = int(OPEN_NS + rng.integers(-(10**12), SESSION_NS))
        one = book_features_one(
            [tuple(r) for r in book[:n_ask, :2].tolist()],
            [tuple(r) for r in book[:n_bid, 2:].tolist()],
            t,
        )
        np.testing.assert_allclose(
            np.float32(one), book_features(book[None], t)[0], rtol=1e-6, atol=1e-7
        )


def test_mirror_is_the_same_flow_seen_from_the_other_side() -> None:
    """Reflecting every price (p -> C - p) swaps the sides; the mirrored tokens and book
    features must be exactly what the reflected orders and book encode to."""
    rng = np.random.default_rng(5)
    n, c = 200, 20_000
    bid1 = rng.integers(9_000, 9_990, n)
    ask1 = bid1 + rng.integers(1, 40, n)
    raw = np.zeros((n, 10, 4), dtype=np.int64)
    raw[:, :, 0] = ask1[:, None] + np.cumsum(rng.integers(1, 4, (n, 10)), axis=1) - 1
    raw[:, :, 2] = bid1[:, None] - np.cumsum(rng.integers(1, 4, (n, 10)), axis=1) + 1
    raw[:, :, 1] = rng.integers(1, 5_000, (n, 10))
    raw[:, :, 3] = rng.integers(1, 5_000, (n, 10))
    raw[rng.random(n) < 0.1, 3:] = 0  # short books: widths differ by side
    reflected = raw.copy()
    reflected[:, :, 0] = np.where(raw[:, :, 2] > 0, c - raw[:, :, 2], 0)
    reflected[:, :, 1] = raw[:, :, 3]
    reflected[:, :, 2] = np.where(raw[:, :, 0] > 0, c - raw[:, :, 0], 0)
    reflected[:, :, 3] = raw[:, :, 1]
    t = OPEN_NS + rng.integers(0, SESSION_NS, n)
    kind = rng.integers(0, 4, n)
    price = rng.integers(8_950, 10_050, n)
    price[:40] = np.where(kind[:40] % 2 == 0, bid1[:40], ask1[:40])  # at its own best
    levels = price_levels(kind, price, raw[:, 0, 2], raw[:, 0, 0], 9_500)
    flipped_levels = price_levels(
        kind ^ 1, c - price, reflected[:, 0, 2], reflected[:, 0, 0], c - 9_500
    )
    comp = np.stack([kind, levels, rng.integers(0, N_SIZE, n), rng.integers(0, N_GAP, n)], 1)
    want = np.stack([kind ^ 1, flipped_levels, comp[:, 2], comp[:, 3]], 1)
    got_comp, got_book = mirror(comp, book_features(raw, t))
    np.testing.assert_array_equal(got_comp, want)
    np.testing.assert_array_equal(got_book, book_features(reflected, t))
    assert set(levels.tolist()) >= {MARKETABLE, INSIDE, BEHIND, DEEP}  # every rule was hit
    back_comp, back_book = mirror(got_comp, got_book)  # twice is the identity
    np.testing.assert_array_equal(back_comp, comp)
    np.testing.assert_array_equal(back_book, book_features(raw, t))
    assert not np.shares_memory(got_comp, comp)  # the input is left as it was
