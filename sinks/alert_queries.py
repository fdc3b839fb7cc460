"""Stored alerts, and the counts the alert rules judge (design section 7) at one point in time.

The builders (`step_arrivals`, `timely_dropoff_counts`, `contact_window_counts`, ...) take SQL
for their times and names, so the evaluator binds parameters and the Grafana rules put in
literals and macros: one definition of each count.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from cxpulse.schemas.times import ch_time
from cxpulse.schemas.vocabulary import ALERT_CONTACT_COLUMNS, CONTACT_COLUMNS
from cxpulse.sinks.contact_queries import IN_SERVICE_LEVEL
from cxpulse.sinks.query_sql import ATTR_NAME, QueryError
from cxpulse.sinks.store import Store

_ALERT_COLUMNS = (
    "a.id AS id, rule, state, funnel, step, segment, current_rate, baseline_rate, "
    "window_journeys, z, toUnixTimestamp64Milli(started_at) AS started_ms, "
    "toUnixTimestamp64Milli(resolved_at) AS resolved_ms, "
    "if(s.id = '', NULL, toUnixTimestamp64Milli(s.silenced_until)) AS silenced_ms, "
    "toUnixTimestamp64Milli(a.updated_at) AS updated_ms, recent_changes, top_drivers"
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
    return _with_changes(store.query(sql, params))


def alert(store: Store, alert_id: str) -> dict[str, Any] | None:
    rows = store.query(
        f"SELECT {_ALERT_COLUMNS} FROM {ALERTS_WITH_SILENCES} WHERE a.id = {{id:String}}",
        {"id": alert_id},
    )
    return _with_changes(rows)[0] if rows else None


def _with_changes(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`recent_changes` and `top_drivers` are stored as JSON text (migrations 0006, 0007): as the
    lists they hold."""
    return [
        row | {name: orjson.loads(row[name]) for name in ("recent_changes", "top_drivers")}
        for row in rows
    ]


# -- alert evaluation (design section 7) ------------------------------------------------------

#: Segment "all journeys" (or all contacts) in the per-segment counts of the alert queries.
OVERALL = ("", "")


#: A journey's segment attributes as (name, value) pairs.
ATTR_PAIRS = "arrayZip(mapKeys(attrs), mapValues(attrs))"


def segments_join(wanted: str, pairs: str = ATTR_PAIRS) -> str:
    """ARRAY JOIN expression: overall ('', '') plus each (attribute, value) of `pairs` whose
    attribute is in `wanted`, an SQL array of names."""
    return (
        f"arrayConcat([('', '')], arrayFilter(p -> has({wanted}, p.1), "
        f"arrayMap(p -> (toString(p.1), toString(p.2)), {pairs})))"
    )


def bound_segments(names: Sequence[str], params: dict[str, Any]) -> str:
    """`segments_join` of the attributes `names`, bound."""
    for index, name in enumerate(names):
        if not ATTR_NAME.match(name):
            raise QueryError(f"{name!r} is not a segment attribute name")
        params[f"sn{index}"] = name
    return segments_join("[" + ", ".join(f"{{sn{i}:String}}" for i in range(len(names))) + "]")


def contact_segments(columns: Sequence[str]) -> str:
    """`[('', ''), ('queue', toString(queue)), ...]`: overall plus each contact column's value."""
    if not set(columns) <= set(CONTACT_COLUMNS):
        raise QueryError(f"contact segments are among {list(CONTACT_COLUMNS)}")
    return "[('', '')" + "".join(f", ('{c}', toString({c}))" for c in columns) + "]"


#: Whether a journey that reached step k-1 missed step k within tau: timely drop-off (design
#: section 7), over the rows of `step_arrivals`.
DROPPED = "reach_ms[k + 1] IS NULL OR reach_ms[k + 1] - reach_ms[k] > tau"


def step_arrivals(funnel: str, tau: str, enter_lo: str, at: str, steps: str = "1") -> str:
    """Rows (k, attrs, reach_ms, tau, prev_at) of the journeys of `funnel` that entered it in
    [enter_lo, at) and reached step k-1 (k >= 1, where `steps` holds), `prev_at` being when (epoch
    ms). Every argument is SQL: bound parameters for the evaluator, literals and Grafana's
    macros for the alert rules."""
    return f"""SELECT k, attrs, reach_ms, {tau} AS tau,
    toUnixTimestamp64Milli(entered_at) + assumeNotNull(reach_ms[k]) AS prev_at
FROM journey_funnels FINAL
ARRAY JOIN range(1, length(reach_ms)) AS k
WHERE funnel = {funnel}
  AND entered_at >= {enter_lo} AND entered_at < {at}
  AND {steps} AND reach_ms[k] IS NOT NULL"""


