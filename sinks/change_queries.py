"""The SQL of portal changes (design section 4b): one definition of "the live changes of a
funnel in a time range", used by the store functions (bound parameters) and the dashboards'
annotations (Grafana's macros and a funnel name literal)."""

from __future__ import annotations

#: Each change's latest version, tombstones left out.
LIVE_CHANGES = "(SELECT * FROM changes FINAL WHERE is_deleted = 0)"

#: A change's columns as `sinks.changes` reads them (times as epoch ms).
CHANGE_COLUMNS = "id, title, toUnixTimestamp64Milli(at) AS at_ms, funnel, step, filters, notes"


def of_funnel(funnel: str) -> str:
    """Changes that concern `funnel` (SQL): its own and those of every funnel (funnel NULL)."""
    return f"(funnel IS NULL OR funnel = {funnel})"


def changes_between(funnel: str, lo: str, hi: str, hi_inclusive: bool = False) -> str:
    """Live changes of `funnel` (SQL; see `of_funnel`) with `at` in [lo, hi) (or [lo, hi]),
    ordered by time then id. Every argument is SQL: bound parameters or Grafana's macros."""
    upper = "<=" if hi_inclusive else "<"
    return f"""SELECT {CHANGE_COLUMNS}
FROM {LIVE_CHANGES}
WHERE {of_funnel(funnel)} AND at >= {lo} AND at {upper} {hi}
ORDER BY at, id"""


def change_annotations(funnel: str, lo: str, hi: str) -> str:
    """Changes of `funnel` in [lo, hi) as Grafana annotations (time, timeEnd, title, text,
    tags): a point in time each, the text saying where it applies and the notes."""
    where = (
        "concat(ifNull(funnel, 'every funnel'), if(step IS NULL, '', concat(' at ', step)),"
        " if(empty(filters), '', concat(' (', arrayStringConcat(arrayMap((k, v) -> concat(k,"
        " '=', v), mapKeys(filters), mapValues(filters)), ', '), ')')))"
    )
    return f"""SELECT fromUnixTimestamp64Milli(at_ms, 'UTC') AS time,
    fromUnixTimestamp64Milli(at_ms, 'UTC') AS timeEnd,
    concat('change: ', title) AS title,
    concat(id, ': ', {where}, if(notes = '', '', concat('. ', notes))) AS text,
    CAST(['change', id], 'Array(String)') AS tags
FROM ({changes_between(funnel, lo, hi)})
ORDER BY time, id"""
