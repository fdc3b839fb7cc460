"""The section 4b statistics against hand-computed values and against scipy."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sp

from cxpulse.schemas.stats import (
    Z95,
    bonferroni,
    chi2_sf,
    compare,
    rate,
    sample_ratio_mismatch,
    significant,
)


def test_rate_is_null_without_journeys() -> None:
    assert rate(3, 0) is None
    assert rate(3, 4) == 0.75


def test_compare_by_hand() -> None:
    # a: 60 of 100, b: 45 of 100. diff 0.15; pooled 105/200 = 0.525;
    # z = 0.15 / sqrt(0.525 * 0.475 * 0.02) = 0.15 / 0.0706222...;
    # se = sqrt(0.6*0.4/100 + 0.45*0.55/100) = sqrt(0.004875).
    c = compare(60, 100, 45, 100)
    assert c.diff == pytest.approx(0.15, rel=1e-12)
    assert c.relative == pytest.approx(0.15 / 0.45, rel=1e-12)
    z = 0.15 / math.sqrt(0.525 * 0.475 * 0.02)
    assert c.z == pytest.approx(z, rel=1e-12)
    assert z == pytest.approx(2.123977, rel=1e-6)
    assert c.p_value == pytest.approx(0.0336720, rel=1e-5)
    se = math.sqrt(0.004875)
    assert c.ci95 == pytest.approx((0.15 - Z95 * se, 0.15 + Z95 * se), rel=1e-12)


def test_compare_nulls() -> None:
    assert compare(0, 0, 5, 50) == compare(5, 50, 0, 0)
    assert compare(0, 0, 5, 50).diff is None
    small = compare(10, 29, 10, 50)  # one group under 30: only diff and relative
    assert small.diff == pytest.approx(10 / 29 - 0.2)
    assert (small.z, small.p_value, small.ci95) == (None, None, None)
    for pooled_edge in (compare(0, 40, 0, 40), compare(40, 40, 40, 40)):
        assert pooled_edge.diff == 0.0
        assert (pooled_edge.z, pooled_edge.p_value, pooled_edge.ci95) == (None, None, None)
    zero_base = compare(5, 40, 0, 40)
    assert zero_base.relative is None
    assert zero_base.z is not None


def test_bonferroni_and_significance() -> None:
    assert bonferroni(0.01, 6) == pytest.approx(0.06)
    assert bonferroni(0.4, 6) == 1.0
    assert bonferroni(None, 6) is None
    assert significant(0.049)
    assert not significant(0.05)
    assert not significant(None)


@settings(max_examples=200, deadline=None)
@given(
    st.integers(30, 5000).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))),
    st.integers(30, 5000).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))),
)
def test_compare_matches_scipy(a: tuple[int, int], b: tuple[int, int]) -> None:
    (xa, na), (xb, nb) = a, b
    c = compare(xa, na, xb, nb)
    pooled = (xa + xb) / (na + nb)
    if pooled in (0.0, 1.0):
        assert c.z is None
        return
    expected = sp.norm.sf(abs(c.z)) * 2  # type: ignore[arg-type]
    assert c.p_value == pytest.approx(expected, rel=1e-9, abs=1e-300)
    # scipy's own two-sample test of proportions (pooled, no continuity correction) agrees on z.
    table = [[xa, na - xa], [xb, nb - xb]]
    chi2 = sp.chi2_contingency(table, correction=False).statistic
    assert c.z**2 == pytest.approx(chi2, rel=1e-9)  # type: ignore[operator]


def test_chi2_tail_by_hand() -> None:
    # df 2: exp(-x/2) exactly; df 1: erfc(sqrt(x/2)); df 3: erfc(sqrt(x/2)) + sqrt(2x/pi) e^(-x/2).
    assert chi2_sf(3.0, 2) == pytest.approx(math.exp(-1.5), rel=1e-14)
    assert chi2_sf(3.0, 1) == pytest.approx(math.erfc(math.sqrt(1.5)), rel=1e-14)
    assert chi2_sf(3.0, 3) == pytest.approx(
        math.erfc(math.sqrt(1.5)) + math.sqrt(6 / math.pi) * math.exp(-1.5), rel=1e-14
    )
    assert chi2_sf(0.0, 4) == 1.0
    with pytest.raises(ValueError, match="degrees of freedom"):
        chi2_sf(1.0, 0)


@pytest.mark.parametrize("df", [1, 2, 3, 4, 5, 9, 10, 49, 120])
@pytest.mark.parametrize("x", [0.01, 0.5, 3.0, 10.0, 45.0, 200.0, 2000.0])
def test_chi2_tail_matches_scipy(df: int, x: float) -> None:
    assert chi2_sf(x, df) == pytest.approx(sp.chi2.sf(x, df), rel=1e-9, abs=1e-300)


def test_sample_ratio_mismatch() -> None:
    # 1,000 vs 1,100 journeys at 50:50: chi2 = 2 * 50^2 / 1050 = 4.7619..., p = erfc(sqrt(chi2/2)).
    srm = sample_ratio_mismatch([1000, 1100])
    assert srm is not None
    assert srm.chi2 == pytest.approx(5000 / 1050, rel=1e-12)
    assert srm.p_value == pytest.approx(sp.chisquare([1000, 1100]).pvalue, rel=1e-9)
    assert not srm.mismatch
    skewed = sample_ratio_mismatch([1000, 1300, 1000])
    assert skewed is not None
    assert skewed.mismatch
    weighted = sample_ratio_mismatch([900, 100], [90, 10])
    assert weighted is not None
    assert weighted.chi2 == pytest.approx(0.0, abs=1e-9)
    assert not weighted.mismatch
    expected = sp.chisquare([700, 300], f_exp=[800, 200])
    custom = sample_ratio_mismatch([700, 300], [80, 20])
    assert custom is not None
    assert custom.chi2 == pytest.approx(expected.statistic, rel=1e-12)
    assert custom.p_value == pytest.approx(expected.pvalue, rel=1e-9)
    assert sample_ratio_mismatch([10]) is None
    assert sample_ratio_mismatch([0, 0]) is None
    with pytest.raises(ValueError, match="shares"):
        sample_ratio_mismatch([5, 5], [1.0])


def test_sample_ratio_mismatch_with_extreme_shares() -> None:
    """Huge or tiny shares are relative: they neither overflow nor vanish; a group expected but
    empty is a mismatch."""
    huge = sample_ratio_mismatch([1000, 1100], [1e308, 1e308])
    assert huge is not None
    assert huge.chi2 == pytest.approx(5000 / 1050, rel=1e-12)
    empty_arm = sample_ratio_mismatch([2000, 0], [1.0, 1.0])
    assert empty_arm is not None
    assert empty_arm.mismatch
    with pytest.raises(ValueError, match="positive and finite"):
        sample_ratio_mismatch([5, 5], [math.inf, 1.0])
    with pytest.raises(ValueError, match="too unequal"):
        sample_ratio_mismatch([5, 5], [5e-324, 1e308])
