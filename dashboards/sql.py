"""The SQL of every dashboard panel, in the ClickHouse datasource plugin's dialect.

Same figures as the API: every count, ratio and predicate is a builder of the query modules
(`sinks/*_queries.py`), called here with Grafana's macros where the API binds parameters
(`tests/dashboards` checks every panel against the API's numbers).
What differs is only how a range and a filter arrive: the plugin's macros (`$__fromTime_ms`,
`$__toTime_ms`, `$__timeInterval`, `$__timeFilter`) and template variables instead of bound
parameters. Ranges are half-open [from, to) like the API's; a variable set to "All" expands to
`ALL_VALUE`, which turns its filter off.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from cxpulse.schemas.vocabulary import CONTACT_COLUMNS, SEGMENT_ATTRS

# The query module's own builders, imported rather than copied: one definition of each figure.
from cxpulse.sinks.alert_queries import ALERTS_WITH_SILENCES
from cxpulse.sinks.contact_queries import KPI_AGGREGATES, KPI_COUNT_COLUMNS, KPI_FINAL, KPI_RATIOS
from cxpulse.sinks.containment_queries import CONTAINMENT_AGGREGATES, containment_figures
from cxpulse.sinks.funnel_queries import funnel_steps, per_step_arrays
from cxpulse.sinks.query_sql import ratio

#: What a multi-value variable expands to when "All" is selected (Grafana inserts a custom
#: all-value verbatim, without the variable's format).
ALL_VALUE = "'__all'"

FROM = "$__fromTime_ms"
TO = "$__toTime_ms"
_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def ident(name: str) -> str:
    """A funnel, step or attribute name is spliced into SQL: allow identifiers only."""
    if not _NAME.match(name):
        raise ValueError(f"{name!r} is not a plain identifier")
    return name


def names_array(names: Sequence[str]) -> str:
    return "[" + ", ".join(f"'{ident(n)}'" for n in names) + "]"


def var_filter(expression: str, variable: str) -> str:
    """`expression` in the values selected for `variable`; always true for "All"."""
    values = f"${{{ident(variable)}:singlequote}}"
    return f"({ALL_VALUE} IN ({values}) OR {expression} IN ({values}))"


def segment_filters(map_column: str, attrs: Sequence[str] = SEGMENT_ATTRS) -> str:
    return " AND ".join(var_filter(f"{map_column}['{ident(a)}']", a) for a in attrs)


def _funnel_where(funnel: str) -> str:
    return (
        f"funnel = '{ident(funnel)}' AND entered_at >= {FROM} AND entered_at < {TO}\n"
        f"  AND {segment_filters('attrs')}"
    )


# -- self-service overview ---------------------------------------------------------------------


def step_table(funnel: str, steps: Sequence[str]) -> str:
    """One row per step, in funnel order: the API summary's per-step figures plus the drop-off
    rate (`queries.funnel_steps`)."""
    return funnel_steps(_funnel_where(funnel), names_array(steps), len(steps))


#: The columns of the step table panel.
STEP_TABLE_FIELDS = (
    "reached", "conversion_from_previous", "conversion_from_start", "dropped", "drop_off_rate",
    "escalated", "abandoned", "median_seconds_to_reach",
)  # fmt: skip


def funnel_step_fields(funnel: str, steps: Sequence[str], fields: Sequence[str]) -> str:
    """The step and some columns of `funnel_steps`, for bar charts."""
    columns = ", ".join(ident(f) for f in fields)
    return f"SELECT step, {columns} FROM (\n{step_table(funnel, steps)}\n)"


def _per_step_rates(steps: Sequence[str]) -> str:
    """Drop-off rate per step as one column per step, from `per_step_arrays`' arrays."""
    return ", ".join(
        f"{ratio(f'dropped[{k + 1}]', f'reached[{k + 1}]')} AS {ident(s)}"
        for k, s in enumerate(steps)
    )


def dropoff_series(funnel: str, steps: Sequence[str]) -> str:
    """Drop-off rate per step over time (the API timeseries' buckets, Grafana's interval)."""
    return f"""SELECT time, {_per_step_rates(steps)}
FROM (
SELECT $__timeInterval(entered_at) AS time, count() AS journeys, {per_step_arrays(len(steps))}
FROM journey_funnels FINAL
WHERE {_funnel_where(funnel)}
GROUP BY time
)
ORDER BY time"""


def breakdown(funnel: str, steps: Sequence[str]) -> str:
    """Drop-off rate per step (columns) by value of the `breakdown` attribute (rows): the API
    breakdown's groups, shown as a heatmap table."""
    return f"""SELECT value, journeys, {_per_step_rates(steps)}
FROM (
SELECT attrs[${{breakdown:singlequote}}] AS value, count() AS journeys,
    {per_step_arrays(len(steps))}
FROM journey_funnels FINAL
WHERE {_funnel_where(funnel)}
GROUP BY value
)
ORDER BY value"""


