"""Contact-center KPIs (design section 4), defined once as SQL over counts and sums of
`contacts FINAL`: the API, the dashboards and the reports all read `KPI_RATIOS`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cxpulse.schemas.vocabulary import CONTACT_COLUMNS
from cxpulse.sinks.query_sql import QueryError, as_float, range_and_attrs, ratio, time_bucket
from cxpulse.sinks.store import Store

KPI_COUNTS = (
    "queued", "answered", "abandoned", "short_abandoned", "answered_within_sl", "transferred",
    "ivr_contained", "resolved", "first_contact_resolved",
)  # fmt: skip


#: A contact the service level counts (its denominator): answered, or abandoned after the
#: short-abandon threshold. The KPI and the service-level alert rule both use this predicate.
IN_SERVICE_LEVEL = "answered = 1 OR (abandoned = 1 AND short_abandoned = 0)"

# Aliases must not shadow the columns that later conditions read (answered = 1 ...).
KPI_AGGREGATES = (
    "count() AS contacts, "
    + ", ".join(f"sum({flag}) AS n_{flag}" for flag in KPI_COUNTS)
    + f""",
    countIf({IN_SERVICE_LEVEL}) AS sl_offered,
    sumIf(wait_ms, answered = 1) AS wait_answered_ms,
    countIf(answered = 1 AND handle_ms IS NOT NULL) AS handled,
    sumIf(handle_ms, answered = 1) AS handle_sum_ms,
    countIf(ivr_outcome != '') AS ivr_contacts,
    countIf(ivr_outcome = 'zero_out') AS zero_out,
    minIf(fcr_final, resolved = 1) AS fcr_final_min, countIf(resolved = 1) AS resolved_n,
    minIf(ivr_final, ivr_outcome != '') AS ivr_final_min,
    count(csat) AS csat_responses, countIf(csat >= 4) AS satisfied,
    count(nps) AS nps_responses, countIf(nps >= 9) AS promoters, countIf(nps <= 6) AS detractors,
    count(ces) AS ces_responses, sum(ces) AS ces_sum"""
)


#: Every contact-center KPI (design section 4) as SQL over `KPI_AGGREGATES`: the one definition
#: the API, the dashboards and the reports read.
KPI_RATIOS: dict[str, str] = {
    "service_level": ratio("n_answered_within_sl", "sl_offered"),
    "asa_seconds": ratio("ifNull(wait_answered_ms, 0)", "(n_answered * 1000)"),
    "abandonment_rate": ratio("n_abandoned", "n_queued"),
    "aht_seconds": ratio("ifNull(handle_sum_ms, 0)", "(handled * 1000)"),
    "transfer_rate": ratio("n_transferred", "n_answered"),
    "ivr_containment_rate": ratio("n_ivr_contained", "ivr_contacts"),
    "zero_out_rate": ratio("zero_out", "ivr_contacts"),
    "fcr_rate": ratio("n_first_contact_resolved", "n_resolved"),
    "csat": ratio("satisfied", "csat_responses"),
    "nps": ratio("100 * (toInt64(promoters) - toInt64(detractors))", "nps_responses"),
    "ces": ratio("ifNull(ces_sum, 0)", "ces_responses"),
}
#: Whether FCR and IVR containment are final: every counted contact's follow-up window passed.
KPI_FINAL: dict[str, str] = {
    "fcr_final": "toUInt8(resolved_n = 0 OR fcr_final_min = 1)",
    "ivr_final": "toUInt8(ivr_contacts = 0 OR ivr_final_min = 1)",
}
#: The counts behind the KPIs, by the name the API gives them: their `KPI_AGGREGATES` alias.
KPI_COUNT_COLUMNS: dict[str, str] = {
    "contacts": "contacts",
    **{flag: f"n_{flag}" for flag in KPI_COUNTS},
    **{name: name for name in ("handled", "ivr_contacts", "zero_out", "csat_responses",
                               "nps_responses", "ces_responses")},
}  # fmt: skip


def contact_kpis(
    store: Store,
    start_ms: int,
    end_ms: int,
    filters: Mapping[str, str] | None = None,
    interval_s: int | None = None,
) -> list[dict[str, Any]]:
    """Contact-center KPIs of contacts started in [start, end), from counts and sums: one entry,
    or one per `interval_s` bucket (each with `bucket_ms`).

    `filters` may name queue, team, channel and shift. FCR and IVR containment are provisional
    until every counted contact's follow-up window has passed: `fcr_final` / `ivr_final` say so.
    """
    clauses, params = range_and_attrs("started_at", start_ms, end_ms, {})
    for name, value in sorted((filters or {}).items()):
        if name not in CONTACT_COLUMNS:
            raise QueryError(f"contacts can be filtered by {', '.join(CONTACT_COLUMNS)}")
        clauses.append(f"{name} = {{{name}:String}}")
        params[name] = value
    bucket, group = time_bucket("started_at", interval_s, params)
    figures = {**KPI_RATIOS, **KPI_FINAL, **{f"count_{n}": c for n, c in KPI_COUNT_COLUMNS.items()}}
    sql = f"""
SELECT {"bucket_ms, " if bucket else ""}{", ".join(f"{e} AS {n}" for n, e in figures.items())}
FROM (
SELECT {bucket}{KPI_AGGREGATES}
FROM contacts FINAL
WHERE {" AND ".join(clauses)}
{group}
){" ORDER BY bucket_ms" if bucket else ""}"""
    return [_kpis_of(row) for row in store.query(sql, params)]


def _kpis_of(row: dict[str, Any]) -> dict[str, Any]:
    return {
        **({"bucket_ms": int(row["bucket_ms"])} if "bucket_ms" in row else {}),
        **{name: as_float(row[name]) for name in KPI_RATIOS},
        **{name: bool(row[name]) for name in KPI_FINAL},
        "counts": {name: int(row[f"count_{name}"]) for name in KPI_COUNT_COLUMNS},
    }
