"""Self-service containment, cost to serve and savings (design section 4) of portal journeys,
defined once as SQL over counts of `journeys FINAL`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cxpulse.schemas.vocabulary import OUTCOMES
from cxpulse.sinks.funnel_queries import outcome_columns
from cxpulse.sinks.query_sql import as_float, range_and_attrs, ratio, time_bucket
from cxpulse.sinks.store import Store

#: Portal journeys by outcome, and the closed ones that containment and cost to serve count.
CONTAINMENT_AGGREGATES = (
    f"count() AS journeys, countIf(closed = 1) AS n_closed, {outcome_columns()},\n"
    "    countIf(closed = 1 AND outcome = 'self_served') AS closed_self_served,\n"
    "    countIf(closed = 1 AND outcome = 'escalated') AS closed_escalated"
)


def containment_figures(assisted_cost: str, self_service_cost: str) -> dict[str, str]:
    """Containment, cost to serve and savings (design section 4) over `CONTAINMENT_AGGREGATES`;
    the costs are SQL (a bound parameter, or a literal in a dashboard)."""
    return {
        "containment_rate": ratio("closed_self_served", "n_closed"),
        "cost_to_serve": f"closed_escalated * {assisted_cost} "
        f"+ closed_self_served * {self_service_cost}",
        "savings": f"closed_self_served * ({assisted_cost} - {self_service_cost})",
    }


def containment(
    store: Store,
    start_ms: int,
    end_ms: int,
    *,
    assisted_cost: float = 7.00,
    self_service_cost: float = 0.10,
    filters: Mapping[str, str] | None = None,
    interval_s: int | None = None,
) -> list[dict[str, Any]]:
    """Self-service containment of portal journeys started in [start, end): one entry, or one
    per `interval_s` bucket. Outcome counts cover all journeys; containment, cost to serve,
    savings and TTR only closed ones."""
    clauses, params = range_and_attrs("start_at", start_ms, end_ms, filters or {})
    params.update(assisted=float(assisted_cost), self_service=float(self_service_cost))
    bucket, group = time_bucket("start_at", interval_s, params)
    figures = containment_figures("{assisted:Float64}", "{self_service:Float64}")
    sql = f"""
SELECT {"bucket_ms, " if bucket else ""}journeys, n_closed AS closed, {", ".join(OUTCOMES)},
    {", ".join(f"{e} AS {n}" for n, e in figures.items())},
    {ratio("ifNull(ttr_sum_ms, 0)", "(ttr_n * 1000)")} AS ttr_mean_seconds,
    if(ttr_n = 0, NULL, ttr_median_ms / 1000) AS ttr_median_seconds
FROM (
SELECT {bucket}{CONTAINMENT_AGGREGATES},
    countIf(closed = 1 AND ttr_ms IS NOT NULL) AS ttr_n,
    sumIf(ttr_ms, closed = 1) AS ttr_sum_ms,
    quantileExactLowIf(0.5)(ttr_ms, closed = 1 AND ttr_ms IS NOT NULL) AS ttr_median_ms
FROM journeys FINAL
WHERE {" AND ".join(clauses)}
{group}
){" ORDER BY bucket_ms" if bucket else ""}"""
    counts = ("journeys", "closed", *OUTCOMES)
    floats = (*figures, "ttr_mean_seconds", "ttr_median_seconds")
    return [
        {
            **({"bucket_ms": int(row["bucket_ms"])} if "bucket_ms" in row else {}),
            **{name: int(row[name]) for name in counts},
            **{name: as_float(row[name]) for name in floats},
        }
        for row in store.query(sql, params)
    ]
