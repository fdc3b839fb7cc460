"""Drop-off drivers (design section 4b): which segment values and which event facts (driver
kinds) drop off at a funnel step significantly more than the rest of the journeys there.

One counts query (`driver_counts`) serves the API, whose statistics are `schemas.stats` over
its counts (`rank`), and the on-call panel, whose statistics are `driver_figures`: the same
section 4b terms in SQL (`sinks.stats_sql`), so the two can only differ in how a range and a
filter arrive. `top_drivers` and `drivers_text` are what the drop-off alert shows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from cxpulse.schemas.stats import MIN_N, bonferroni, compare, rate, significant
from cxpulse.schemas.vocabulary import SEGMENT_ATTRS
from cxpulse.sinks.alert_queries import segments_join
from cxpulse.sinks.query_sql import QueryError, range_and_attrs
from cxpulse.sinks.stats_sql import adjusted_sql, comparison_sql, rate_sql, significant_sql
from cxpulse.sinks.store import Store

#: The kind of a segment-attribute driver; the other kinds are the journeys' stored facts.
ATTR = "attr"
_SEGMENTS = "[" + ", ".join(f"'{a}'" for a in SEGMENT_ATTRS) + "]"
#: Every (kind, attr, value) a journey is a candidate of: ('', '', '') for the whole population,
#: ('attr', name, value) per segment attribute, and its facts (migration 0008).
CANDIDATES = (
    f"arrayConcat(arrayMap(s -> (if(s.1 = '', '', '{ATTR}'), s.1, s.2), "
    f"{segments_join(_SEGMENTS)}), facts)"
)


def driver_counts(where: str, index: str) -> str:
    """Per candidate (kind, attr, value): the journeys of the population (closed journeys of
    `journey_funnels FINAL` matching `where` that reached the step before the one at the 0-based
    `index`) and how many of them did not reach it; kind '' is the whole population. `where`
    and `index` are SQL: bound parameters for the API, Grafana's macros for the panel."""
    return f"""SELECT d.1 AS kind, d.2 AS attr, d.3 AS value,
    count() AS journeys, countIf(dropped) AS dropped
FROM (
    SELECT attrs, facts, reach_ms[{index} + 1] IS NULL AS dropped
    FROM journey_funnels FINAL
    WHERE {where} AND outcome != 'in_progress' AND reach_ms[{index}] IS NOT NULL
)
ARRAY JOIN {CANDIDATES} AS d
GROUP BY kind, attr, value"""


#: How drivers are ranked: by excess drop-offs (unknown last), then attr, value and kind.
ORDER = "excess DESC NULLS LAST, attr, value, kind"


def driver_figures(counts: str) -> str:
    """Each tested candidate of `counts` (a `driver_counts` query: those with at least `MIN_N`
    journeys) against the rest of the population, with the section 4b statistics, ranked."""
    stats = comparison_sql("xa", "na", "xb", "nb")
    return f"""SELECT kind, attr, value, na AS journeys, xa AS dropped,
    {rate_sql("xa", "na")} AS rate, {rate_sql("xb", "nb")} AS rate_rest,
    if(rate_rest = 0, NULL, rate / rate_rest) AS lift, (rate - rate_rest) * na AS excess,
    {stats["z"]} AS z, {stats["p_value"]} AS p_value,
    {adjusted_sql("p_value", "m")} AS p_adjusted, {significant_sql("p_adjusted")} AS significant
FROM (
    SELECT *, count() OVER () AS m
    FROM (
        SELECT kind, attr, value, journeys AS na, dropped AS xa,
            sumIf(journeys, kind = '') OVER () - journeys AS nb,
            sumIf(dropped, kind = '') OVER () - dropped AS xb
        FROM ({counts})
    )
    WHERE kind != '' AND na >= {MIN_N}
)
ORDER BY {ORDER}"""


