"""The counts behind change impact and experiment comparison (design section 4b), as SQL.

The statistics are computed from these counts by `schemas.stats` in the API and by
`sinks.stats_sql` in the dashboards; both read the counts from the builders here, so a panel and
the API can only differ in how they compare the same numbers. The impact window L is defined here
once, in SQL, from the change time, the requested window and "now" (bound by the API, Grafana's
`now64()` in a panel), and comes back with the counts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from cxpulse.sinks.containment_queries import containment_figures
from cxpulse.sinks.funnel_queries import per_step_arrays
from cxpulse.sinks.query_sql import ATTR_NAME, QueryError, range_and_attrs, ratio
from cxpulse.sinks.store import Store

MINUTE_MS = 60_000
#: The outcomes an impact compares, in response order.
IMPACT_OUTCOMES = ("self_served", "escalated")


def impact_length(at_ms: str, window_ms: str, now_ms: str) -> str:
    """L in ms: the window once at + window has passed, else now - at truncated to whole
    minutes (never negative: a change in the future has an empty window)."""
    return (
        f"if(({at_ms}) + ({window_ms}) <= ({now_ms}), ({window_ms}), "
        f"intDiv(greatest(({now_ms}) - ({at_ms}), 0), {MINUTE_MS}) * {MINUTE_MS})"
    )


def _period_counts(period: str, condition: str, steps: int) -> str:
    reached = ", ".join(
        f"countIf({condition} AND reach_ms[{k + 1}] IS NOT NULL)" for k in range(steps)
    )
    outcomes = ", ".join(
        f"countIf({condition} AND outcome = '{o}') AS {period}_{o}" for o in IMPACT_OUTCOMES
    )
    return f"countIf({condition}) AS {period}_journeys, [{reached}] AS {period}_reached, {outcomes}"


def impact_counts(
    funnel: str,
    steps: int,
    where: str,
    times: tuple[str, str, str],
    costs: tuple[str, str],
) -> str:
    """One row for one funnel (always, even with no journeys): L (`length_ms`), then per period
    (before = [at - L, at), after = [at, at + L) of the step-1 time) the journeys, reached per step
    and the self-served and escalated journeys; and what the change added: escalations and
    self-served journeys ((after rate - before rate) x after journeys, null while a period is
    empty), priced as cost to serve prices closed journeys (`cost_delta`).

    `funnel` (named `impact_funnel`: a `funnel` alias would shadow the column in WHERE) and
    `where` are SQL (bound or literal), `times` = (at, window, now) in ms as SQL,
    `costs` = (assisted, self-service) as SQL."""
    at_ms, window_ms, now_ms = times
    entered = "toUnixTimestamp64Milli(entered_at)"
    added = {
        o: f"({ratio(f'after_{o}', 'after_journeys')} - {ratio(f'before_{o}', 'before_journeys')})"
        " * after_journeys"
        for o in IMPACT_OUTCOMES
    }
    # The cost-to-serve rule, applied to the added journeys instead of the closed ones.
    cost = containment_figures(*costs)["cost_to_serve"]
    return f"""SELECT *, {cost} AS cost_delta
FROM (
SELECT *, {added["escalated"]} AS closed_escalated, {added["self_served"]} AS closed_self_served
FROM (
WITH {at_ms} AS at_ms, {impact_length("at_ms", window_ms, now_ms)} AS length_ms
SELECT {funnel} AS impact_funnel, length_ms,
    {_period_counts("before", f"{entered} < at_ms", steps)},
    {_period_counts("after", f"{entered} >= at_ms", steps)}
FROM journey_funnels FINAL
WHERE funnel = {funnel} AND {where}
  AND {entered} >= at_ms - length_ms AND {entered} < at_ms + length_ms
)
)"""


def impact(
    store: Store,
    funnels: Mapping[str, Sequence[str]],
    at_ms: int,
    window_ms: int,
    now_ms: int,
    filters: Mapping[str, str],
    costs: tuple[float, float],
) -> list[dict[str, Any]]:
    """Per funnel (name -> step names), in the given order: the counts of `impact_counts` over
    that funnel's steps, and the added escalations, self-served and their cost."""
    # L is at most the window: the widest range the periods can cover, with the filters.
    clauses, params = range_and_attrs("entered_at", at_ms - window_ms, at_ms + window_ms, filters)
    params.update(at=at_ms, window=window_ms, now=now_ms, assisted=costs[0], self_service=costs[1])
    times = ("{at:Int64}", "{window:Int64}", "{now:Int64}")
    prices = ("{assisted:Float64}", "{self_service:Float64}")
    parts = []
    for index, (name, steps) in enumerate(funnels.items()):
        params[f"f{index}"] = name
        sql = impact_counts(
            f"{{f{index}:String}}", len(steps), " AND ".join(clauses), times, prices
        )
        parts.append(f"SELECT {index} AS position, * FROM (\n{sql}\n)")
    union = "\nUNION ALL\n".join(parts)
    rows = store.query(f"SELECT * FROM (\n{union}\n)\nORDER BY position", params)
    return [_impact_row(row) for row in rows]


def _impact_row(row: Mapping[str, Any]) -> dict[str, Any]:
    counts = {
        f"{period}_{name}": int(row[f"{period}_{name}"])
        for period in ("before", "after")
        for name in ("journeys", *IMPACT_OUTCOMES)
    }
    floats = ("closed_escalated", "closed_self_served", "cost_delta")
    escalated, self_served, cost = (None if row[f] is None else float(row[f]) for f in floats)
    return {
        "funnel": row["impact_funnel"],
        "length_ms": int(row["length_ms"]),
        **counts,
        "before_reached": [int(x) for x in row["before_reached"]],
        "after_reached": [int(x) for x in row["after_reached"]],
        "escalations_added": escalated,
        "self_served_added": self_served,
        "cost_delta": cost,
    }


def compare_counts(where: str, by: str, steps: int) -> str:
    """Per value of the attribute `by` (SQL) among the journeys in `where` that have it, sorted by
    value: journeys and reached (and dropped) per step."""
    return f"""SELECT attrs[{by}] AS value, count() AS journeys, {per_step_arrays(steps)}
FROM journey_funnels FINAL
WHERE {where} AND mapContains(attrs, {by})
GROUP BY value
ORDER BY value"""


def compare(
    store: Store,
    funnel: str,
    steps: int,
    by: str,
    start_ms: int,
    end_ms: int,
    filters: Mapping[str, str],
) -> list[dict[str, Any]]:
    """`compare_counts` of one funnel's journeys that entered it in [start, end)."""
    if not ATTR_NAME.match(by):
        raise QueryError(f"{by!r} is not a segment attribute name")
    clauses, params = range_and_attrs("entered_at", start_ms, end_ms, filters)
    params.update(funnel=funnel, by=by)
    where = " AND ".join(["funnel = {funnel:String}", *clauses])
    return [
        {
            "value": row["value"],
            "journeys": int(row["journeys"]),
            "reached": [int(x) for x in row["reached"]],
        }
        for row in store.query(compare_counts(where, "{by:String}", steps), params)
    ]
