"""What every route depends on: the app's context (store, funnels, settings) and the caller.

Dependencies are `async def` (cheap, no I/O): FastAPI runs sync ones in the thread pool, a
thread hop per dependency per request.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Query, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from cxpulse.api.auth import ApiKeys
from cxpulse.api.cache import ResultCache
from cxpulse.api.etag import Payload
from cxpulse.api.problems import Problem
from cxpulse.schemas.durations import parse_duration_ms
from cxpulse.schemas.times import iso_time
from cxpulse.sinks import funnel_queries
from cxpulse.sinks.store import Store
from cxpulse.streams.funnels import FunnelSpec
from cxpulse.streams.settings import Settings

DAY_MS = 86_400_000
# What ClickHouse's DateTime64 holds comfortably, and any real event time.
_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
_LATEST = datetime(2200, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class ApiContext:
    store: Store
    funnels: dict[str, FunnelSpec]
    settings: Settings
    keys: ApiKeys
    # Payloads of the figure routes and the freshness lookup, for CXPULSE_API_CACHE_SECONDS.
    cache: ResultCache[Any]

    def funnel(self, name: str) -> FunnelSpec:
        """The funnel a route's path names; a 404 problem when none is configured so."""
        funnel = self.funnels.get(name)
        if funnel is None:
            raise Problem(404, "Not found", f"no funnel named {name!r}; see GET /v1/funnels")
        return funnel


async def context(request: Request) -> ApiContext:
    return request.app.state.context  # type: ignore[no-any-return]


Context = Annotated[ApiContext, Depends(context)]
_bearer = HTTPBearer(auto_error=False, description="An API key from CXPULSE_API_KEYS.")


async def require_key(
    ctx: Context,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """RFC 6750: no key is a bare `Bearer` challenge; a key not (or no longer) configured is
    `invalid_token`, also 401 (403 would say the key is valid but lacks a permission)."""
    if credentials is None:
        raise Problem(401, "Unauthorized", "send 'Authorization: Bearer <API key>'")
    if not ctx.keys.accepts(credentials.credentials):
        raise Problem(
            401,
            "Unauthorized",
            "the API key is not (or no longer) accepted",
            challenge='Bearer error="invalid_token"',
        )


def parse_time_ms(text: str, name: str) -> int:
    try:
        stamp = datetime.fromisoformat(text)
    except ValueError:
        raise Problem(400, "Bad request", f"{name} is not an RFC 3339 time: {text!r}") from None
    if stamp.tzinfo is None:
        raise Problem(400, "Bad request", f"{name} needs a UTC offset, e.g. {text}Z")
    if not _EARLIEST <= stamp < _LATEST:
        raise Problem(400, "Bad request", f"{name} must be between 1970 and 2200")
    return int(stamp.timestamp()) * 1000 + stamp.microsecond // 1000


def segment_of(request: Request, reserved: set[str]) -> dict[str, str]:
    """The query parameters beyond a route's own: exact segment-attribute filters."""
    return {k: v for k, v in request.query_params.items() if k not in reserved}


def segment_key(segment: dict[str, str]) -> tuple[tuple[str, str], ...]:
    """A segment filter as part of a cache key: the same filters in any order are one key."""
    return tuple(sorted(segment.items()))


def series(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Query buckets (`bucket_ms`) as response points that start with their `time`."""
    return [
        {"time": iso_time(p["bucket_ms"]), **{k: v for k, v in p.items() if k != "bucket_ms"}}
        for p in points
    ]


@dataclass(frozen=True)
class TimeRange:
    start_ms: int
    end_ms: int

    @property
    def start(self) -> str:
        return iso_time(self.start_ms)

    @property
    def end(self) -> str:
        return iso_time(self.end_ms)


async def time_range(
    ctx: Context,
    start: Annotated[
        str | None,
        Query(
            description="RFC 3339, inclusive. Default: 24 h before end.",
            json_schema_extra={"format": "date-time"},
        ),
    ] = None,
    end: Annotated[
        str | None,
        Query(
            description="RFC 3339, exclusive. Default: now.",
            json_schema_extra={"format": "date-time"},
        ),
    ] = None,
) -> TimeRange:
    end_ms = parse_time_ms(end, "end") if end else time.time_ns() // 1_000_000
    start_ms = parse_time_ms(start, "start") if start else end_ms - DAY_MS
    if end_ms <= start_ms:
        raise Problem(400, "Bad request", "end must be after start")
    limit = ctx.settings.api_max_range_days
    if end_ms - start_ms > limit * DAY_MS:
        raise Problem(400, "Range too long", f"a request may read at most {limit} days")
    return TimeRange(start_ms, end_ms)


Range = Annotated[TimeRange, Depends(time_range)]


def interval_s(ctx: ApiContext, window: TimeRange, interval: str | None) -> int | None:
    """The bucket size in seconds (1 minute or more), within the points limit of a response."""
    if interval is None:
        return None
    try:
        seconds = parse_duration_ms(interval) // 1000
    except ValueError as exc:
        raise Problem(400, "Bad request", str(exc)) from None
    if seconds < 60 or seconds % 60:
        raise Problem(400, "Bad request", "interval must be whole minutes, 1m or more")
    limit = ctx.settings.api_max_range_days
    if seconds > limit * DAY_MS // 1000:
        raise Problem(400, "Bad request", f"interval may be at most {limit}d, the longest range")
    points = (window.end_ms - window.start_ms) // (seconds * 1000) + 1
    if points > ctx.settings.api_max_points:
        raise Problem(
            400,
            "Too many points",
            f"{points} buckets; at most {ctx.settings.api_max_points}: widen the interval",
        )
    return seconds


T = TypeVar("T")


async def cached(ctx: ApiContext, key: Hashable, compute: Callable[[], T]) -> T:
    """`compute()` through the cache: a hit is served on the event loop; a miss queries in a
    worker thread (sharing the query of identical requests in flight)."""
    hit: T | None = ctx.cache.fresh(key, compute)
    if hit is not None:
        return hit
    return await run_in_threadpool(ctx.cache.get, key, compute)


async def newest_events_ms(ctx: ApiContext) -> list[dict[str, int]]:
    """Per partition, the newest stored event time: one lookup per cache period."""
    return await cached(ctx, ("freshness",), lambda: funnel_queries.freshness(ctx.store))


def lag_seconds(partitions: list[dict[str, int]]) -> float | None:
    """Wall clock minus the newest event time stored (the stalest partition decides)."""
    if not partitions:
        return None
    newest = min(p["newest_ms"] for p in partitions)
    return round(time.time() - newest / 1000, 3)


async def figures(
    ctx: ApiContext, key: Hashable, model: type[BaseModel], compute: Callable[[], dict[str, Any]]
) -> Response:
    """The response of a figure route: its figures cached under `key` (the route and its
    normalized parameters), encoded, checked and tagged once, with the current freshness."""
    payload = await cached(ctx, key, lambda: _checked_payload(model, compute()))
    return payload.response(lag_seconds(await newest_events_ms(ctx)))


def _checked_payload(model: type[BaseModel], figures: dict[str, Any]) -> Payload:
    """`figures` encoded, once the bytes sent are known to match the route's response model.

    FastAPI checks what a route returns against its `response_model` on every request, but a
    figure route returns ready bytes (its figures encoded once per cached result), which FastAPI
    passes on unchecked: they are checked here, once per cached result, so a cache hit costs
    nothing and figures off the contract are a 500, as on any other route.
    """
    payload = Payload.of(figures)
    model.model_validate_json(payload.with_freshness(None))
    return payload
