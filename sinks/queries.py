"""Every funnel figure, aggregated at query time from the latest snapshot versions.

The one place the API and the dashboards get their numbers from: counts and sums over
`journey_funnels FINAL` (deleted identities excluded), ratios computed from those counts (null
when the denominator is 0), medians as ClickHouse's exact lower median. SQL text is built only
from the funnel definition (step counts) and fixed fragments; every value a caller supplies is
a bound parameter.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from cxpulse.sinks.store import Store, ch_time

OUTCOMES = ("self_served", "escalated", "abandoned", "in_progress")
_ATTR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


class QueryError(ValueError):
    """A request the query module refuses (an unusable filter, an empty range)."""


def _ratio(numerator: float, denominator: float) -> float | None:
    return None if denominator == 0 else numerator / denominator


def _where(
    funnel: str, start_ms: int, end_ms: int, filters: Mapping[str, str]
) -> tuple[str, dict[str, Any]]:
    if end_ms <= start_ms:
        raise QueryError("end must be after start")
    clauses = [
        "funnel = {funnel:String}",
        "entered_at >= {start:DateTime64(3, 'UTC')}",
        "entered_at < {end:DateTime64(3, 'UTC')}",
    ]
    params: dict[str, Any] = {"funnel": funnel, "start": ch_time(start_ms), "end": ch_time(end_ms)}
    for index, (name, value) in enumerate(sorted(filters.items())):
        if not _ATTR_NAME.match(name):
            raise QueryError(f"{name!r} is not a segment attribute name")
        clauses.append(f"attrs[{{an{index}:String}}] = {{av{index}:String}}")
        params[f"an{index}"] = name
        params[f"av{index}"] = value
    return " AND ".join(clauses), params


def _step_columns(steps: int) -> str:
    parts = []
    for k in range(steps):
        i = k + 1  # ClickHouse arrays are 1-based
        parts += [
            f"countIf(reach_ms[{i}] IS NOT NULL) AS reached_{k}",
            f"countIf(dropped_step = {k}) AS dropped_{k}",
            f"countIf(escalated_step = {k}) AS escalated_{k}",
            f"countIf(abandoned_step = {k}) AS abandoned_{k}",
            f"quantileExactLowIf(0.5)(reach_ms[{i}], reach_ms[{i}] IS NOT NULL) AS median_{k}",
        ]
    return ",\n    ".join(parts)


def _per_step_arrays(steps: int) -> str:
    """Reached and dropped per step as two arrays (series and breakdown rows)."""
    reached = ", ".join(f"countIf(reach_ms[{k + 1}] IS NOT NULL)" for k in range(steps))
    dropped = ", ".join(f"countIf(dropped_step = {k})" for k in range(steps))
    return f"[{reached}] AS reached, [{dropped}] AS dropped"


def _outcome_columns() -> str:
    return ", ".join(f"countIf(outcome = '{o}') AS {o}" for o in OUTCOMES)


def funnel_summary(
    store: Store,
    funnel: str,
    steps: Sequence[str],
    start_ms: int,
    end_ms: int,
    filters: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Journeys that entered the funnel in [start, end), by outcome and by step."""
    where, params = _where(funnel, start_ms, end_ms, filters or {})
    sql = (
        f"SELECT count() AS journeys, {_outcome_columns()},\n    {_step_columns(len(steps))}\n"
        f"FROM journey_funnels FINAL\nWHERE {where}"
    )
    row = store.query(sql, params)[0]
    reached = [int(row[f"reached_{k}"]) for k in range(len(steps))]
    result_steps = []
    for k, name in enumerate(steps):
        median = row[f"median_{k}"]
        result_steps.append(
            {
                "step": name,
                "reached": reached[k],
                "conversion_from_previous": _ratio(reached[k], reached[k - 1] if k else reached[0]),
                "conversion_from_start": _ratio(reached[k], reached[0]),
                "dropped": int(row[f"dropped_{k}"]),
                "escalated": int(row[f"escalated_{k}"]),
                "abandoned": int(row[f"abandoned_{k}"]),
                "median_seconds_to_reach": None if reached[k] == 0 else int(median) / 1000,
            }
        )
    return {
        "funnel": funnel,
        "start": start_ms,
        "end": end_ms,
        "journeys": int(row["journeys"]),
        "outcomes": {o: int(row[o]) for o in OUTCOMES},
        "steps": result_steps,
    }


def funnel_timeseries(
    store: Store,
    funnel: str,
    steps: Sequence[str],
    start_ms: int,
    end_ms: int,
    interval_s: int,
    filters: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Per time bucket (of entry into the funnel): journeys, reached and dropped per step."""
    if interval_s < 60 or interval_s % 60:
        raise QueryError("interval must be a whole number of minutes")
    where, params = _where(funnel, start_ms, end_ms, filters or {})
    params["interval"] = interval_s
    sql = (
        "SELECT toUnixTimestamp(toStartOfInterval(entered_at, "
        "toIntervalSecond({interval:UInt32}))) * 1000 AS bucket_ms,\n"
        f"    count() AS journeys, {_per_step_arrays(len(steps))}\n"
        f"FROM journey_funnels FINAL\nWHERE {where}\nGROUP BY bucket_ms ORDER BY bucket_ms"
    )
    return [
        {
            "bucket_ms": int(r["bucket_ms"]),
            "journeys": int(r["journeys"]),
            "reached": [int(x) for x in r["reached"]],
            "dropped": [int(x) for x in r["dropped"]],
        }
        for r in store.query(sql, params)
    ]


def funnel_breakdown(
    store: Store,
    funnel: str,
    steps: Sequence[str],
    by: str,
    start_ms: int,
    end_ms: int,
    filters: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Per value of one segment attribute: journeys, outcomes, reached and dropped per step."""
    if not _ATTR_NAME.match(by):
        raise QueryError(f"{by!r} is not a segment attribute name")
    where, params = _where(funnel, start_ms, end_ms, filters or {})
    params["by"] = by
    sql = (
        f"SELECT attrs[{{by:String}}] AS value, count() AS journeys, {_outcome_columns()},\n"
        f"    {_per_step_arrays(len(steps))}\n"
        f"FROM journey_funnels FINAL\nWHERE {where}\nGROUP BY value ORDER BY value"
    )
    return [
        {
            "value": r["value"],
            "journeys": int(r["journeys"]),
            "outcomes": {o: int(r[o]) for o in OUTCOMES},
            "reached": [int(x) for x in r["reached"]],
            "dropped": [int(x) for x in r["dropped"]],
        }
        for r in store.query(sql, params)
    ]


def freshness(store: Store) -> list[dict[str, Any]]:
    """Per keyed partition: the newest event time processed and stored, and the watermark."""
    rows = store.query(
        "SELECT partition, toUnixTimestamp64Milli(newest_event_at) AS newest_ms, "
        "toUnixTimestamp64Milli(watermark_at) AS watermark_ms FROM freshness FINAL "
        "ORDER BY partition"
    )
    return [{k: int(v) for k, v in row.items()} for row in rows]
