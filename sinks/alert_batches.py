"""The alert rules' counts at many grid points in one query each (design section 7)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cxpulse.schemas.times import ch_time
from cxpulse.schemas.vocabulary import ALERT_CONTACT_COLUMNS
from cxpulse.sinks.alert_queries import (
    CONTACT_ALERT_FLAGS,
    DROPPED,
    bound_arrivals,
    bound_segments,
    contact_segments,
)
from cxpulse.sinks.store import Store

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
        "top0": top0,
        "hi0": hi0,
        "lo0": hi0 - baseline_ms,
        "lo": ch_time(hi0 - baseline_ms),
        "hi": ch_time(max(hi0 + (points - 1) * every_ms, top0 + (known - 1) * every_ms)),
    }
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
    params: dict[str, Any] = {"first_ms": first_ms, "window": window_ms, "baseline": baseline_ms}
    oldest_ms = first_ms - window_ms - baseline_ms - span_ms
    last_ms = first_ms + (points - 1) * every_ms
    arrivals = bound_arrivals(funnel, taus_ms, oldest_ms, last_ms, params)
    segments = bound_segments(segment_attrs, params)
    window = _point_range("prev_at", "hi0", "top0", every_ms, known, "w")
    base = _point_range("prev_at", "lo0", "hi0", every_ms, points, "b")
    sql = f"""
SELECT k, seg.1 AS attr, seg.2 AS value, w_first, w_last, b_first, b_last,
    count() AS n, countIf(dropped) AS hits
FROM (
    SELECT k, attrs, dropped, {window}, {base}
    FROM (
        SELECT k, attrs, prev_at, top0, top0 - {{window:Int64}} AS hi0,
            hi0 - {{baseline:Int64}} AS lo0, {DROPPED} AS dropped
        FROM (
            SELECT *, {{first_ms:Int64}} - tau AS top0 FROM ({arrivals})
        )
    )
    WHERE {_in_ranges("prev_at", ("lo0", "hi0", "top0"), every_ms, points, known)}
)
ARRAY JOIN {segments} AS seg
GROUP BY k, attr, value, w_first, w_last, b_first, b_last"""
    rows = store.query(sql, params) if taus_ms else []
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
    segment_columns: Sequence[str] = ALERT_CONTACT_COLUMNS,
) -> Batch:
    """`contact_alert_counts` at `points` grid points in one query (see `timely_dropoff_batch`):
    per point, (attr, value) -> (contacts, sl_n, sl_misses, queued, abandoned), window and
    baseline (contacts first: a segment of unqueued contacts is listed, as it is there)."""
    known = min(known, points)
    segments = contact_segments(segment_columns)
    top0 = first_ms - settle_ms
    params, bounds, window, base = _time_grid(
        top0, top0 - window_ms, baseline_ms, every_ms, points, known
    )
    sql = f"""
SELECT seg.1 AS attr, seg.2 AS value, w_first, w_last, b_first, b_last, count() AS contacts,
    countIf(sl) AS sl_n, countIf(sl AND NOT answered_within_sl) AS sl_misses,
    countIf(queued) AS n_queued, countIf(abandoned) AS n_abandoned
FROM (
    SELECT {CONTACT_ALERT_FLAGS}, {segments} AS segs,
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
