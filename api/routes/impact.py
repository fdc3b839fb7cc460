"""/v1/changes/{id}/impact: what a portal change did, after against before (design section 4b).

A router of its own on the changes prefix (FastAPI merges routers that share one). "Now" is the
wall clock through the `wall_clock_ms` dependency, which tests override to fix it. The change is
looked up through the result cache too, so a dashboard polling a change's impact costs no query.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Response

from cxpulse.api.change_models import CHANGE_ID
from cxpulse.api.deps import DAY_MS, Context, cached, figures, segment_key
from cxpulse.api.impact_models import ChangeImpact
from cxpulse.api.problems import Problem
from cxpulse.schemas import stats
from cxpulse.schemas.durations import parse_duration_ms
from cxpulse.schemas.times import iso_time
from cxpulse.sinks import impact_queries
from cxpulse.sinks.changes import Change, get_change
from cxpulse.sinks.store import Store
from cxpulse.streams.funnels import FunnelSpec
from cxpulse.streams.settings import Settings

router = APIRouter(prefix="/v1/changes", tags=["changes"])


async def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


Now = Annotated[int, Depends(wall_clock_ms)]


def parse_window_ms(text: str, limit_days: int) -> int:
    """A window of at most `limit_days` (the longest range a request reads), as ms."""
    try:
        window_ms = parse_duration_ms(text)
    except ValueError as exc:
        raise Problem(400, "Bad request", f"window: {exc}") from None
    if window_ms <= 0:
        raise Problem(400, "Bad request", "window must be longer than 0")
    if window_ms > limit_days * DAY_MS:
        raise Problem(400, "Bad request", f"window may be at most {limit_days}d")
    return window_ms


def change_funnels(change: Change, funnels: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """The funnels a change concerns (name -> steps): its own, or every funnel when it has none."""
    if change.funnel is None:
        return {name: list(steps) for name, steps in funnels.items()}
    if change.funnel not in funnels:
        raise Problem(422, "Unknown funnel", f"the change's funnel {change.funnel!r} is gone")
    return {change.funnel: list(funnels[change.funnel])}


def _compared(xa: int, na: int, xb: int, nb: int) -> dict[str, Any]:
    result = stats.compare(xa, na, xb, nb)
    return {
        "diff": result.diff,
        "relative": result.relative,
        "ci95": result.ci95,
        "z": result.z,
        "p_value": result.p_value,
        "significant": stats.significant(result.p_value),
    }


def _funnel_impact(
    row: dict[str, Any], steps: list[str], at_ms: int, currency: str
) -> dict[str, Any]:
    nb, na = row["before_journeys"], row["after_journeys"]
    length = row["length_ms"]
    step_rows = []
    for k in range(1, len(steps)):
        xb, xa = row["before_reached"][k], row["after_reached"][k]
        step_rows.append(
            {
                "step": steps[k],
                "before": {"reached": xb, "rate": stats.rate(xb, nb)},
                "after": {"reached": xa, "rate": stats.rate(xa, na)},
                **_compared(xa, na, xb, nb),
            }
        )
    outcomes = []
    for outcome in impact_queries.IMPACT_OUTCOMES:
        xb, xa = row[f"before_{outcome}"], row[f"after_{outcome}"]
        outcomes.append(
            {
                "outcome": outcome,
                "before": {"count": xb, "rate": stats.rate(xb, nb)},
                "after": {"count": xa, "rate": stats.rate(xa, na)},
                **_compared(xa, na, xb, nb),
            }
        )
    return {
        "funnel": row["funnel"],
        "before": {"start": iso_time(at_ms - length), "end": iso_time(at_ms), "journeys": nb},
        "after": {"start": iso_time(at_ms), "end": iso_time(at_ms + length), "journeys": na},
        "steps": step_rows,
        "outcomes": outcomes,
        "cost": {
            "escalations_added": row["escalations_added"],
            "self_served_added": row["self_served_added"],
            "cost_delta": row["cost_delta"],
            "currency": currency,
        },
    }


def impact_document(
    change: Change,
    funnels: Mapping[str, list[str]],
    rows: list[dict[str, Any]],
    window_ms: int,
    currency: str,
) -> dict[str, Any]:
    """The impact response (without freshness) from `impact_queries.impact`'s rows."""
    length = rows[0]["length_ms"]
    return {
        "change": change.id,
        "title": change.title,
        "at": iso_time(change.at_ms),
        "window_seconds": length // 1000,
        "provisional": length < window_ms,
        "funnels": [
            _funnel_impact(row, funnels[row["funnel"]], change.at_ms, currency) for row in rows
        ],
    }


def change_impact(
    store: Store,
    specs: Iterable[FunnelSpec],
    settings: Settings,
    change: Change,
    window_ms: int,
    now_ms: int,
) -> dict[str, Any]:
    """The impact of `change` as of `now_ms` (the route's figures, and `cxpulse report`'s)."""
    funnels = change_funnels(change, {f.name: [s.name for s in f.steps] for f in specs})
    rows = impact_queries.impact(
        store,
        funnels,
        change.at_ms,
        window_ms,
        now_ms,
        change.filters,
        (settings.assisted_cost, settings.self_service_cost),
    )
    return impact_document(change, funnels, rows, window_ms, settings.currency)


@router.get(
    "/{change_id}/impact",
    summary="Funnel steps and outcomes after a change against before it",
    response_model=ChangeImpact,
)
async def impact(
    ctx: Context,
    now_ms: Now,
    change_id: Annotated[str, Path(pattern=CHANGE_ID, description="A change id.")],
    window: Annotated[str, Query(description="L, before and after the change: 1h, 1d, 7d.")] = "7d",
) -> Response:
    """Journeys whose step 1 is in [at - L, at) against [at, at + L), restricted to the change's
    filters; `provisional` while at + window is still ahead (L = whole minutes since the change)."""
    window_ms = parse_window_ms(window, ctx.settings.api_max_range_days)
    # Cached as a 1-tuple: the cache takes None for "not cached", and a missing change is news.
    (change,) = await cached(
        ctx, ("change", change_id), lambda: (get_change(ctx.store, change_id),)
    )
    if change is None:
        raise Problem(404, "Not found", f"no change {change_id!r}; see GET /v1/changes")
    key = (
        "impact",
        change.id,
        change.at_ms,
        change.funnel,
        segment_key(change.filters),
        window_ms,
        # Whole minutes since the change (capped past the window): L changes only with these.
        min(max(0, now_ms - change.at_ms), window_ms + impact_queries.MINUTE_MS)
        // impact_queries.MINUTE_MS,
    )
    return await figures(
        ctx,
        key,
        ChangeImpact,
        lambda: change_impact(
            ctx.store, ctx.funnels.values(), ctx.settings, change, window_ms, now_ms
        ),
    )
