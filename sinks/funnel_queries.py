"""Every funnel figure, aggregated at query time from the latest snapshot versions.

The one place the API and the dashboards get their numbers from: counts and sums over
`journey_funnels FINAL` (deleted identities excluded), ratios computed in SQL from those counts
(null when the denominator is 0), medians as ClickHouse's exact lower median. Python only casts
and shapes what SQL returns.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from cxpulse.schemas.vocabulary import OUTCOMES
from cxpulse.sinks.query_sql import (
    ATTR_NAME,
    QueryError,
    as_float,
    range_and_attrs,
    ratio,
    time_bucket,
)
from cxpulse.sinks.store import Store


def _where(
    funnel: str, start_ms: int, end_ms: int, filters: Mapping[str, str]
) -> tuple[str, dict[str, Any]]:
    clauses, params = range_and_attrs("entered_at", start_ms, end_ms, filters)
    params["funnel"] = funnel
    return " AND ".join(["funnel = {funnel:String}", *clauses]), params


def step_columns(steps: int) -> str:
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


def per_step_arrays(steps: int) -> str:
    """Reached and dropped per step as two arrays (series and breakdown rows)."""
    reached = ", ".join(f"countIf(reach_ms[{k + 1}] IS NOT NULL)" for k in range(steps))
    dropped = ", ".join(f"countIf(dropped_step = {k})" for k in range(steps))
    return f"[{reached}] AS reached, [{dropped}] AS dropped"


def outcome_columns(prefix: str = "") -> str:
    return ", ".join(f"countIf(outcome = '{o}') AS {prefix}{o}" for o in OUTCOMES)


def funnel_steps(where: str, names: str, steps: int) -> str:
    """One row per step of the journeys in `journey_funnels FINAL` matching `where`, in funnel
    order: reached, conversion from the previous step (step 1: from itself) and from the start,
    dropped, drop-off rate (dropped / reached), escalated, abandoned and the median time to
    reach the step; each row also carries the journeys and their outcomes (`outcome_*`: the
    per-step escalated and abandoned are other figures). The API's summary
    and the dashboards' step tables are this query, `where` bound or Grafana's macros; `names`
    is an SQL array of the step names."""
    n = steps

    def array(prefix: str) -> str:
        return "[" + ", ".join(f"{prefix}_{k}" for k in range(n)) + "]"

    previous = ", ".join(f"reached_{max(k - 1, 0)}" for k in range(n))
    return f"""SELECT step, reached,
    {ratio("reached", "previous")} AS conversion_from_previous,
    {ratio("reached", "reached_0")} AS conversion_from_start,
    dropped, {ratio("dropped", "reached")} AS drop_off_rate, escalated, abandoned,
    if(reached = 0, NULL, median_ms / 1000) AS median_seconds_to_reach,
    journeys, {", ".join(f"outcome_{o}" for o in OUTCOMES)}
FROM (
SELECT count() AS journeys, {outcome_columns("outcome_")},
    {step_columns(n)}
FROM journey_funnels FINAL
WHERE {where}
)
ARRAY JOIN {names} AS step, {array("reached")} AS reached, [{previous}] AS previous,
    {array("dropped")} AS dropped, {array("escalated")} AS escalated,
    {array("abandoned")} AS abandoned, {array("median")} AS median_ms"""


#: The per-step figures of `funnel_steps` the API's summary gives, in its order, with their
#: types.
STEP_FIGURES: dict[str, Callable[[Any], Any]] = {
    "step": str, "reached": int, "conversion_from_previous": as_float,
    "conversion_from_start": as_float, "dropped": int, "escalated": int, "abandoned": int,
    "median_seconds_to_reach": as_float,
}  # fmt: skip


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
    params.update({f"step{k}": name for k, name in enumerate(steps)})
    names = "[" + ", ".join(f"{{step{k}:String}}" for k in range(len(steps))) + "]"
    rows = store.query(funnel_steps(where, names, len(steps)), params)
    return {
        "funnel": funnel,
        "start": start_ms,
        "end": end_ms,
        "journeys": int(rows[0]["journeys"]),
        "outcomes": {o: int(rows[0][f"outcome_{o}"]) for o in OUTCOMES},
        "steps": [{name: cast(row[name]) for name, cast in STEP_FIGURES.items()} for row in rows],
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
    where, params = _where(funnel, start_ms, end_ms, filters or {})
    bucket, group = time_bucket("entered_at", interval_s, params)
    sql = (
        f"SELECT {bucket}count() AS journeys, {per_step_arrays(len(steps))}\n"
        f"FROM journey_funnels FINAL\nWHERE {where}\n{group} ORDER BY bucket_ms"
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
    if not ATTR_NAME.match(by):
        raise QueryError(f"{by!r} is not a segment attribute name")
    where, params = _where(funnel, start_ms, end_ms, filters or {})
    params["by"] = by
    sql = (
        f"SELECT attrs[{{by:String}}] AS value, count() AS journeys, {outcome_columns()},\n"
        f"    {per_step_arrays(len(steps))}\n"
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
        "toUnixTimestamp64Milli(watermark_at) AS watermark_ms, "
        "toUnixTimestamp64Milli(updated_at) AS updated_ms FROM freshness FINAL "
        "ORDER BY partition"
    )
    return [{k: int(v) for k, v in row.items()} for row in rows]