def rank(counts: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The population, its drop-off and the ranked drivers from the rows of `driver_counts`: the
    statistics of `driver_figures` in Python (`schemas.stats`), term by term."""
    overall = [c for c in counts if c["kind"] == ""]
    population = int(overall[0]["journeys"]) if overall else 0
    dropped = int(overall[0]["dropped"]) if overall else 0
    tested = [c for c in counts if c["kind"] != "" and int(c["journeys"]) >= MIN_N]
    drivers = []
    for c in tested:
        na, xa = int(c["journeys"]), int(c["dropped"])
        nb, xb = population - na, dropped - xa
        comparison = compare(xa, na, xb, nb)
        ra, rb = rate(xa, na), rate(xb, nb)
        p_adjusted = bonferroni(comparison.p_value, len(tested))
        drivers.append(
            {
                "kind": c["kind"],
                "attr": c["attr"],
                "value": c["value"],
                "journeys": na,
                "dropped": xa,
                "rate": ra,
                "rate_rest": rb,
                "lift": None if not rb or ra is None else ra / rb,
                "excess": None if comparison.diff is None else comparison.diff * na,
                "z": comparison.z,
                "p_value": comparison.p_value,
                "p_adjusted": p_adjusted,
                "significant": significant(p_adjusted),
            }
        )
    drivers.sort(key=lambda d: (d["attr"], d["value"], d["kind"]))
    drivers.sort(key=lambda d: (d["excess"] is None, -(d["excess"] or 0.0)))
    return {
        "population": population,
        "dropped": dropped,
        "rate": rate(dropped, population),
        "drivers": drivers,
    }


def drivers(
    store: Store,
    funnel: str,
    index: int,
    start_ms: int,
    end_ms: int,
    filters: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Drop-off drivers at the step at 0-based `index` (>= 1: step 1 has no drop-off) of the
    journeys that entered `funnel` in [start, end) and match `filters`."""
    if index < 1:
        raise QueryError("the first step has no drop-off: drivers are of step 2 or later")
    clauses, params = range_and_attrs("entered_at", start_ms, end_ms, filters or {})
    params.update(funnel=funnel, index=index)
    where = " AND ".join(["funnel = {funnel:String}", *clauses])
    return rank(store.query(driver_counts(where, "{index:UInt32}"), params))


def top_drivers(
    store: Store,
    funnel: str,
    index: int,
    start_ms: int,
    end_ms: int,
    limit: int,
    filters: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """The first `limit` drivers that drop off significantly more than the rest (what an alert
    on the step shows)."""
    ranked = drivers(store, funnel, index, start_ms, end_ms, filters)["drivers"]
    return [d for d in ranked if above_rest(d)][:limit]


def alert_drivers(
    store: Store, alert: Mapping[str, Any], steps: Sequence[str], lookback_ms: int, limit: int
) -> list[dict[str, Any]]:
    """The top drivers of a drop-off alert (as the evaluator builds it: funnel, step, segment,
    started_ms): within the alert's segment, over the journeys that entered the funnel in the
    `lookback_ms` before it started firing (closed ones only, so the lookback must reach past the
    journey gap)."""
    started = int(alert["started_ms"])
    index = list(steps).index(alert["step"])
    segment = alert["segment"] or {}
    return top_drivers(
        store, alert["funnel"], index, started - lookback_ms, started, limit, segment
    )


def above_rest(driver: Mapping[str, Any]) -> bool:
    """Whether a ranked driver drops off significantly more than the rest (not merely
    differently: a value that drops off significantly less is no cause)."""
    return bool(driver["significant"]) and driver["excess"] > 0


def drivers_text(top: Sequence[Mapping[str, Any]]) -> str:
    """One line for an alert's annotation: `device=mobile 62.0% vs 31.0% (+45.2 journeys); ...`
    ('' without drivers); a fact is named by its kind (`eligibility_reason:reason=...`)."""
    parts = []
    for d in top:
        name = f"{d['attr']}={d['value']}"
        if d["kind"] != ATTR:
            name = f"{d['kind']}:{name}"
        parts.append(
            f"{name} {d['rate']:.1%} vs {d['rate_rest']:.1%} (+{d['excess']:.1f} journeys)"
        )
    return "; ".join(parts)
