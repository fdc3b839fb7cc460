"""/v1/funnels: definitions, summary, time series and breakdown of each funnel."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response

from cxpulse.api.deps import (
    Context,
    Range,
    figures,
    interval_s,
    iso_time,
    segment_key,
    segment_of,
)
from cxpulse.api.models import (
    FunnelBreakdown,
    FunnelDefinition,
    Funnels,
    FunnelSummary,
    FunnelTimeseries,
)
from cxpulse.api.problems import Problem
from cxpulse.sinks import funnel_queries

router = APIRouter(prefix="/v1/funnels", tags=["funnels"])
# Query parameters that are not segment filters.
_RESERVED = {"start", "end", "interval", "step", "by"}


@router.get("", summary="The configured funnels and their steps")
async def list_funnels(ctx: Context) -> Funnels:
    return Funnels(
        funnels=[
            FunnelDefinition(
                name=f.name,
                steps=[s.name for s in f.steps],
                conversion_window_seconds=f.conversion_window_seconds,
            )
            for f in ctx.funnels.values()
        ]
    )


FunnelName = Annotated[str, Path(description="A funnel name from GET /v1/funnels.")]


@router.get(
    "/{name}/summary",
    summary="Journeys, outcomes and per-step figures of a funnel",
    response_model=FunnelSummary,
)
async def summary(name: FunnelName, ctx: Context, window: Range, request: Request) -> Response:
    """Extra query parameters filter by segment attribute, e.g. `?device=mobile&tier=business`.
    Open journeys count as `in_progress`; `provisional` says whether any are in the range."""
    steps = [s.name for s in ctx.funnel(name).steps]
    segment = segment_of(request, _RESERVED)

    def compute() -> dict[str, Any]:
        result = funnel_queries.funnel_summary(
            ctx.store, name, steps, window.start_ms, window.end_ms, segment
        )
        return {
            **result,
            "start": window.start,
            "end": window.end,
            "provisional": result["outcomes"]["in_progress"] > 0,
        }

    key = ("summary", name, window.start_ms, window.end_ms, segment_key(segment))
    return await figures(ctx, key, FunnelSummary, compute)


@router.get(
    "/{name}/timeseries",
    summary="Journeys, reached and dropped per time bucket",
    response_model=FunnelTimeseries,
)
async def timeseries(
    name: FunnelName,
    ctx: Context,
    window: Range,
    request: Request,
    interval: Annotated[str, Query(description="Bucket size, 1m or more: 1m, 15m, 1h, 1d.")] = "1h",
    step: Annotated[str | None, Query(description="Only this step's reached/dropped.")] = None,
) -> Response:
    steps = [s.name for s in ctx.funnel(name).steps]
    if step is not None and step not in steps:
        raise Problem(400, "Bad request", f"{name} has no step {step!r}; steps: {steps}")
    seconds = interval_s(ctx, window, interval)
    assert seconds is not None
    segment = segment_of(request, _RESERVED)

    def compute() -> dict[str, Any]:
        rows = funnel_queries.funnel_timeseries(
            ctx.store, name, steps, window.start_ms, window.end_ms, seconds, segment
        )
        return {
            "funnel": name,
            "start": window.start,
            "end": window.end,
            "interval_seconds": seconds,
            "points": [_point(row, steps, step) for row in rows],
        }

    key = ("timeseries", name, window.start_ms, window.end_ms, seconds, step, segment_key(segment))
    return await figures(ctx, key, FunnelTimeseries, compute)


def _point(row: dict[str, Any], steps: list[str], step: str | None) -> dict[str, Any]:
    point: dict[str, Any] = {"time": iso_time(row["bucket_ms"]), "journeys": row["journeys"]}
    if step is None:
        point["steps"] = [
            {"step": s, "reached": r, "dropped": d}
            for s, r, d in zip(steps, row["reached"], row["dropped"], strict=True)
        ]
    else:
        k = steps.index(step)
        point.update(step=step, reached=row["reached"][k], dropped=row["dropped"][k])
    return point


@router.get(
    "/{name}/breakdown",
    summary="Funnel figures per value of one segment attribute",
    response_model=FunnelBreakdown,
)
async def breakdown(
    name: FunnelName,
    ctx: Context,
    window: Range,
    request: Request,
    by: Annotated[str, Query(description="A segment attribute: product_line, device, ...")],
) -> Response:
    steps = [s.name for s in ctx.funnel(name).steps]
    segment = segment_of(request, _RESERVED)

    def compute() -> dict[str, Any]:
        rows = funnel_queries.funnel_breakdown(
            ctx.store, name, steps, by, window.start_ms, window.end_ms, segment
        )
        return {
            "funnel": name,
            "by": by,
            "start": window.start,
            "end": window.end,
            "steps": steps,
            "values": rows,
        }

    key = ("breakdown", name, by, window.start_ms, window.end_ms, segment_key(segment))
    return await figures(ctx, key, FunnelBreakdown, compute)
