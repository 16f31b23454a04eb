"""The growth model's math on generated data (docs/analytics.md)."""

import math
import random

import pytest

from kpay.core.analytics.growth import MIN_DAYS, fit_growth, t_cdf, t_quantile


def series(seed: int, days: int = 60, n0: float = 1000, r: float = 0.02,
           noise: float = 0.10) -> list[float]:
    """Cumulative counts N0·e^(rt) with multiplicative noise of ``noise`` (ln-normal)."""
    rng = random.Random(seed)
    return [n0 * math.exp(r * t) * math.exp(rng.gauss(0, noise)) for t in range(days)]


@pytest.mark.parametrize(("p", "df", "known"), [
    (0.975, 1, 12.7062047), (0.975, 2, 4.30265273), (0.975, 5, 2.57058184),
    (0.975, 10, 2.22813885), (0.975, 30, 2.04227246), (0.975, 58, 2.00171748),
    (0.95, 20, 1.72471824), (0.995, 3, 5.84090931), (0.9995, 57, 3.47),
    (0.5, 7, 0.0), (0.025, 10, -2.22813885)])
def test_t_quantile_matches_tables(p, df, known):
    assert t_quantile(p, df) == pytest.approx(known, abs=1e-2 if df == 57 else 1e-6)


def test_t_cdf_inverts_quantile():
    for df in (1, 4, 13, 100):
        assert t_cdf(t_quantile(0.9, df), df) == pytest.approx(0.9, abs=1e-9)


def test_fit_recovers_rate_within_0_002():
    fit = fit_growth(series(seed=17))
    assert fit["ok"], fit
    assert abs(fit["r"] - 0.02) < 0.002
    assert fit["n0"] == pytest.approx(1000, rel=0.1)
    assert fit["r_month"] == pytest.approx(fit["r"] * 30)
    assert fit["doubling_days"] == pytest.approx(math.log(2) / fit["r"])
    assert fit["r2"] > 0.85
    assert fit["r_low"] < fit["r"] < fit["r_high"]
    thirty, ninety = fit["projections"]
    assert (thirty["days"], ninety["days"]) == (30, 90)
    assert thirty["low"] < thirty["n"] < thirty["high"]
    # The band widens further ahead.
    assert ninety["high"] / ninety["low"] > thirty["high"] / thirty["low"]
    truth90 = 1000 * math.exp(0.02 * (59 + 90))
    assert ninety["low"] < truth90 < ninety["high"]


def test_every_seed_is_within_0_002():
    misses = [s for s in range(100) if abs(fit_growth(series(s))["r"] - 0.02) >= 0.002]
    assert misses == []


def test_interval_covers_true_rate_at_least_90_of_100():
    covered = 0
    for seed in range(100):
        fit = fit_growth(series(seed))
        assert fit["ok"], (seed, fit)
        covered += fit["r_low"] <= 0.02 <= fit["r_high"]
    assert covered >= 90
    # And it is a 95% interval, not a uselessly wide one.
    assert covered <= 100
    widths = [fit_growth(series(s))["r_high"] - fit_growth(series(s))["r_low"] for s in range(5)]
    assert all(w < 0.004 for w in widths)


def test_linear_series_is_refused():
    rng = random.Random(1)
    linear = [100 + 10 * t + rng.gauss(0, 2) for t in range(60)]
    fit = fit_growth(linear)
    assert not fit["ok"]
    assert fit["reason"] in ("changing_rate", "not_exponential")
    assert "不符合指数增长" in fit["message"]


def test_flat_series_is_refused():
    fit = fit_growth([500] * 30)
    assert (fit["ok"], fit["reason"]) == (False, "not_growing")
    assert "不符合指数增长" in fit["message"]


def test_noisy_flat_series_is_refused():
    rng = random.Random(3)
    fit = fit_growth([500 * math.exp(rng.gauss(0, 0.05)) for _ in range(40)])
    assert not fit["ok"]


def test_too_few_days_and_zero_counts_are_refused():
    short = fit_growth(series(2, days=MIN_DAYS - 1))
    assert (short["ok"], short["reason"]) == (False, "too_few_days")
    assert "数据不足" in short["message"]
    zeros = fit_growth([0, 0, *series(2, days=20)])
    assert (zeros["ok"], zeros["reason"]) == (False, "zero_counts")
    assert fit_growth(series(2, days=MIN_DAYS, noise=0.01))["ok"]


def test_exact_exponential_fits_perfectly():
    fit = fit_growth([50 * math.exp(0.05 * t) for t in range(20)])
    assert fit["ok"]
    assert fit["r"] == pytest.approx(0.05, abs=1e-12)
    assert fit["n0"] == pytest.approx(50)
    assert fit["r2"] == pytest.approx(1.0)
