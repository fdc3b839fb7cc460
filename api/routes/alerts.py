"""/v1/alerts: current alerts, and silencing one."""

from __future__ import annotations

import time
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field

from cxpulse.api.deps import Context, parse_time_ms
from cxpulse.api.models import Alert, Alerts
from cxpulse.api.problems import Problem
from cxpulse.schemas.durations import parse_duration_ms
from cxpulse.sinks import alert_queries
from cxpulse.sinks import alerts as alert_rows

router = APIRouter(prefix="/v1/alerts", tags=["alerts"])
MAX_SILENCE_MS = 30 * 86_400_000


@router.get("", summary="Current alerts (firing and resolved), newest first")
def list_alerts(
    ctx: Context,
    state: Annotated[Literal["firing", "resolved"] | None, Query()] = None,
    start: Annotated[
        str | None,
        Query(
            description="Active at or after (RFC 3339)", json_schema_extra={"format": "date-time"}
        ),
    ] = None,
    end: Annotated[
        str | None,
        Query(description="Started before (RFC 3339)", json_schema_extra={"format": "date-time"}),
    ] = None,
) -> Alerts:
    start_ms = parse_time_ms(start, "start") if start else None
    end_ms = parse_time_ms(end, "end") if end else None
    rows = alert_queries.alerts(ctx.store, state, start_ms, end_ms)
    return Alerts(alerts=[Alert.model_validate(alert_rows.document(row)) for row in rows])


class SilenceRequest(BaseModel):
    """How long to silence: `duration` (e.g. 2h) or `until` (RFC 3339); at most 30 days."""

    duration: str | None = Field(None, examples=["2h"])
    until: str | None = Field(None, examples=["2026-11-24T08:00:00Z"])


@router.post("/{alert_id:path}/silence", summary="Silence an alert's notifications for a while")
def silence(
    ctx: Context,
    alert_id: Annotated[str, Path(description="An alert id from GET /v1/alerts.")],
    request: SilenceRequest,
) -> Alert:
    now_ms = time.time_ns() // 1_000_000
    if (request.duration is None) == (request.until is None):
        raise Problem(400, "Bad request", "give exactly one of duration and until")
    if request.duration is not None:
        try:
            until_ms = now_ms + parse_duration_ms(request.duration)
        except ValueError as exc:
            raise Problem(400, "Bad request", str(exc)) from None
    else:
        until_ms = parse_time_ms(str(request.until), "until")
    if not now_ms < until_ms <= now_ms + MAX_SILENCE_MS:
        raise Problem(400, "Bad request", "a silence ends in the future, within 30 days")
    current = alert_queries.alert(ctx.store, alert_id)
    if current is None:
        raise Problem(404, "Not found", f"no alert {alert_id!r}")
    alert_rows.silence(ctx.store, alert_id, until_ms, now_ms)
    updated = alert_queries.alert(ctx.store, alert_id)
    assert updated is not None
    return Alert.model_validate(alert_rows.document(updated))
