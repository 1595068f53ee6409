"""Small-sample statistics for campaign summaries: mean, sample std, Student-t 95% intervals.

Pure Python (the summary runs without numpy or scipy). The t quantile is exact: the CDF of
Student's t with an integer number of degrees of freedom has a closed form (Abramowitz & Stegun
26.7.3/26.7.4), which bisection inverts to 1e-12.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

CONFIDENCE = 0.95


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n - 1; 0.0 for a single value)."""
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return mean, std


def t_cdf(t: float, df: int) -> float:
    """P(T <= t) for Student's t with ``df`` (a positive integer) degrees of freedom."""
    theta = math.atan(t / math.sqrt(df))
    c2 = math.cos(theta) ** 2
    # A(|t| | df) = P(-|t| < T < |t|), as a finite series in cos^2(theta)
    if df % 2:  # odd: 2/pi [theta + sin cos (1 + 2/3 c^2 + 2*4/(3*5) c^4 + ...)], df - 3 terms after the 1
        term, series = 1.0, 1.0 if df > 1 else 0.0
        for k in range(1, (df - 1) // 2):
            term *= c2 * (2 * k) / (2 * k + 1)
            series += term
        a = 2 / math.pi * (abs(theta) + math.sin(abs(theta)) * math.cos(theta) * series)
    else:  # even: sin (1 + 1/2 c^2 + 1*3/(2*4) c^4 + ...)
        term, series = 1.0, 1.0
        for k in range(1, df // 2):
            term *= c2 * (2 * k - 1) / (2 * k)
            series += term
        a = math.sin(abs(theta)) * series
    return 0.5 + a / 2 if t >= 0 else 0.5 - a / 2


def t_quantile(p: float, df: int) -> float:
    """The ``p`` quantile of Student's t with ``df`` degrees of freedom (0.975, 4 -> 2.7764)."""
    if not 0.0 < p < 1.0 or df < 1:
        raise ValueError(f"t_quantile needs 0 < p < 1 and df >= 1 (got p={p}, df={df})")
    if p < 0.5:
        return -t_quantile(1 - p, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        hi *= 2
    for _ in range(200):
        mid = (lo + hi) / 2
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12:
            break
    return (lo + hi) / 2


@dataclass(frozen=True)
class Estimate:
    """Mean of n values with its sample std and 95% t-interval (None when n < 2: undefined)."""

    n: int
    mean: float
    std: float
    ci95: tuple[float, float] | None

    @property
    def includes_zero(self) -> bool | None:
        return None if self.ci95 is None else self.ci95[0] <= 0.0 <= self.ci95[1]


def estimate(values: list[float]) -> Estimate:
    """Mean, sample std and the 95% Student-t interval mean ± t(0.975, n-1) * std / sqrt(n)."""
    mean, std = mean_std(values)
    n = len(values)
    if n < 2:
        return Estimate(n, mean, std, None)
    half = t_quantile(0.5 + CONFIDENCE / 2, n - 1) * std / math.sqrt(n)
    return Estimate(n, mean, std, (mean - half, mean + half))
