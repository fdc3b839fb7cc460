"""The statistics of design section 4b: two proportions compared, Bonferroni, sample-ratio mismatch.

Pure functions over counts, shared by the API (on the counts SQL returns) and the simulator's
ground truth (on counts it derives from the events itself), so the two can only differ in their
counts. No scipy at run time: the normal tail is `erfc` and the chi-square tail has a closed form
for whole degrees of freedom, summed in log space so a large statistic cannot overflow.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

Z95 = 1.959963984540054
# Below this many journeys in either group the normal approximation is not trusted: z, p and the
# interval are null rather than misleading.
MIN_N = 30
ALPHA = 0.05
# A sample-ratio mismatch is flagged only at p < 0.001: the check runs on every comparison, so a
# lenient threshold would cry wolf on healthy experiments.
SRM_ALPHA = 0.001


def rate(x: int, n: int) -> float | None:
    return x / n if n else None


@dataclass(frozen=True, slots=True)
class Comparison:
    """Group a against group b (a = after or variant, b = before or control)."""

    diff: float | None
    relative: float | None
    ci95: tuple[float, float] | None
    z: float | None
    p_value: float | None


def compare(xa: int, na: int, xb: int, nb: int) -> Comparison:
    """Two-proportion z-test with pooled variance and an unpooled 95 % interval, no continuity
    correction."""
    pa, pb = rate(xa, na), rate(xb, nb)
    if pa is None or pb is None:
        return Comparison(None, None, None, None, None)
    diff = pa - pb
    relative = diff / pb if pb else None
    pooled = (xa + xb) / (na + nb)
    if min(na, nb) < MIN_N or pooled in (0.0, 1.0):
        return Comparison(diff, relative, None, None, None)
    se = math.sqrt(pa * (1 - pa) / na + pb * (1 - pb) / nb)
    z = diff / math.sqrt(pooled * (1 - pooled) * (1 / na + 1 / nb))
    return Comparison(
        diff, relative, (diff - Z95 * se, diff + Z95 * se), z, math.erfc(abs(z) / math.sqrt(2))
    )


def bonferroni(p_value: float | None, tests: int) -> float | None:
    return None if p_value is None else min(1.0, p_value * tests)


def significant(p_value: float | None) -> bool:
    return p_value is not None and p_value < ALPHA


def chi2_sf(x: float, df: int) -> float:
    """P(X >= x) for a chi-square variable with whole `df` degrees of freedom (the regularized
    upper incomplete gamma Q(df/2, x/2), whose series is finite for whole and half-whole shape)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be at least 1, got {df}")
    if x <= 0:
        return 1.0
    half = x / 2
    if df % 2 == 0:
        head, shapes = 0.0, [float(i) for i in range(df // 2)]
    else:
        head, shapes = math.erfc(math.sqrt(half)), [i + 0.5 for i in range((df - 1) // 2)]
    log_half = math.log(half)
    tail = sum(math.exp(s * log_half - half - math.lgamma(s + 1)) for s in shapes)
    return min(1.0, head + tail)


@dataclass(frozen=True, slots=True)
class Srm:
    chi2: float
    p_value: float
    mismatch: bool


def sample_ratio_mismatch(
    counts: Sequence[int], shares: Sequence[float] | None = None
) -> Srm | None:
    """Chi-square goodness of fit of the groups' journey counts to the expected shares (equal
    when not given); None when there is nothing to test (fewer than two groups or no journeys)."""
    total = sum(counts)
    if len(counts) < 2 or total == 0:
        return None
    weights = shares if shares is not None else [1.0] * len(counts)
    if len(weights) != len(counts) or not all(0 < w < math.inf for w in weights):
        raise ValueError("expected shares must be positive and finite, one per group")
    largest = max(weights)  # scaled to at most 1 first, so their sum cannot overflow
    whole = sum(w / largest for w in weights)
    expect = [total * (w / largest) / whole for w in weights]
    if not all(e > 0 for e in expect):
        raise ValueError("expected shares too unequal: a group would expect no journeys")
    chi2 = sum((n - e) ** 2 / e for n, e in zip(counts, expect, strict=True))
    p_value = chi2_sf(chi2, len(counts) - 1)
    return Srm(chi2, p_value, p_value < SRM_ALPHA)
