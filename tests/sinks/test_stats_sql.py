"""The SQL form of the section 4b comparison equals the Python one (schemas.stats) on chdb."""

from __future__ import annotations

import chdb
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cxpulse.schemas.stats import bonferroni, compare, significant
from cxpulse.sinks.stats_sql import adjusted_sql, comparison_sql, significant_sql

_COUNTS = st.integers(0, 400).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n)))


def _sql(xa: int, na: int, xb: int, nb: int, tests: int) -> dict[str, float | None]:
    exprs = comparison_sql("xa", "na", "xb", "nb")
    columns = ", ".join(f"{e} AS {name}" for name, e in exprs.items())
    query = (
        f"SELECT {columns}, {adjusted_sql(exprs['p_value'], str(tests))} AS p_adjusted, "
        f"{significant_sql(adjusted_sql(exprs['p_value'], str(tests)))} AS significant "
        f"FROM (SELECT toUInt64({xa}) AS xa, toUInt64({na}) AS na, "
        f"toUInt64({xb}) AS xb, toUInt64({nb}) AS nb)"
    )
    return orjson.loads(chdb.query(query, "JSONEachRow").bytes())


def _close(a: float | None, b: float | None) -> bool:
    return a is None if b is None else a is not None and a == pytest.approx(b, rel=1e-9, abs=1e-15)


@settings(max_examples=60, deadline=None)
@given(_COUNTS, _COUNTS, st.integers(1, 12))
def test_sql_comparison_equals_python(a: tuple[int, int], b: tuple[int, int], tests: int) -> None:
    got = _sql(*a, *b, tests)
    want = compare(*a, *b)
    low, high = want.ci95 if want.ci95 is not None else (None, None)
    for name, value in [
        ("diff", want.diff),
        ("relative", want.relative),
        ("ci95_low", low),
        ("ci95_high", high),
        ("z", want.z),
        ("p_value", want.p_value),
        ("p_adjusted", bonferroni(want.p_value, tests)),
    ]:
        assert _close(got[name], value), (name, got[name], value)
    assert bool(got["significant"]) == significant(bonferroni(want.p_value, tests))


def test_sql_nulls_by_hand() -> None:
    assert _sql(0, 0, 3, 40, 1)["diff"] is None
    small = _sql(10, 29, 10, 50, 1)
    assert small["z"] is None
    assert small["diff"] == pytest.approx(10 / 29 - 0.2)
    assert _sql(5, 40, 0, 40, 1)["relative"] is None
    assert _sql(40, 40, 40, 40, 1)["p_value"] is None