def containment(assisted_cost: float, self_service_cost: float, series: bool = False) -> str:
    """Containment, outcomes, cost to serve and savings of portal journeys started in range (the
    API containment's figures; `series`: per Grafana interval)."""
    bucket = "$__timeInterval(start_at) AS time, " if series else ""
    figures = containment_figures(repr(float(assisted_cost)), repr(float(self_service_cost)))
    return f"""SELECT {"time, " if series else ""}journeys, n_closed AS closed,
    self_served, escalated, abandoned, in_progress,
    {", ".join(f"{e} AS {n}" for n, e in figures.items())}
FROM (
SELECT {bucket}{CONTAINMENT_AGGREGATES}
FROM journeys FINAL
WHERE start_at >= {FROM} AND start_at < {TO}
  AND {segment_filters("attrs")}
{"GROUP BY time" if series else ""}
){" ORDER BY time" if series else ""}"""


# -- contact center ------------------------------------------------------------------------------

#: Every KPI column a panel may show: the query module's figures and counts.
KPI_EXPRESSIONS: dict[str, str] = {**KPI_RATIOS, **KPI_FINAL, **KPI_COUNT_COLUMNS}


def contact_kpis(fields: Sequence[str], group: str | None = None) -> str:
    """KPI columns of contacts started in range, filtered by the contact variables and the
    segment attributes. `group`: "time" (per Grafana interval) or "by" (per value of the `by`
    variable: queue, team, channel or shift)."""
    by_value = "map(" + ", ".join(f"'{c}', toString({c})" for c in CONTACT_COLUMNS) + ")"
    key, expression = {
        None: ("", ""),
        "time": ("time", "$__timeInterval(started_at)"),
        "by": ("value", by_value + "[${by:singlequote}]"),
    }[group]
    filters = " AND ".join(var_filter(c, c) for c in CONTACT_COLUMNS)
    columns = ", ".join(f"{KPI_EXPRESSIONS[f]} AS {ident(f)}" for f in fields)
    return f"""SELECT {key + ", " if key else ""}{columns}
FROM (
SELECT {expression + " AS " + key + ", " if key else ""}{KPI_AGGREGATES}
FROM contacts FINAL
WHERE started_at >= {FROM} AND started_at < {TO}
  AND {filters}
  AND {segment_filters("attrs")}
{f"GROUP BY {key}" if key else ""}
){f" ORDER BY {key}" if key else ""}"""


# -- every dashboard --------------------------------------------------------------------------


def freshness() -> str:
    """Wall clock minus the newest stored event time of the stalest partition, as the API's
    `freshness_seconds` (null before any data)."""
    return (
        "SELECT if(count() = 0, NULL,\n"
        "    dateDiff('millisecond', min(newest_event_at), now64(3)) / 1000) AS freshness_seconds\n"
        "FROM freshness FINAL"
    )


def variable_values(table: str, expression: str, time_column: str) -> str:
    """Values of a template variable: those seen in the time range."""
    return (
        f"SELECT DISTINCT {expression} AS value FROM {table}\n"
        f"WHERE $__timeFilter({time_column}) AND {expression} != ''\nORDER BY value"
    )


# -- on-call ---------------------------------------------------------------------------------------

_SEGMENT_TEXT = (
    "arrayStringConcat(arrayMap((k, v) -> concat(k, '=', v), mapKeys(segment), "
    "mapValues(segment)), ', ')"
)


def _alert_filters() -> str:
    return var_filter("rule", "rule") + " AND " + segment_filters("segment")


def alerts_firing() -> str:
    """Firing alerts (whatever the time range: they fire now), with their step and segment."""
    return f"""SELECT a.id AS id, rule, funnel, step, {_SEGMENT_TEXT} AS segment_text,
    current_rate, baseline_rate, {ratio("current_rate", "baseline_rate")} AS rise,
    window_journeys, z, started_at, if(s.id = '', NULL, s.silenced_until) AS silenced_until
FROM {ALERTS_WITH_SILENCES}
WHERE state = 'firing' AND {_alert_filters()}
ORDER BY started_at DESC, id"""


def alerts_history() -> str:
    """Alerts active at some time in range, as the API's `GET /v1/alerts?start&end`."""
    return f"""SELECT id, rule, state, funnel, step, {_SEGMENT_TEXT} AS segment_text,
    current_rate, baseline_rate, window_journeys, z, started_at, resolved_at
FROM alerts FINAL
WHERE (resolved_at IS NULL OR resolved_at >= {FROM}) AND started_at < {TO}
  AND {_alert_filters()}
ORDER BY started_at DESC, id"""


def alert_annotations() -> str:
    """Alert history as annotations: a region from firing to resolution."""
    return f"""SELECT started_at AS time, ifNull(resolved_at, now64(3)) AS timeEnd,
    concat(rule, if(step = '', '', concat(' at ', step)),
        if(empty(segment), '', concat(' (', {_SEGMENT_TEXT}, ')'))) AS title,
    concat('current ', toString(round(current_rate, 4)), ' vs baseline ',
        toString(round(baseline_rate, 4)), ', z ', toString(round(z, 2)),
        ', ', toString(window_journeys), ' in window') AS text,
    CAST([rule, state], 'Array(String)') AS tags
FROM alerts FINAL
WHERE $__timeFilter(started_at) AND {_alert_filters()}
ORDER BY time"""
