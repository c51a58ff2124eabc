"""Each stylized fact is found on a series built to show it and not on one built without."""

from __future__ import annotations

import numpy as np

from mars_ray.reports.stylized_facts import FACTS, stylized_facts


def garch(n: int, seed: int = 0) -> np.ndarray:
    """GARCH(1,1) returns: clustered volatility, heavy tails, no linear autocorrelation."""
    rng = np.random.default_rng(seed)
    r, var = np.zeros(n), 1.0
    for t in range(n):
        r[t] = np.sqrt(var) * rng.standard_normal()
        var = 0.05 + 0.15 * r[t] ** 2 + 0.83 * var
    return r


def test_gaussian_noise_is_uncorrelated_without_tails_or_clusters():
    r = np.random.default_rng(3).standard_normal(20_000)
    facts = stylized_facts(r, np.ones_like(r))
    assert facts["absence_of_autocorrelation"]["present"]
    assert not facts["heavy_tails"]["present"]
    assert not facts["volatility_clustering"]["present"]
    assert not facts["intermittency"]["present"]
    assert set(facts) == set(FACTS) and len(FACTS) == 11


def test_garch_returns_show_tails_and_clustering():
    r = garch(20_000)
    volume = np.abs(r) * 100 + 1
    facts = stylized_facts(r, volume)
    for name in (
        "absence_of_autocorrelation",
        "heavy_tails",
        "volatility_clustering",
        "slow_decay_of_abs_autocorrelation",
        "volume_volatility_correlation",
    ):
        assert facts[name]["present"], (name, facts[name])


def test_iid_heavy_tails_fade_when_aggregated():
    r = np.random.default_rng(2).standard_t(5, size=20_000)
    facts = stylized_facts(r, np.ones_like(r))
    assert facts["heavy_tails"]["present"] and facts["aggregational_gaussianity"]["present"]
    assert facts["intermittency"]["present"]


def test_trending_series_is_autocorrelated_and_skew_and_leverage_have_signs():
    rng = np.random.default_rng(5)
    e = rng.standard_normal(5_000)
    ar = np.zeros_like(e)
    for t in range(1, len(e)):
        ar[t] = 0.6 * ar[t - 1] + e[t]
    assert not stylized_facts(ar, np.ones_like(ar))["absence_of_autocorrelation"]["present"]
    crashes = np.where(rng.random(5_000) < 0.02, -8.0, 0.0) + rng.standard_normal(5_000)
    assert stylized_facts(crashes, np.ones(5_000))["gain_loss_asymmetry"]["present"]
    # a fall raises the next returns' size: leverage
    lev = np.zeros(5_000)
    for t in range(1, 5_000):
        lev[t] = rng.standard_normal() * (1.0 + 2.0 * (lev[t - 1] < -1))
    assert stylized_facts(lev, np.ones(5_000))["leverage_effect"]["present"]


def test_too_short_or_flat_series_give_no_verdict():
    facts = stylized_facts(np.zeros(4), np.zeros(4))
    assert all(f["present"] is False for f in facts.values())
