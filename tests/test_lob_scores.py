"""LOB-Bench's score functions and the distances on small books whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest

from mars_ray.data.lobster import DELETE, EXECUTE, PARTIAL_CANCEL, SUBMIT, Messages
from mars_ray.data.lobster_replay import replay_orderbook
from mars_ray.reports.distances import (
    bootstrap_ci,
    conditional_distance,
    conditional_distances,
    l1_binned,
    score_distances,
    shared_bins,
    wasserstein1,
)
from mars_ray.reports.impact import (
    LAGS,
    curve_deviation,
    market_order_signs,
    pooled_curves,
    response_sums,
    sign_autocorrelation,
)
from mars_ray.reports.lob_scores import (
    SCORES,
    ask_volume_given_spread,
    book_before,
    book_scores,
    ofi_events,
    pool_scores,
    spread_given_time,
    spread_given_volatility,
)
from mars_ray.reports.lob_suite import (
    Book,
    floor_halves,
    message_rate,
    mid_moves,
    one_sided_share,
    windows,
)

S = 1_000_000_000


def messages(rows: list[tuple[int, int, int, int, int, int]]) -> Messages:
    """(time ns, type, id, size, price, direction) rows as Messages."""
    cols = list(zip(*rows, strict=True))
    dtypes = (np.int64, np.int8, np.int64, np.int64, np.int64, np.int8)
    t, typ, oid, size, price, d = (np.array(c, dtype=k) for c, k in zip(cols, dtypes, strict=True))
    return Messages(time_ns=t, type=typ, order_id=oid, size=size, price=price, direction=d)


# A 2-level book built by hand: asks 101 (3), 103 (5); bids 99 (4), 98 (2).
INITIAL = np.array([101, 3, 99, 4, 103, 5, 98, 2])
FLOW = messages(
    [
        (1 * S, SUBMIT, 10, 7, 102, -1),  # ask, 1 tick behind the best: level 2 after
        (2 * S, SUBMIT, 11, 1, 100, 1),  # bid inside the spread: -1 deep, level 1
        (4 * S, DELETE, 11, 1, 100, 1),  # cancel at the bid's best: 0 deep, level 1; 2 s
        (5 * S, PARTIAL_CANCEL, 10, 2, 102, -1),  # ask cancel 1 deep, level 2
        (65 * S, EXECUTE, 0, 3, 101, -1),  # executes the ask's best, 3 shares
        (130 * S, SUBMIT, 12, 4, 97, 1),  # bid 2 ticks deep, out of a 2-level view
    ]
)


def scores() -> dict[str, np.ndarray]:
    return book_scores(FLOW, replay_orderbook(FLOW, 2, INITIAL[None, :]), INITIAL)


def test_book_scores_of_a_hand_made_two_level_book():
    s = scores()
    assert s["spread"].tolist() == [2, 1, 2, 2, 3, 3]
    assert s["log_inter_arrival"] == pytest.approx(np.log10([1, 2, 1, 60, 65]))
    assert s["log_time_to_cancel"] == pytest.approx([np.log10(2)])
    assert s["limit_ask_depth"].tolist() == [1]
    assert s["limit_bid_depth"].tolist() == [-1, 2]
    assert s["limit_ask_level"].tolist() == [2]
    assert s["limit_bid_level"].tolist() == [1]  # 97 is out of the 2-level view
    assert s["cancel_bid_depth"].tolist() == [0]
    assert s["cancel_ask_depth"].tolist() == [1]
    assert s["cancel_bid_level"].tolist() == [1]
    assert s["cancel_ask_level"].tolist() == [2]
    assert s["ask_volume_touch"].tolist() == [3, 3, 3, 3, 5, 5]
    assert s["bid_volume"].tolist() == [6, 5, 6, 6, 6, 6]
    assert s["ask_volume"].tolist() == [10, 10, 10, 8, 10, 10]  # 103 comes into view
    assert s["orderbook_imbalance"][0] == pytest.approx((4 - 3) / 7)
    # two whole minutes; the execution at 65 s falls in the second
    assert s["volume_per_minute"].tolist() == [0, 3]
    assert set(s) == set(SCORES)


def test_ofi_counts_inflow_at_the_touch_with_its_sign():
    before = np.array([[101, 3, 99, 4], [101, 3, 99, 4], [101, 3, 99, 4]])
    after = np.array([[101, 3, 99, 6], [101, 5, 99, 4], [101, 3, 100, 1]])
    # bid grows by 2 (+2); ask grows by 2 (-2); a new better bid of 1 (+1)
    assert ofi_events(after, before).tolist() == [2, -2, 1]


def test_pool_scores_concatenate_books():
    s = scores()
    pooled = pool_scores([s, s])
    assert len(pooled["spread"]) == 2 * len(s["spread"])


def test_l1_of_identical_samples_is_zero_and_of_disjoint_two():
    u = np.array([1.0, 2.0, 2.0, 3.0])
    assert l1_binned(u, u) == 0.0
    assert l1_binned(u, u + 10) == pytest.approx(2.0)
    assert np.isnan(l1_binned(u, np.zeros(0)))
    assert np.diff(shared_bins(u, u)).tolist() == [1.0, 1.0, 1.0]  # unit bins for integers


def test_w1_of_shifted_samples_is_the_shift_and_its_interval_holds_it():
    rng = np.random.default_rng(1)
    u = rng.normal(size=400)
    assert wasserstein1(u, u + 0.5) == pytest.approx(0.5)
    lo, hi = bootstrap_ci(u, u + 0.5, wasserstein1, n_boot=50)
    assert lo <= 0.5 + 0.2 and hi >= 0.5 - 0.2 and lo <= hi


def test_score_distances_give_both_distances_with_intervals():
    u = np.arange(50.0)
    d = score_distances(u, u, n_boot=20)
    assert d["l1"] == 0.0 and d["w1"] == 0.0
    assert len(d["l1_ci95"]) == 2 and len(d["w1_ci95"]) == 2
    empty = score_distances(u, np.zeros(0), n_boot=5)
    assert empty["l1"] is None and empty["w1_ci95"] is None


def test_windows_cut_the_day_and_carry_the_book_before_each():
    rows = replay_orderbook(FLOW, 2, INITIAL[None, :])
    books = windows(FLOW, rows, INITIAL, (0, 180 * S), 60 * S)
    assert [len(b.msgs) for b in books] == [4, 1, 1]
    assert books[0].initial.tolist() == INITIAL.tolist()
    assert books[1].initial.tolist() == rows[3].tolist()
    first, second = floor_halves(books)
    assert len(first) == 1 and len(second) == 2
    assert one_sided_share(books) == 0.0
    assert message_rate(books) == pytest.approx(6 / (4 + 0 + 0))  # spans: 4 s, 0, 0


def test_mid_moves_follow_each_book_from_its_first_two_sided_row_to_its_last():
    def book(rows: list[list[int]]) -> Book:
        r = np.array(rows, dtype=np.int64)
        return Book(FLOW, r, r[0])

    up = book([[0, 0, 99, 100], [101, 100, 99, 100], [104, 100, 102, 100], [0, 0, 90, 5]])
    down = book([[110, 100, 100, 100], [105, 100, 95, 100]])  # mid 105 -> 100
    one_sided = book([[0, 0, 99, 100]])
    moves = mid_moves([up, down, one_sided])
    assert moves == {  # up: mid 100 -> 103 (the last row is one-sided: not counted)
        "mean": -1.0,
        "sd": 4.0,
        "mean_abs": 4.0,
        "min": -5.0,
        "max": 3.0,
        "books": 2,
    }
    assert mid_moves([one_sided]) is None


def test_price_response_of_a_hand_made_book():
    rows = replay_orderbook(FLOW, 2, INITIAL[None, :])
    curves = pooled_curves([response_sums(FLOW, rows, book_before(rows, INITIAL))])
    lag1, lag2 = LAGS.index(1), LAGS.index(2)
    # the execution takes the whole best ask (a buyer's market order): mid 100 -> 100.5
    assert curves["market_1"][lag1] == pytest.approx(0.5)
    assert curves["market_1"][lag2] is None and curves["market_0"][lag1] is None
    # the ask placed behind the best (sign -1) sees the mid rise by 0.5 two events later
    assert curves["limit_0"][lag1] == pytest.approx(0.0)
    assert curves["limit_0"][lag2] == pytest.approx(-0.5)
    assert curves["limit_1"][lag1] == pytest.approx(0.5)  # the bid inside the spread
    assert curve_deviation(curves["limit_0"], curves["limit_0"]) == 0.0
    assert curve_deviation([1.0, None, 3.0], [2.0, 5.0, 1.0]) == pytest.approx(1.5)
    assert curve_deviation([None], [1.0]) is None


def test_market_order_signs_merge_one_sweep_and_correlate_within_books():
    sweep = messages(
        [
            (1 * S, EXECUTE, 1, 3, 101, -1),  # a buyer takes two asks at one time: one order
            (1 * S, EXECUTE, 2, 2, 102, -1),
            (2 * S, SUBMIT, 9, 1, 99, 1),  # not a trade
            (3 * S, EXECUTE, 3, 1, 99, 1),  # a seller hits a bid
            (3 * S, EXECUTE, 4, 1, 101, -1),  # a buyer at the same time: another order
            (4 * S, EXECUTE, 5, 1, 101, -1),
        ]
    )
    assert market_order_signs(sweep).tolist() == [1, -1, 1, 1]
    # + + - - + + - -: the 7 lag-1 pairs' products average 1/7, their means are 1/7 and
    # -1/7, so the covariance is 8/49 and each variance 48/49: a correlation of 1/6
    runs = np.array([1, 1, -1, -1, 1, 1, -1, -1])
    lag1, lag2 = sign_autocorrelation([runs], lags=(1, 2))
    assert lag1 == pytest.approx(1 / 6)
    assert lag2 == pytest.approx(-1.0)  # two apart: always the other side
    # pairs never span two books: across them (+, -) would pull this below 1
    assert sign_autocorrelation([np.array([1, 1, 1]), np.array([-1, -1, -1])], lags=(1,)) == [
        pytest.approx(1.0)
    ]
    assert sign_autocorrelation([np.array([1, 1, 1, 1])], lags=(1, 9)) == [None, None]


def test_conditional_scores_group_by_their_condition():
    rows = replay_orderbook(FLOW, 2, INITIAL[None, :])
    volume, spread = ask_volume_given_spread(rows)
    assert spread.tolist() == [2, 1, 2, 2, 3, 3] and volume.tolist() == [3, 3, 3, 3, 5, 5]
    _, half_hour = spread_given_time(FLOW, rows)
    assert half_hour.tolist() == [0] * 6  # all in the first half hour after midnight
    _, moved = spread_given_volatility(np.vstack([rows] * 40))  # 240 rows: 140 have a past
    assert len(moved) == 140 and set(moved.tolist()) <= {0, 1, 2, 3}


def test_conditional_distance_weighs_shared_groups_by_the_real_sample():
    real = (np.array([0.0, 0.0, 0.0, 5.0]), np.array([1, 1, 1, 2]))
    gen = (np.array([1.0, 5.0, 9.0]), np.array([1, 2, 3]))  # group 3 is not in the real one
    # W1 in group 1 is 1 (weight 3/4), in group 2 is 0 (weight 1/4)
    assert conditional_distance(real, gen, wasserstein1) == pytest.approx(0.75)
    assert np.isnan(conditional_distance(real, (np.ones(1), np.array([7])), wasserstein1))
    d = conditional_distances(real, real, n_boot=10)
    assert d["w1"] == 0.0 and d["l1"] == 0.0
