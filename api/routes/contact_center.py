"""/v1/contact-center/kpis: service level, ASA, abandonment, AHT, FCR, CSAT/NPS/CES ..."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response

from cxpulse.api.deps import Context, Range, figures, interval_s, series
from cxpulse.api.models import ContactKpis
from cxpulse.sinks import contact_queries

router = APIRouter(prefix="/v1/contact-center", tags=["contact center"])
#: The channels of the event contract (`cc.contact_started`): any other matches no contact.
Channel = Literal["voice", "chat", "email"]


@router.get(
    "/kpis",
    summary="Contact-center KPIs of contacts started in the range",
    response_model=ContactKpis,
)
async def kpis(
    ctx: Context,
    window: Range,
    queue: Annotated[str | None, Query()] = None,
    team: Annotated[str | None, Query()] = None,
    channel: Annotated[Channel | None, Query()] = None,
    shift: Annotated[str | None, Query(description="A shift of CXPULSE_SHIFTS")] = None,
    interval: Annotated[str | None, Query(description="Also a series: 1m, 15m, 1h, 1d")] = None,
) -> Response:
    """FCR and IVR containment are provisional until their follow-up windows (7 d, 24 h) have
    passed for every counted contact: `fcr_final` / `ivr_final` say whether they have."""
    filters = {
        k: v
        for k, v in {"queue": queue, "team": team, "channel": channel, "shift": shift}.items()
        if v is not None
    }
    seconds = interval_s(ctx, window, interval)

    def compute() -> dict[str, Any]:
        [overall] = contact_queries.contact_kpis(ctx.store, window.start_ms, window.end_ms, filters)
        result: dict[str, Any] = {"start": window.start, "end": window.end, **overall}
        if seconds is not None:
            result["series"] = series(
                contact_queries.contact_kpis(
                    ctx.store, window.start_ms, window.end_ms, filters, seconds
                )
            )
        return result

    key = ("kpis", window.start_ms, window.end_ms, seconds, tuple(sorted(filters.items())))
    return await figures(ctx, key, ContactKpis, compute)
