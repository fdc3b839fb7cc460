"""What Grafana and the ClickHouse datasource plugin do to a panel's SQL before ClickHouse sees
it: template variables, then the plugin's macros (as its pkg/macros/macros.go expands them)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from cxpulse.dashboards.sql import ALL_VALUE

_VARIABLE = re.compile(r"\$\{([a-z_][a-z0-9_]*):singlequote\}")
_MACRO_CALL = re.compile(r"\$__(timeFilter|timeInterval)\(([^()]+)\)")


def singlequote(values: Sequence[str]) -> str:
    """Grafana's `singlequote` format: each value quoted, quotes escaped with a backslash."""
    return ",".join("'" + v.replace("'", "\\'") + "'" for v in values)


def expand(
    sql: str,
    start_ms: int,
    end_ms: int,
    interval_s: int,
    variables: Mapping[str, Sequence[str] | None],
) -> str:
    """`sql` as ClickHouse receives it for the range [start, end) at `interval_s`; a variable
    mapped to None is set to "All" (its custom all-value is inserted verbatim)."""

    def variable(match: re.Match[str]) -> str:
        values = variables[match.group(1)]  # a KeyError names a variable the test forgot
        return ALL_VALUE if values is None else singlequote(values)

    def call(match: re.Match[str]) -> str:
        name, column = match.group(1), match.group(2).strip()
        if name == "timeFilter":
            return (
                f"{column} >= toDateTime({start_ms // 1000}) AND "
                f"{column} <= toDateTime({end_ms // 1000})"
            )
        return f"toStartOfInterval(toDateTime({column}), INTERVAL {max(interval_s, 1)} second)"

    sql = _VARIABLE.sub(variable, sql)
    sql = _MACRO_CALL.sub(call, sql)
    sql = sql.replace("$__fromTime_ms", f"fromUnixTimestamp64Milli({start_ms})")
    sql = sql.replace("$__toTime_ms", f"fromUnixTimestamp64Milli({end_ms})")
    sql = sql.replace("$__interval_s", str(max(interval_s, 1)))
    if "$" in sql:
        raise AssertionError(f"unexpanded macro or variable left in:\n{sql}")
    return sql
