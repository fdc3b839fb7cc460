"""/v1/self-service/containment: containment, cost to serve, savings and time to resolution."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from cxpulse.api.deps import (
    Context,
    Range,
    figures,
    interval_s,
    segment_key,
    segment_of,
    series,
)
from cxpulse.api.models import Containment
from cxpulse.sinks import containment_queries

router = APIRouter(prefix="/v1/self-service", tags=["self-service"])
_RESERVED = {"start", "end", "interval"}


@router.get(
    "/containment",
    summary="Self-service containment and cost to serve",
    response_model=Containment,
)
async def containment(
    ctx: Context,
    window: Range,
    request: Request,
    interval: Annotated[str | None, Query(description="Also a series: 1m, 15m, 1h, 1d")] = None,
) -> Response:
    """Over portal journeys started in the range; extra query parameters filter by segment.
    Rates, costs and TTR count closed journeys; `currency` is CXPULSE_CURRENCY."""
    segment = segment_of(request, _RESERVED)
    seconds = interval_s(ctx, window, interval)
    costs = {
        "assisted_cost": ctx.settings.assisted_cost,
        "self_service_cost": ctx.settings.self_service_cost,
    }

    def compute() -> dict[str, Any]:
        [overall] = containment_queries.containment(
            ctx.store, window.start_ms, window.end_ms, filters=segment, **costs
        )
        result: dict[str, Any] = {
            "start": window.start,
            "end": window.end,
            **overall,
            "currency": ctx.settings.currency,
        }
        if seconds is not None:
            points = containment_queries.containment(
                ctx.store,
                window.start_ms,
                window.end_ms,
                filters=segment,
                interval_s=seconds,
                **costs,
            )
            result["series"] = series(points)
        return result

    key = ("containment", window.start_ms, window.end_ms, seconds, segment_key(segment))
    return await figures(ctx, key, Containment, compute)
