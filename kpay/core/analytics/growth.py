"""The growth model N(t) = N0·e^(rt), fitted to a cumulative count per day
(docs/analytics.md, "The growth model").

Pure functions on plain lists: the series are at most a year of days, so ordinary
least squares in plain Python is exact enough and fast, and needs no numpy.

``ln N = ln N0 + r·t`` is a straight line in ``t`` (days since the first day), so
``ln N0`` and ``r`` are its intercept and slope by least squares. The 95% interval
of ``r`` is the slope's standard error times the t quantile for ``n - 2`` degrees of
freedom; projections carry the 95% prediction band of a new observation.
"""

from __future__ import annotations

import math
from typing import Any

#: Fewer days than this are not enough to tell a trend from noise.
MIN_DAYS = 14
#: Below this share of variance explained (of ln N) the curve is not exponential.
MIN_R2 = 0.8
#: A curvature of ln N this many standard errors from zero (two-sided 99.9%) says the
#: growth rate itself changes (a straight line's ln N bends down): not exponential.
CURVATURE_LEVEL = 0.999
#: Days ahead the model projects.
HORIZONS = (30, 90)

REASONS = {
    "too_few_days": "数据不足：至少需要 {min} 天的数据",
    "zero_counts": "数据不足：有的日子累计人数为零",
    "not_growing": "不符合指数增长：人数没有增长",
    "not_exponential": "不符合指数增长：拟合优度 R² 太低",
    "changing_rate": "不符合指数增长：增长率在变化（更像线性增长或放缓）",
}


# -- the t distribution ------------------------------------------------------------

def _beta_continued_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of the regularized incomplete beta function (the
    modified Lentz method, as in Numerical Recipes' ``betacf``)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return h


def regularized_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b), the regularized incomplete beta function, for 0 <= x <= 1."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                     + a * math.log(x) + b * math.log1p(-x))
    # The fraction converges fast only on one side of the mean; use the symmetry there.
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _beta_continued_fraction(a, b, x) / a
    return 1.0 - front * _beta_continued_fraction(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` degrees of freedom."""
    tail = 0.5 * regularized_beta(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile of Student's t with ``df`` degrees of freedom (0 < p < 1),
    by bisection on :func:`t_cdf` (monotone), to about 1e-10."""
    if not 0.0 < p < 1.0 or df <= 0:
        raise ValueError("t_quantile needs 0 < p < 1 and df > 0")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    low, high = 0.0, 1.0
    while t_cdf(high, df) < p:
        high *= 2.0
    for _ in range(200):
        mid = (low + high) / 2.0
        if t_cdf(mid, df) < p:
            low = mid
        else:
            high = mid
        if high - low < 1e-10:
            break
    return (low + high) / 2.0


# -- the fit -----------------------------------------------------------------------

def refusal(reason: str, n: int) -> dict[str, Any]:
    return {"ok": False, "days": n, "reason": reason,
            "message": REASONS[reason].format(min=MIN_DAYS)}


def fit_growth(counts: list[int | float], level: float = 0.95) -> dict[str, Any]:
    """Fit N(t) = N0·e^(rt) to ``counts``, the cumulative count on consecutive days
    (``t`` = 0, 1, ...).

    Returns ``{"ok": True, "n0", "r", "r_month", "doubling_days", "r2", "r_low",
    "r_high", "days", "projections": [{"days", "n", "low", "high"}]}`` or, when the
    data do not support a projection, ``{"ok": False, "reason", "message"}`` (the
    message in Chinese for the page): fewer than :data:`MIN_DAYS` days, a day at zero,
    no growth, R² below :data:`MIN_R2`, or a growth rate that changes over the window.
    """
    n = len(counts)
    if n < MIN_DAYS:
        return refusal("too_few_days", n)
    if any(c <= 0 for c in counts):
        return refusal("zero_counts", n)
    ys = [math.log(c) for c in counts]
    t_mean = (n - 1) / 2.0
    y_mean = sum(ys) / n
    us = [t - t_mean for t in range(n)]
    sxx = sum(u * u for u in us)
    syy = sum((y - y_mean) ** 2 for y in ys)
    if syy <= 1e-18:
        return refusal("not_growing", n)
    slope = sum(u * (y - y_mean) for u, y in zip(us, ys, strict=True)) / sxx
    intercept = y_mean - slope * t_mean
    sse = max(syy - slope * slope * sxx, 0.0)
    r2 = 1.0 - sse / syy
    if slope <= 0:
        return refusal("not_growing", n)
    if r2 < MIN_R2:
        return refusal("not_exponential", n)
    if _curved(us, ys, sse, n):
        return refusal("changing_rate", n)
    s = math.sqrt(sse / (n - 2))
    se_slope = s / math.sqrt(sxx)
    tq = t_quantile(0.5 + level / 2.0, n - 2)
    projections = []
    for ahead in HORIZONS:
        t = n - 1 + ahead
        centre = intercept + slope * t
        spread = tq * s * math.sqrt(1.0 + 1.0 / n + (t - t_mean) ** 2 / sxx)
        projections.append({"days": ahead, "n": math.exp(centre),
                             "low": math.exp(centre - spread),
                             "high": math.exp(centre + spread)})
    return {"ok": True, "days": n, "n0": math.exp(intercept), "r": slope,
            "r_month": slope * 30, "doubling_days": math.log(2) / slope, "r2": r2,
            "r_low": slope - tq * se_slope, "r_high": slope + tq * se_slope,
            "level": level, "projections": projections,
            "fitted": [math.exp(intercept + slope * t) for t in range(n)]}


def _curved(us: list[float], ys: list[float], sse: float, n: int) -> bool:
    """Whether ln N has a significant quadratic term: its coefficient against
    ``u² - mean(u²)``, which on equally spaced days is orthogonal to 1 and ``u``, so
    adding it leaves the line's fit unchanged and its own estimate is a ratio."""
    mean_sq = sum(u * u for u in us) / n
    qs = [u * u - mean_sq for u in us]
    sqq = sum(q * q for q in qs)
    if n < 4 or sqq <= 0:
        return False
    curvature = sum(q * y for q, y in zip(qs, ys, strict=True)) / sqq
    sse2 = max(sse - curvature * curvature * sqq, 0.0)
    if sse2 <= 1e-18:
        return abs(curvature) > 1e-12
    se = math.sqrt(sse2 / (n - 3)) / math.sqrt(sqq)
    return abs(curvature) / se > t_quantile(0.5 + CURVATURE_LEVEL / 2.0, n - 3)
