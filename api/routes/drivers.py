"""/v1/funnels/{name}/drivers: what drops off at a step more than the rest (design section 4b)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from cxpulse.api.deps import Context, Range, figures, segment_key, segment_of
from cxpulse.api.driver_models import FunnelDrivers
from cxpulse.api.problems import Problem
from cxpulse.api.routes.funnels import FunnelName
from cxpulse.sinks import driver_queries

router = APIRouter(prefix="/v1/funnels", tags=["funnels"])
# Query parameters that are not segment filters.
_RESERVED = {"start", "end", "step", "significant_only"}


@router.get(
    "/{name}/drivers",
    summary="Segment values and event facts that drop off at a step more than the rest",
    response_model=FunnelDrivers,
)
async def drivers(
    name: FunnelName,
    ctx: Context,
    window: Range,
    request: Request,
    step: Annotated[str, Query(description="A step after the first, e.g. troubleshoot.")],
    significant_only: Annotated[
        bool,
        Query(description="Only drivers that drop off significantly more than the rest."),
    ] = False,
) -> Response:
    """Every value tested (30 or more journeys) is listed with its `significant` flag unless
    `significant_only`; extra query parameters filter by segment attribute, e.g.
    `?tier=business`. Only closed journeys count: open ones have not dropped yet."""
    funnel = ctx.funnel(name)
    steps = [s.name for s in funnel.steps]
    if step not in steps:
        raise Problem(422, "Invalid request", f"{name} has no step {step!r}; steps: {steps}")
    index = steps.index(step)
    if index == 0:
        raise Problem(422, "Invalid request", f"{step!r} is the first step: nothing drops there")
    segment = segment_of(request, _RESERVED)

    def compute() -> dict[str, Any]:
        result = driver_queries.drivers(
            ctx.store, name, index, window.start_ms, window.end_ms, segment
        )
        ranked = result["drivers"]
        return {
            "funnel": name,
            "step": step,
            "start": window.start,
            "end": window.end,
            "population": result["population"],
            "dropped": result["dropped"],
            "rate": result["rate"],
            "drivers": [d for d in ranked if driver_queries.above_rest(d)]
            if significant_only
            else ranked,
        }

    key = (
        "drivers",
        name,
        step,
        significant_only,
        window.start_ms,
        window.end_ms,
        segment_key(segment),
    )
    return await figures(ctx, key, FunnelDrivers, compute)
