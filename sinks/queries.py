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
from dataclasses import dataclass
from typing import Any

from cxpulse.schemas.times import ch_time
from cxpulse.sinks.store import Store

OUTCOMES = ("self_served", "escalated", "abandoned", "in_progress")
_ATTR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


class QueryError(ValueError):
    """A request the query module refuses (an unusable filter, an empty range)."""


def _ratio(numerator: float, denominator: float) -> float | None:
    return None if denominator == 0 else numerator / denominator


def _range_and_attrs(
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
        if not _ATTR_NAME.match(name):
            raise QueryError(f"{name!r} is not a segment attribute name")
        clauses.append(f"attrs[{{an{index}:String}}] = {{av{index}:String}}")
        params[f"an{index}"] = name
        params[f"av{index}"] = value
    return clauses, params


def _where(
    funnel: str, start_ms: int, end_ms: int, filters: Mapping[str, str]
) -> tuple[str, dict[str, Any]]:
    clauses, params = _range_and_attrs("entered_at", start_ms, end_ms, filters)
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


def outcome_columns() -> str:
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
        f"SELECT count() AS journeys, {outcome_columns()},\n    {step_columns(len(steps))}\n"
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
    where, params = _where(funnel, start_ms, end_ms, filters or {})
    bucket, group = _bucket("entered_at", interval_s, params)
    sql = (
        f"SELECT {bucket}count() AS journeys, {per_step_arrays(len(steps))}\n"
        f"FROM journey_funnels FINAL\nWHERE {where}\n{group}"
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


_CONTACT_FILTERS = ("queue", "team", "channel", "shift")
KPI_COUNTS = (
    "queued", "answered", "abandoned", "short_abandoned", "answered_within_sl", "transferred",
    "ivr_contained", "resolved", "first_contact_resolved",
)  # fmt: skip


def _bucket(column: str, interval_s: int | None, params: dict[str, Any]) -> tuple[str, str]:
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
    return expression, "GROUP BY bucket_ms ORDER BY bucket_ms"


# Aliases must not shadow the columns that later conditions read (answered = 1 ...).
KPI_AGGREGATES = (
    "count() AS contacts, "
    + ", ".join(f"sum({flag}) AS n_{flag}" for flag in KPI_COUNTS)
    + """,
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
    clauses, params = _range_and_attrs("started_at", start_ms, end_ms, {})
    for name, value in sorted((filters or {}).items()):
        if name not in _CONTACT_FILTERS:
            raise QueryError(f"contacts can be filtered by {', '.join(_CONTACT_FILTERS)}")
        clauses.append(f"{name} = {{{name}:String}}")
        params[name] = value
    bucket, group = _bucket("started_at", interval_s, params)
    sql = f"""
SELECT {bucket}{KPI_AGGREGATES}
FROM contacts FINAL
WHERE {" AND ".join(clauses)}
{group}"""
    return [_kpis_of(row) for row in store.query(sql, params)]


def _kpis_of(raw: dict[str, Any]) -> dict[str, Any]:
    row = {k: (int(v) if v is not None else 0) for k, v in raw.items()}
    c = {"contacts": row["contacts"], **{flag: row[f"n_{flag}"] for flag in KPI_COUNTS}}
    for name in ("handled", "ivr_contacts", "zero_out", "csat_responses", "nps_responses",
                 "ces_responses"):  # fmt: skip
        c[name] = row[name]
    offered = c["answered"] + c["abandoned"] - c["short_abandoned"]
    return {
        **({"bucket_ms": row["bucket_ms"]} if "bucket_ms" in row else {}),
        "service_level": _ratio(c["answered_within_sl"], offered),
        "asa_seconds": _ratio(row["wait_answered_ms"], c["answered"] * 1000),
        "abandonment_rate": _ratio(c["abandoned"], c["queued"]),
        "aht_seconds": _ratio(row["handle_sum_ms"], c["handled"] * 1000),
        "transfer_rate": _ratio(c["transferred"], c["answered"]),
        "ivr_containment_rate": _ratio(c["ivr_contained"], c["ivr_contacts"]),
        "zero_out_rate": _ratio(c["zero_out"], c["ivr_contacts"]),
        "fcr_rate": _ratio(c["first_contact_resolved"], c["resolved"]),
        "fcr_final": row["resolved_n"] == 0 or row["fcr_final_min"] == 1,
        "ivr_final": c["ivr_contacts"] == 0 or row["ivr_final_min"] == 1,
        "csat": _ratio(row["satisfied"], c["csat_responses"]),
        "nps": _ratio(100 * (row["promoters"] - row["detractors"]), c["nps_responses"]),
        "ces": _ratio(row["ces_sum"], c["ces_responses"]),
        "counts": c,
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
    clauses, params = _range_and_attrs("start_at", start_ms, end_ms, filters or {})
    bucket, group = _bucket("start_at", interval_s, params)
    sql = f"""
SELECT {bucket}count() AS journeys, countIf(closed = 1) AS n_closed, {outcome_columns()},
    countIf(closed = 1 AND outcome = 'self_served') AS closed_self_served,
    countIf(closed = 1 AND outcome = 'escalated') AS closed_escalated,
    countIf(closed = 1 AND ttr_ms IS NOT NULL) AS ttr_n,
    sumIf(ttr_ms, closed = 1) AS ttr_sum_ms,
    quantileExactLowIf(0.5)(ttr_ms, closed = 1 AND ttr_ms IS NOT NULL) AS ttr_median_ms
FROM journeys FINAL
WHERE {" AND ".join(clauses)}
{group}"""
    results = []
    for row in store.query(sql, params):
        self_served = int(row["closed_self_served"])
        escalated = int(row["closed_escalated"])
        ttr_n = int(row["ttr_n"])
        results.append({
            **({"bucket_ms": int(row["bucket_ms"])} if "bucket_ms" in row else {}),
            "journeys": int(row["journeys"]),
            "closed": int(row["n_closed"]),
            **{o: int(row[o]) for o in OUTCOMES},
            "containment_rate": _ratio(self_served, int(row["n_closed"])),
            "cost_to_serve": escalated * assisted_cost + self_served * self_service_cost,
            "savings": self_served * (assisted_cost - self_service_cost),
            "ttr_mean_seconds": _ratio(int(row["ttr_sum_ms"] or 0), ttr_n * 1000),
            "ttr_median_seconds": None if ttr_n == 0 else int(row["ttr_median_ms"]) / 1000,
        })  # fmt: skip
    return results


_ALERT_COLUMNS = (
    "a.id AS id, rule, state, funnel, step, segment, current_rate, baseline_rate, "
    "window_journeys, z, toUnixTimestamp64Milli(started_at) AS started_ms, "
    "toUnixTimestamp64Milli(resolved_at) AS resolved_ms, "
    "if(s.id = '', NULL, toUnixTimestamp64Milli(s.silenced_until)) AS silenced_ms, "
    "toUnixTimestamp64Milli(a.updated_at) AS updated_ms"
)
# Each alert's latest state, with its latest silence (kept apart: see migration 0005).
ALERTS_WITH_SILENCES = (
    "(SELECT * FROM alerts FINAL) AS a LEFT JOIN "
    "(SELECT id, silenced_until FROM alert_silences FINAL) AS s ON a.id = s.id"
)


def alerts(
    store: Store, state: str | None = None, start_ms: int | None = None, end_ms: int | None = None
) -> list[dict[str, Any]]:
    """Current alerts, newest first; `start`/`end` select alerts active in that range."""
    clauses, params = ["1"], {}
    if state is not None:
        if state not in ("firing", "resolved"):
            raise QueryError("state is firing or resolved")
        clauses.append("state = {state:String}")
        params["state"] = state
    if start_ms is not None:
        clauses.append("(resolved_at IS NULL OR resolved_at >= {start:DateTime64(3, 'UTC')})")
        params["start"] = ch_time(start_ms)
    if end_ms is not None:
        clauses.append("started_at < {end:DateTime64(3, 'UTC')}")
        params["end"] = ch_time(end_ms)
    sql = (
        f"SELECT {_ALERT_COLUMNS} FROM {ALERTS_WITH_SILENCES} WHERE {' AND '.join(clauses)} "
        "ORDER BY started_at DESC, id"
    )
    return store.query(sql, params)


def alert(store: Store, alert_id: str) -> dict[str, Any] | None:
    rows = store.query(
        f"SELECT {_ALERT_COLUMNS} FROM {ALERTS_WITH_SILENCES} WHERE a.id = {{id:String}}",
        {"id": alert_id},
    )
    return rows[0] if rows else None


# -- alert evaluation (design section 7) ------------------------------------------------------

#: Segment "all journeys" (or all contacts) in the per-segment counts of the alert queries.
OVERALL = ("", "")


def _segments(pairs: str, names: Sequence[str], params: dict[str, Any]) -> str:
    """ARRAY JOIN expression: overall plus each (attribute, value) of `pairs` named in `names`."""
    for index, name in enumerate(names):
        if not _ATTR_NAME.match(name):
            raise QueryError(f"{name!r} is not a segment attribute name")
        params[f"sn{index}"] = name
    wanted = ", ".join(f"{{sn{i}:String}}" for i in range(len(names)))
    return (
        "arrayConcat([('', '')], arrayFilter(p -> has([" + wanted + "], p.1), "
        f"arrayMap(p -> (toString(p.1), toString(p.2)), {pairs})))"
    )


def step_delay_p90(
    store: Store, funnel: str, steps: int, lo_ms: int, hi_ms: int, span_ms: int
) -> dict[int, int]:
    """p90 of the time from step k-1 to step k (ms), by k >= 1, over journeys that reached k-1
    in [lo, hi) and step k by `hi` (journeys enter at most `span_ms` before they reach k-1)."""
    sql = f"""
SELECT k, quantileExactHigh(0.9)(reach_ms[k + 1] - reach_ms[k]) AS p90
FROM journey_funnels FINAL
ARRAY JOIN range(1, {int(steps)}) AS k
WHERE funnel = {{funnel:String}}
  AND entered_at >= {{enter_lo:DateTime64(3, 'UTC')}} AND entered_at < {{hi:DateTime64(3, 'UTC')}}
  AND reach_ms[k] IS NOT NULL AND reach_ms[k + 1] IS NOT NULL
  AND toUnixTimestamp64Milli(entered_at) + reach_ms[k] >= {{lo_ms:Int64}}
  AND toUnixTimestamp64Milli(entered_at) + reach_ms[k] < {{hi_ms:Int64}}
  AND toUnixTimestamp64Milli(entered_at) + reach_ms[k + 1] < {{hi_ms:Int64}}
GROUP BY k"""
    params = {"funnel": funnel, "enter_lo": ch_time(lo_ms - span_ms), "hi": ch_time(hi_ms),
              "lo_ms": lo_ms, "hi_ms": hi_ms}  # fmt: skip
    return {int(r["k"]): int(r["p90"]) for r in store.query(sql, params)}


def timely_dropoff(
    store: Store,
    funnel: str,
    taus_ms: Mapping[int, int],
    at_ms: int,
    *,
    window_ms: int,
    baseline_ms: int,
    span_ms: int,
    segment_attrs: Sequence[str],
) -> list[dict[str, Any]]:
    """Timely drop-off counts at each funnel step k >= 1 (keys of `taus_ms`), overall and per
    segment value: journeys that reached step k-1 in the window [at - tau_k - window, at - tau_k)
    and in the baseline before it (`baseline_ms` long), and how many of them did not reach step k
    within tau_k. Only what was known at `at` counts: a window journey's deadline is before it."""
    if not taus_ms:
        return []
    params: dict[str, Any] = {"funnel": funnel, "window": window_ms, "baseline": baseline_ms,
                              "at_ms": at_ms}  # fmt: skip
    longest = max(taus_ms.values())
    params["enter_lo"] = ch_time(at_ms - longest - window_ms - baseline_ms - span_ms)
    params["at"] = ch_time(at_ms)
    ks = sorted(taus_ms)
    for k in ks:
        params[f"tau{k}"] = int(taus_ms[k])
    tau = "multiIf(" + ", ".join(f"k = {k}, {{tau{k}:Int64}}" for k in ks) + ", 0)"
    segments = _segments("arrayZip(mapKeys(attrs), mapValues(attrs))", segment_attrs, params)
    sql = f"""
SELECT k, seg.1 AS attr, seg.2 AS value,
    countIf(in_window) AS window_n, countIf(in_window AND dropped) AS window_hits,
    countIf(NOT in_window) AS base_n, countIf(NOT in_window AND dropped) AS base_hits
FROM (
    SELECT k, attrs, prev_at >= {{at_ms:Int64}} - tau - {{window:Int64}} AS in_window,
        reach_ms[k + 1] IS NULL OR reach_ms[k + 1] - reach_ms[k] > tau AS dropped
    FROM (
        SELECT k, attrs, reach_ms, {tau} AS tau,
            toUnixTimestamp64Milli(entered_at) + assumeNotNull(reach_ms[k]) AS prev_at
        FROM journey_funnels FINAL
        ARRAY JOIN range(1, length(reach_ms)) AS k
        WHERE funnel = {{funnel:String}}
          AND entered_at >= {{enter_lo:DateTime64(3, 'UTC')}}
          AND entered_at < {{at:DateTime64(3, 'UTC')}}
          AND k IN ({", ".join(str(k) for k in ks)}) AND reach_ms[k] IS NOT NULL
    )
    WHERE prev_at >= {{at_ms:Int64}} - tau - {{window:Int64}} - {{baseline:Int64}}
      AND prev_at < {{at_ms:Int64}} - tau
)
ARRAY JOIN {segments} AS seg
GROUP BY k, attr, value"""
    return store.query(sql, params)


#: Per segment (`seg`), the contact rules' counts in the window (`w`) and the baseline.
CONTACT_ALERT_COUNTS = """seg.1 AS attr, seg.2 AS value,
    countIf(w AND sl) AS window_sl_n, countIf(w AND sl AND NOT answered_within_sl)
        AS window_sl_misses,
    countIf(NOT w AND sl) AS base_sl_n, countIf(NOT w AND sl AND NOT answered_within_sl)
        AS base_sl_misses,
    countIf(w AND queued) AS window_queued, countIf(w AND abandoned) AS window_abandoned,
    countIf(NOT w AND queued) AS base_queued, countIf(NOT w AND abandoned) AS base_abandoned"""
#: Per contact: counts in the service level (`sl`), answered in time, queued, abandoned.
CONTACT_ALERT_FLAGS = """answered = 1 OR (abandoned = 1 AND short_abandoned = 0) AS sl,
        answered_within_sl, queued = 1 AS queued, abandoned = 1 AS abandoned"""


def contact_alert_counts(
    store: Store,
    at_ms: int,
    *,
    settle_ms: int,
    window_ms: int,
    baseline_ms: int,
    segment_columns: Sequence[str] = ("queue", "channel"),
) -> list[dict[str, Any]]:
    """Service-level and abandonment counts of contacts started in the window [at - settle -
    window, at - settle) and in the baseline before it, overall and per queue and channel.
    `settle` leaves time for a queued contact to be answered or abandoned."""
    allowed = {"queue", "channel", "team", "shift"}
    if not set(segment_columns) <= allowed:
        raise QueryError(f"contact segments are among {sorted(allowed)}")
    pairs = ", ".join(f"('{c}', toString({c}))" for c in segment_columns)
    params: dict[str, Any] = {
        "lo": ch_time(at_ms - settle_ms - window_ms - baseline_ms),
        "mid": ch_time(at_ms - settle_ms - window_ms),
        "hi": ch_time(at_ms - settle_ms),
    }
    sql = f"""
SELECT {CONTACT_ALERT_COUNTS}
FROM (
    SELECT started_at >= {{mid:DateTime64(3, 'UTC')}} AS w, {CONTACT_ALERT_FLAGS},
        [('', ''), {pairs}] AS segs
    FROM contacts FINAL
    WHERE started_at >= {{lo:DateTime64(3, 'UTC')}} AND started_at < {{hi:DateTime64(3, 'UTC')}}
)
ARRAY JOIN segs AS seg
GROUP BY attr, value"""
    return store.query(sql, params)


# -- alert evaluation in batches of grid points -----------------------------------------------
# Evaluating every grid point with the queries above re-reads a whole baseline (24 h) per point,
# though consecutive points' baselines differ only at their edges. The batch queries below read
# the rows of several consecutive grid points (first + j * every, j < points) at once: each row
# carries the range of points whose window and whose baseline it falls in, rows are counted per
# range, and `per_point` spreads the counts over the points. A point's counts equal those of the
# single-point query on the same rows.

Counts = dict[tuple[Any, ...], tuple[int, ...]]


def _point_range(t: str, lo: str, hi: str, every_ms: int, points: int, name: str) -> str:
    """`{name}_first, {name}_last`: the points j < `points` whose interval [lo + j * every,
    hi + j * every) holds `t` (an empty range when first > last)."""
    e, last = int(every_ms), int(points) - 1
    return (
        f"if({t} >= {hi}, intDiv({t} - {hi}, {e}) + 1, 0) AS {name}_first, "
        f"if({t} >= {lo}, least({last}, intDiv({t} - {lo}, {e})), -1) AS {name}_last"
    )


def _in_ranges(t: str, bounds: tuple[str, str, str], every_ms: int, points: int, known: int) -> str:
    """Rows some point counts, given the first point's bounds (lo, hi, top): in a baseline
    [lo, hi) of one of `points` points, or in a window [hi, top) of one of the first `known`."""
    lo, hi, top = bounds
    e = int(every_ms)
    clauses = [f"({t} >= {lo} AND {t} < {hi} + {(points - 1) * e})"]
    if known > 0:
        clauses.append(f"({t} >= {hi} AND {t} < {top} + {(known - 1) * e})")
    return " OR ".join(clauses)


def per_point(
    rows: Sequence[Mapping[str, Any]],
    key: Sequence[str],
    counts: Sequence[str],
    points: int,
    part: str,
) -> list[Counts]:
    """Counts per point from rows that each count at points `{part}_first`..`{part}_last`: a
    difference array summed once, O(rows + points x keys). The first count must be the number
    of rows, so a key is listed at a point exactly when some row counts there."""
    deltas: dict[tuple[Any, ...], list[list[int]]] = {}
    for row in rows:
        first, last = int(row[f"{part}_first"]), int(row[f"{part}_last"])
        if first > last:
            continue
        name = tuple(row[c] for c in key)
        if name not in deltas:
            deltas[name] = [[0] * len(counts) for _ in range(points + 1)]
        for i, column in enumerate(counts):
            value = int(row[column])
            deltas[name][first][i] += value
            deltas[name][last + 1][i] -= value
    out: list[Counts] = [{} for _ in range(points)]
    for name, slots in deltas.items():
        running = [0] * len(counts)
        for j in range(points):
            running = [r + d for r, d in zip(running, slots[j], strict=True)]
            if running[0]:
                out[j][name] = tuple(running)
    return out


@dataclass(frozen=True)
class Batch:
    """Per grid point j: window counts (for j < `known`; the caller queries later points'
    windows when it evaluates them) and baseline counts, each key -> counts."""

    first_ms: int
    every_ms: int
    known: int
    windows: list[Counts]
    baselines: list[Counts]

    def index(self, at_ms: int) -> int | None:
        j, rest = divmod(at_ms - self.first_ms, self.every_ms)
        return j if rest == 0 and 0 <= j < len(self.baselines) else None

    @classmethod
    def of(
        cls,
        rows: list[dict[str, Any]],
        first_ms: int,
        every_ms: int,
        points: int,
        known: int,
        key: tuple[str, ...],
        counts: tuple[str, ...],
    ) -> Batch:
        """The batch of a query whose rows carry their window (`w_*`) and baseline (`b_*`)
        point ranges."""
        windows = per_point(rows, key, counts, known, "w")
        return cls(first_ms, every_ms, known, windows, per_point(rows, key, counts, points, "b"))


def _time_grid(
    top0: int, hi0: int, baseline_ms: int, every_ms: int, points: int, known: int
) -> tuple[dict[str, Any], tuple[str, str, str], str, str]:
    """Parameters, bounds and the window and baseline range columns of a batch over a time
    column `t`: point j's window is [hi0, top0) and its baseline [hi0 - baseline, hi0), each
    moved by j * every."""
    params: dict[str, Any] = {
        "top0": top0, "hi0": hi0, "lo0": hi0 - baseline_ms, "lo": ch_time(hi0 - baseline_ms),
        "hi": ch_time(max(hi0 + (points - 1) * every_ms, top0 + (known - 1) * every_ms)),
    }  # fmt: skip
    bounds = ("{lo0:Int64}", "{hi0:Int64}", "{top0:Int64}")
    window = _point_range("t", bounds[1], bounds[2], every_ms, known, "w")
    base = _point_range("t", bounds[0], bounds[1], every_ms, points, "b")
    return params, bounds, window, base


def timely_dropoff_batch(
    store: Store,
    funnel: str,
    taus_ms: Mapping[int, int],
    first_ms: int,
    *,
    every_ms: int,
    points: int,
    known: int,
    window_ms: int,
    baseline_ms: int,
    span_ms: int,
    segment_attrs: Sequence[str],
) -> Batch:
    """`timely_dropoff` at `points` grid points from `first_ms` in one query: per point,
    (k, attr, value) -> (n, hits) in the window (first `known` points) and in the baseline.

    A point's counts equal `timely_dropoff` there on the rows stored now. A window needs the
    data up to its point; a baseline up to `first_ms` while (points - 1) * every <= window_ms,
    which the caller keeps for points it has no complete data for yet."""
    known = min(known, points)
    params: dict[str, Any] = {"funnel": funnel, "first_ms": first_ms, "window": window_ms,
                              "baseline": baseline_ms}  # fmt: skip
    longest = max(taus_ms.values(), default=0)
    params["enter_lo"] = ch_time(first_ms - longest - window_ms - baseline_ms - span_ms)
    params["at"] = ch_time(first_ms + (points - 1) * every_ms)
    ks = sorted(taus_ms)
    for k in ks:
        params[f"tau{k}"] = int(taus_ms[k])
    tau = "multiIf(" + ", ".join(f"k = {k}, {{tau{k}:Int64}}" for k in ks) + ", 0)"
    segments = _segments("arrayZip(mapKeys(attrs), mapValues(attrs))", segment_attrs, params)
    window = _point_range("prev_at", "hi0", "top0", every_ms, known, "w")
    base = _point_range("prev_at", "lo0", "hi0", every_ms, points, "b")
    sql = f"""
SELECT k, seg.1 AS attr, seg.2 AS value, w_first, w_last, b_first, b_last,
    count() AS n, countIf(dropped) AS hits
FROM (
    SELECT k, attrs, dropped, {window}, {base}
    FROM (
        SELECT k, attrs, prev_at, top0, top0 - {{window:Int64}} AS hi0,
            hi0 - {{baseline:Int64}} AS lo0,
            reach_ms[k + 1] IS NULL OR reach_ms[k + 1] - reach_ms[k] > tau AS dropped
        FROM (
            SELECT k, attrs, reach_ms, {tau} AS tau, {{first_ms:Int64}} - tau AS top0,
                toUnixTimestamp64Milli(entered_at) + assumeNotNull(reach_ms[k]) AS prev_at
            FROM journey_funnels FINAL
            ARRAY JOIN range(1, length(reach_ms)) AS k
            WHERE funnel = {{funnel:String}}
              AND entered_at >= {{enter_lo:DateTime64(3, 'UTC')}}
              AND entered_at < {{at:DateTime64(3, 'UTC')}}
              AND k IN ({", ".join(str(k) for k in ks)}) AND reach_ms[k] IS NOT NULL
        )
    )
    WHERE {_in_ranges("prev_at", ("lo0", "hi0", "top0"), every_ms, points, known)}
)
ARRAY JOIN {segments} AS seg
GROUP BY k, attr, value, w_first, w_last, b_first, b_last"""
    rows = store.query(sql, params) if ks else []
    return Batch.of(rows, first_ms, every_ms, points, known, ("k", "attr", "value"), ("n", "hits"))


def contact_alert_batch(
    store: Store,
    first_ms: int,
    *,
    every_ms: int,
    points: int,
    known: int,
    settle_ms: int,
    window_ms: int,
    baseline_ms: int,
    segment_columns: Sequence[str] = ("queue", "channel"),
) -> Batch:
    """`contact_alert_counts` at `points` grid points in one query (see `timely_dropoff_batch`):
    per point, (attr, value) -> (contacts, sl_n, sl_misses, queued, abandoned), window and
    baseline (contacts first: a segment of unqueued contacts is listed, as it is there)."""
    allowed = {"queue", "channel", "team", "shift"}
    if not set(segment_columns) <= allowed:
        raise QueryError(f"contact segments are among {sorted(allowed)}")
    known = min(known, points)
    pairs = ", ".join(f"('{c}', toString({c}))" for c in segment_columns)
    top0 = first_ms - settle_ms
    params, bounds, window, base = _time_grid(
        top0, top0 - window_ms, baseline_ms, every_ms, points, known
    )
    sql = f"""
SELECT seg.1 AS attr, seg.2 AS value, w_first, w_last, b_first, b_last, count() AS contacts,
    countIf(sl) AS sl_n, countIf(sl AND NOT answered_within_sl) AS sl_misses,
    countIf(queued) AS n_queued, countIf(abandoned) AS n_abandoned
FROM (
    SELECT {CONTACT_ALERT_FLAGS}, [('', ''), {pairs}] AS segs,
        toUnixTimestamp64Milli(started_at) AS t, {window}, {base}
    FROM contacts FINAL
    WHERE started_at >= {{lo:DateTime64(3, 'UTC')}} AND started_at < {{hi:DateTime64(3, 'UTC')}}
      AND ({_in_ranges("t", bounds, every_ms, points, known)})
)
ARRAY JOIN segs AS seg
GROUP BY attr, value, w_first, w_last, b_first, b_last"""
    rows = store.query(sql, params)
    counts = ("contacts", "sl_n", "sl_misses", "n_queued", "n_abandoned")
    return Batch.of(rows, first_ms, every_ms, points, known, ("attr", "value"), counts)


def funnel_entries_batch(
    store: Store,
    funnel: str,
    first_ms: int,
    *,
    every_ms: int,
    points: int,
    known: int,
    span_ms: int,
    baseline_ms: int,
) -> Batch:
    """Journeys that entered `funnel` (reached its first step) in the last `span_ms` before
    each grid point (window) and in the `baseline_ms` before that: the no_data rule's counts,
    () -> (journeys,), per point as in `timely_dropoff_batch` (a baseline needs the data up
    to `first_ms` while (points - 1) * every <= span_ms)."""
    known = min(known, points)
    params, bounds, window, base = _time_grid(
        first_ms, first_ms - span_ms, baseline_ms, every_ms, points, known
    )
    params["funnel"] = funnel
    sql = f"""
SELECT w_first, w_last, b_first, b_last, count() AS n
FROM (
    SELECT toUnixTimestamp64Milli(entered_at) AS t, {window}, {base}
    FROM journey_funnels FINAL
    WHERE funnel = {{funnel:String}} AND entered_at >= {{lo:DateTime64(3, 'UTC')}}
      AND entered_at < {{hi:DateTime64(3, 'UTC')}}
      AND ({_in_ranges("t", bounds, every_ms, points, known)})
)
GROUP BY w_first, w_last, b_first, b_last"""
    rows = store.query(sql, params)
    return Batch.of(rows, first_ms, every_ms, points, known, (), ("n",))