def timely_dropoff_counts(
    arrivals: str, at_ms: str, window: str, baseline: str, segments: str
) -> str:
    """Per (k, attr, value): journeys of `arrivals` that reached step k-1 in the window [at -
    tau - window, at - tau) and in the baseline before it, and how many of them dropped."""
    return f"""SELECT k, seg.1 AS attr, seg.2 AS value,
    countIf(in_window) AS window_n, countIf(in_window AND dropped) AS window_hits,
    countIf(NOT in_window) AS base_n, countIf(NOT in_window AND dropped) AS base_hits
FROM (
    SELECT k, attrs, prev_at >= {at_ms} - tau - {window} AS in_window, {DROPPED} AS dropped
    FROM ({arrivals})
    WHERE prev_at >= {at_ms} - tau - {window} - {baseline} AND prev_at < {at_ms} - tau
)
ARRAY JOIN {segments} AS seg
GROUP BY k, attr, value"""


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
    params = {
        "funnel": funnel,
        "enter_lo": ch_time(lo_ms - span_ms),
        "hi": ch_time(hi_ms),
        "lo_ms": lo_ms,
        "hi_ms": hi_ms,
    }
    return {int(r["k"]): int(r["p90"]) for r in store.query(sql, params)}


def bound_arrivals(
    funnel: str, taus_ms: Mapping[int, int], oldest_ms: int, at_ms: int, params: dict[str, Any]
) -> str:
    """`step_arrivals` of `funnel` at the steps k of `taus_ms`, each with its tau, for journeys
    that entered in [oldest - the longest tau, at), all bound into `params`."""
    ks = sorted(taus_ms)
    params.update({f"tau{k}": int(taus_ms[k]) for k in ks}, funnel=funnel)
    params["enter_lo"] = ch_time(oldest_ms - max(taus_ms.values(), default=0))
    params["at"] = ch_time(at_ms)
    tau = "multiIf(" + ", ".join(f"k = {k}, {{tau{k}:Int64}}" for k in ks) + ", 0)"
    return step_arrivals(
        "{funnel:String}",
        tau,
        "{enter_lo:DateTime64(3, 'UTC')}",
        "{at:DateTime64(3, 'UTC')}",
        f"k IN ({', '.join(str(k) for k in ks)})",
    )


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
    params: dict[str, Any] = {"window": window_ms, "baseline": baseline_ms, "at_ms": at_ms}
    arrivals = bound_arrivals(
        funnel, taus_ms, at_ms - window_ms - baseline_ms - span_ms, at_ms, params
    )
    segments = bound_segments(segment_attrs, params)
    sql = timely_dropoff_counts(
        arrivals, "{at_ms:Int64}", "{window:Int64}", "{baseline:Int64}", segments
    )
    return store.query(sql, params)


#: Per contact: counts in the service level (`sl`), answered in time, queued, abandoned.
CONTACT_ALERT_FLAGS = f"""({IN_SERVICE_LEVEL}) AS sl,
        answered_within_sl, queued = 1 AS queued, abandoned = 1 AS abandoned"""


def contact_window_counts(window_start: str, lo: str, hi: str, columns: Sequence[str]) -> str:
    """Service-level misses, queued and abandoned contacts per segment (overall and per value
    of `columns`) among contacts started in the window [window_start, hi) and in the baseline
    [lo, window_start). Bounds are SQL (bound, or Grafana's macros)."""
    return f"""SELECT seg.1 AS attr, seg.2 AS value,
    countIf(w AND sl) AS window_sl_n, countIf(w AND sl AND NOT answered_within_sl)
        AS window_sl_misses,
    countIf(NOT w AND sl) AS base_sl_n, countIf(NOT w AND sl AND NOT answered_within_sl)
        AS base_sl_misses,
    countIf(w AND queued) AS window_queued, countIf(w AND abandoned) AS window_abandoned,
    countIf(NOT w AND queued) AS base_queued, countIf(NOT w AND abandoned) AS base_abandoned
FROM (
    SELECT started_at >= {window_start} AS w, {CONTACT_ALERT_FLAGS},
        {contact_segments(columns)} AS segs
    FROM contacts FINAL
    WHERE started_at >= {lo} AND started_at < {hi}
)
ARRAY JOIN segs AS seg
GROUP BY attr, value"""


def contact_alert_counts(
    store: Store,
    at_ms: int,
    *,
    settle_ms: int,
    window_ms: int,
    baseline_ms: int,
    segment_columns: Sequence[str] = ALERT_CONTACT_COLUMNS,
) -> list[dict[str, Any]]:
    """Service-level and abandonment counts of contacts started in the window [at - settle -
    window, at - settle) and in the baseline before it, overall and per queue and channel.
    `settle` leaves time for a queued contact to be answered or abandoned."""
    params: dict[str, Any] = {
        "lo": ch_time(at_ms - settle_ms - window_ms - baseline_ms),
        "mid": ch_time(at_ms - settle_ms - window_ms),
        "hi": ch_time(at_ms - settle_ms),
    }
    bound = [f"{{{name}:DateTime64(3, 'UTC')}}" for name in ("mid", "lo", "hi")]
    return store.query(contact_window_counts(*bound, segment_columns), params)
