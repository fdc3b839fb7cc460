"""What every query module shares: its error, SQL ratios, bound ranges and filters, buckets.

SQL text is built only from fixed fragments and configuration (funnel steps, names checked
against `ATTR_NAME`); every value a caller supplies is a bound parameter.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from cxpulse.schemas.times import ch_time

ATTR_NAME = re.compile(r"\A[A-Za-z_][A-Za-z0-9_]{0,63}\Z")  # \Z: `$` would allow a final newline


class QueryError(ValueError):
    """A request the query module refuses (an unusable filter, an empty range)."""


def ratio(numerator: str, denominator: str) -> str:
    """A ratio of two SQL expressions, null when the denominator is 0 (design section 4)."""
    return f"if({denominator} = 0, NULL, {numerator} / {denominator})"


def as_float(value: float | None) -> float | None:
    """JSON from ClickHouse writes a whole Float64 as an integer: keep figures floats."""
    return None if value is None else float(value)


def range_and_attrs(
    column: str, start_ms: int, end_ms: int, filters: Mapping[str, str]
) -> tuple[list[str], dict[str, Any]]:
    """[start, end) on a time column plus exact segment-attribute filters, all bound."""
    if end_ms <= start_ms:
        raise QueryError("end must be after start")
    clauses = [
        f"{column} >= {{start:DateTime64(3, 'UTC')}}",
        f"{column} < {{end:DateTime64(3, 'UTC')}}",
    ]
    params: dict[str, Any] = {"start": ch_time(start_ms), "end": ch_time(end_ms)}
    for index, (name, value) in enumerate(sorted(filters.items())):
        if not ATTR_NAME.match(name):
            raise QueryError(f"{name!r} is not a segment attribute name")
        clauses.append(f"attrs[{{an{index}:String}}] = {{av{index}:String}}")
        params[f"an{index}"] = name
        params[f"av{index}"] = value
    return clauses, params


def time_bucket(column: str, interval_s: int | None, params: dict[str, Any]) -> tuple[str, str]:
    """(select expression, group by) for optional fixed-size time buckets."""
    if interval_s is None:
        return "", ""
    if interval_s < 60 or interval_s % 60:
        raise QueryError("interval must be a whole number of minutes")
    params["interval"] = interval_s
    expression = (
        f"toUnixTimestamp(toStartOfInterval({column}, toIntervalSecond({{interval:UInt32}})))"
        " * 1000 AS bucket_ms, "
    )
    return expression, "GROUP BY bucket_ms"
