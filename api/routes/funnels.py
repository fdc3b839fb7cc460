"""/v1/funnels: definitions, summary, time series and breakdown of each funnel."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request

from cxpulse.api.deps import Context, Range, freshness_seconds, interval_s, iso_time
from cxpulse.api.problems import Problem
from cxpulse.sinks import queries
from cxpulse.streams.funnels import FunnelSpec

router = APIRouter(prefix="/v1/funnels", tags=["funnels"])
# Query parameters that are not segment filters.
_RESERVED = {"start", "end", "interval", "step", "by"}


def _funnel(ctx: Context, name: str) -> FunnelSpec:
    funnel = ctx.funnels.get(name)
    if funnel is None:
        raise Problem(404, "Not found", f"no funnel named {name!r}; see GET /v1/funnels")
    return funnel


def _segment(request: Request) -> dict[str, str]:
    return {k: v for k, v in request.query_params.items() if k not in _RESERVED}


@router.get("", summary="The configured funnels and their steps")
def list_funnels(ctx: Context) -> dict[str, Any]:
    return {
        "funnels": [
            {
                "name": f.name,
                "steps": [s.name for s in f.steps],
                "conversion_window_seconds": f.conversion_window_seconds,
            }
            for f in ctx.funnels.values()
        ]
    }


FunnelName = Annotated[str, Path(description="A funnel name from GET /v1/funnels.")]


@router.get("/{name}/summary", summary="Journeys, outcomes and per-step figures of a funnel")
def summary(name: FunnelName, ctx: Context, window: Range, request: Request) -> dict[str, Any]:
    """Extra query parameters filter by segment attribute, e.g. `?device=mobile&tier=business`.

    Open journeys count as `in_progress`; `provisional` says whether any are in the range."""
    funnel = _funnel(ctx, name)
    steps = [s.name for s in funnel.steps]
    result = queries.funnel_summary(
        ctx.store, name, steps, window.start_ms, window.end_ms, _segment(request)
    )
    return {
        **result,
        "start": window.start,
        "end": window.end,
        "provisional": result["outcomes"]["in_progress"] > 0,
        "freshness_seconds": freshness_seconds(ctx),
    }


@router.get("/{name}/timeseries", summary="Journeys, reached and dropped per time bucket")
def timeseries(
    name: FunnelName,
    ctx: Context,
    window: Range,
    request: Request,
    interval: Annotated[str, Query(description="Bucket size, 1m or more: 1m, 15m, 1h, 1d.")] = "1h",
    step: Annotated[str | None, Query(description="Only this step's reached/dropped.")] = None,
) -> dict[str, Any]:
    funnel = _funnel(ctx, name)
    steps = [s.name for s in funnel.steps]
    if step is not None and step not in steps:
        raise Problem(400, "Bad request", f"{name} has no step {step!r}; steps: {steps}")
    seconds = interval_s(ctx, window, interval)
    assert seconds is not None
    rows = queries.funnel_timeseries(
        ctx.store, name, steps, window.start_ms, window.end_ms, seconds, _segment(request)
    )
    points = []
    for row in rows:
        point: dict[str, Any] = {"time": iso_time(row["bucket_ms"]), "journeys": row["journeys"]}
        if step is None:
            point["steps"] = [
                {"step": s, "reached": r, "dropped": d}
                for s, r, d in zip(steps, row["reached"], row["dropped"], strict=True)
            ]
        else:
            k = steps.index(step)
            point.update(step=step, reached=row["reached"][k], dropped=row["dropped"][k])
        points.append(point)
    return {
        "funnel": name,
        "start": window.start,
        "end": window.end,
        "interval_seconds": seconds,
        "points": points,
        "freshness_seconds": freshness_seconds(ctx),
    }


@router.get("/{name}/breakdown", summary="Funnel figures per value of one segment attribute")
def breakdown(
    name: FunnelName,
    ctx: Context,
    window: Range,
    request: Request,
    by: Annotated[str, Query(description="A segment attribute: product_line, device, ...")],
) -> dict[str, Any]:
    funnel = _funnel(ctx, name)
    steps = [s.name for s in funnel.steps]
    rows = queries.funnel_breakdown(
        ctx.store, name, steps, by, window.start_ms, window.end_ms, _segment(request)
    )
    return {
        "funnel": name,
        "by": by,
        "start": window.start,
        "end": window.end,
        "steps": steps,
        "values": rows,
        "freshness_seconds": freshness_seconds(ctx),
    }
