"""The metrics API (FastAPI): one router per resource, queries only through sinks/queries.py.

Responses are JSON with `freshness_seconds`; errors are RFC 9457 problem+json; every /v1 route
needs a bearer API key; health, readiness and metrics are open. Short-lived caching: an ETag of
the figures and `Cache-Control: max-age=5`, so dashboards polling every few seconds get 304s.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Sequence

import orjson
from fastapi import Depends, FastAPI, Request, Response
from starlette.middleware.gzip import GZipMiddleware

from cxpulse.api import problems
from cxpulse.api.auth import ApiKeys
from cxpulse.api.deps import ApiContext, require_key
from cxpulse.api.routes import alerts, contact_center, funnels, meta, self_service
from cxpulse.deploy.settings import Settings
from cxpulse.sinks.store import Store
from cxpulse.streams.funnels import FunnelSpec

CACHE_SECONDS = 5


def create_api(
    store: Store, funnel_specs: Sequence[FunnelSpec], settings: Settings, keys: ApiKeys
) -> FastAPI:
    app = FastAPI(
        title="cxpulse metrics API",
        version="1",
        description="Self-service funnels, contact-center KPIs, containment and freshness.",
        responses=problems.PROBLEM_RESPONSES,
    )
    app.state.context = ApiContext(store, {f.name: f for f in funnel_specs}, settings, keys)
    problems.install(app)
    secured = [Depends(require_key)]
    for router in (funnels.router, contact_center.router, self_service.router, alerts.router):
        app.include_router(router, dependencies=secured)
    app.include_router(meta.router)
    # Registered first, so it runs inside the gzip middleware and sees the plain body.
    app.middleware("http")(_etag)
    app.add_middleware(GZipMiddleware, minimum_size=1024)
    return app


Handler = Callable[[Request], Awaitable[Response]]


async def _etag(request: Request, call_next: Handler) -> Response:
    response = await call_next(request)
    if request.method != "GET" or response.status_code != 200:
        return response
    if not request.url.path.startswith("/v1/"):
        return response
    body = b"".join([chunk async for chunk in response.body_iterator])  # type: ignore[attr-defined]
    # The tag covers the data, not `freshness_seconds` (which ticks every second): unchanged
    # figures revalidate as 304 while they stay the same.
    doc = orjson.loads(body)
    if isinstance(doc, dict):
        doc.pop("freshness_seconds", None)
    digest = hashlib.blake2b(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS), digest_size=12)
    tag = f'"{digest.hexdigest()}"'
    if tag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers={"ETag": tag})
    headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
    headers.update({"ETag": tag, "Cache-Control": f"private, max-age={CACHE_SECONDS}"})
    return Response(body, status_code=200, headers=headers, media_type=response.media_type)
