"""The size regime's quantile map, on hand-made size mixes whose answers are known."""

import numpy as np
import pytest

from mars_ray.lmm.size_regime import MIN_CONTEXT_SIZES, SizeRegime


def _two_bins() -> np.ndarray:
    """A model that learned half its orders in bin 0 (small) and half in bin 1 (large)."""
    mix = np.zeros(16)
    mix[:2] = 0.5
    return mix


def test_real_sizes_reach_the_model_by_their_rank_in_the_context() -> None:
    # the instrument: a quarter of its orders are 10 shares, three quarters are 100
    context = np.array([10] * 25 + [100] * 75)
    regime = SizeRegime(_two_bins(), context)
    # 10 ranks at 1/8 (mid rank of the lowest quarter): the model's small bin; 100 at
    # 5/8: its large one, although most of the instrument's orders are 100
    assert regime.bins(np.array([10, 100])).tolist() == [0, 1]
    # a size between or beyond the context's takes the rank where it would fall: 50 lies
    # above every 10 (rank 1/4, still the small half), 10,000 above everything
    assert regime.bins(np.array([1, 50, 10_000])).tolist() == [0, 0, 1]


def test_generated_bins_come_back_as_context_sizes_of_the_same_rank() -> None:
    context = np.array([10] * 25 + [100] * 75)
    regime = SizeRegime(_two_bins(), context)
    u = np.linspace(0, 0.999, 1000)
    small = np.array([regime.shares(0, x) for x in u])
    large = np.array([regime.shares(1, x) for x in u])
    # bin 0 is the lower half of the ranks: 10 for its first half, 100 after
    assert set(small.tolist()) == {10, 100}
    assert np.mean(small == 10) == pytest.approx(0.5, abs=0.01)
    assert set(large.tolist()) == {100}  # the upper half is all 100
    # overall the instrument's own mix comes back: a quarter of 10s
    assert np.mean(np.concatenate([small, large]) == 10) == pytest.approx(0.25, abs=0.01)


def test_a_bin_the_model_never_saw_decodes_at_its_rank() -> None:
    mix = np.zeros(16)
    mix[0], mix[15] = 0.9, 0.1
    regime = SizeRegime(mix, np.arange(1, 101))
    assert regime.shares(7, 0.5) == 91  # an empty band: the rank where it sits, 0.9
    assert regime.shares(15, 0.999) == 100


def test_too_little_context_or_no_mix_leaves_sizes_as_trained() -> None:
    sizes = np.full(MIN_CONTEXT_SIZES - 1, 100)
    assert SizeRegime.from_context(_two_bins(), sizes) is None
    assert SizeRegime.from_context(None, np.full(500, 100)) is None
    zeros = np.concatenate([np.zeros(500, np.int64), np.full(MIN_CONTEXT_SIZES, 7)])
    regime = SizeRegime.from_context(_two_bins(), zeros)  # unsized orders do not count
    assert regime is not None and regime.shares(0, 0.0) == 7
    with pytest.raises(ValueError, match="no order with a positive size"):
        SizeRegime(_two_bins(), np.zeros(3))
