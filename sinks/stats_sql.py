"""The section 4b two-proportion comparison as SQL, for the Grafana panels.

A panel can only show what its query returns, so the dashboards need the statistics in SQL; the
API computes them in Python (`schemas.stats`) from the same counts. Both follow design section 4b
term by term, in the same order of operations, and tests/dashboards compares a panel's figures
with the API's for every new panel (the same arrangement as the alert z-test, see
docs/decisions.md).
"""

from __future__ import annotations

from cxpulse.schemas.stats import ALPHA, MIN_N, Z95


def rate_sql(x: str, n: str) -> str:
    return f"if(({n}) = 0, NULL, ({x}) / ({n}))"


def comparison_sql(xa: str, na: str, xb: str, nb: str) -> dict[str, str]:
    """Expressions for diff, relative, ci95_low, ci95_high, z and p_value of group a against group
    b, each a function of the four count expressions only (no aliases, so callers may name the
    columns as they like)."""
    pa, pb = rate_sql(xa, na), rate_sql(xb, nb)
    diff = f"({pa} - {pb})"
    pooled = f"((({xa}) + ({xb})) / (({na}) + ({nb})))"
    valid = f"(least({na}, {nb}) >= {MIN_N} AND {pooled} > 0 AND {pooled} < 1)"
    se = f"sqrt({pa} * (1 - {pa}) / ({na}) + {pb} * (1 - {pb}) / ({nb}))"
    z = f"({diff} / sqrt({pooled} * (1 - {pooled}) * (1 / ({na}) + 1 / ({nb}))))"
    return {
        "diff": diff,
        "relative": f"if({pb} = 0, NULL, {diff} / {pb})",
        "ci95_low": f"if({valid}, {diff} - {Z95} * {se}, NULL)",
        "ci95_high": f"if({valid}, {diff} + {Z95} * {se}, NULL)",
        "z": f"if({valid}, {z}, NULL)",
        "p_value": f"if({valid}, erfc(abs({z}) / sqrt(2)), NULL)",
    }


def adjusted_sql(p_value: str, tests: str) -> str:
    """Bonferroni: min(1, p * m); NULL stays NULL (ClickHouse's `least` would drop it)."""
    return f"if(isNull({p_value}), NULL, least(1, ({p_value}) * ({tests})))"


def significant_sql(p_value: str) -> str:
    return f"coalesce(({p_value}) < {ALPHA}, 0)"
