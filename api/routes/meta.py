"""Freshness, health, readiness and Prometheus metrics of the API."""

from __future__ import annotations

import logging
import time

from fastapi import APIRouter, Depends, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from cxpulse.api.deps import Context, lag_seconds, newest_events_ms, require_key
from cxpulse.api.models import FreshnessReport, Health, PartitionFreshness, Ready
from cxpulse.api.problems import Problem
from cxpulse.sinks import funnel_queries
from cxpulse.sinks.store import StoreError

log = logging.getLogger(__name__)
router = APIRouter(tags=["operations"])


# Like every /v1 route it needs a key (app.py secures whole routers; this one also holds the
# open health routes, so the freshness route secures itself).
@router.get(
    "/v1/freshness",
    summary="How old the newest stored event is, per partition",
    dependencies=[Depends(require_key)],
)
async def freshness(ctx: Context) -> FreshnessReport:
    now = time.time()
    newest = await newest_events_ms(ctx)
    partitions = [
        PartitionFreshness(
            partition=p["partition"],
            newest_event_at_ms=p["newest_ms"],
            lag_seconds=round(now - p["newest_ms"] / 1000, 3),
        )
        for p in newest
    ]
    return FreshnessReport(partitions=partitions, freshness_seconds=lag_seconds(newest))


@router.get("/healthz", summary="The process is up (no auth)")
async def healthz() -> Health:
    return Health(status="ok")


@router.get("/readyz", summary="The store answers and the data is fresh (no auth)")
def readyz(ctx: Context) -> Ready:
    """Asks the store itself, never the cache: readiness means the store answers now."""
    try:
        lag = lag_seconds(funnel_queries.freshness(ctx.store))
    except StoreError as exc:
        # An open route: the reason (hosts, users, ClickHouse's text) goes to the log only.
        log.warning("not ready: the store does not answer: %s", exc)
        raise Problem(503, "Not ready", "the store does not answer") from None
    limit = ctx.settings.api_ready_lag_seconds
    if lag is None or lag > limit:
        raise Problem(503, "Not ready", f"newest stored event is {lag} s old (limit {limit} s)")
    return Ready(status="ready", freshness_seconds=lag)


@router.get("/metrics", summary="Prometheus metrics (no auth)", response_class=Response)
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
