"""The metrics API (FastAPI): one router per resource, figures only from the query modules.

Responses are JSON shaped by the models of api/models.py, which /openapi.json publishes as the
contract; figures carry `freshness_seconds`; errors are RFC 9457 problem+json; every /v1 route
needs a bearer API key; health, readiness and metrics are open. Short-lived caching: figures are
computed once per CXPULSE_API_CACHE_SECONDS for identical requests (api/cache.py), and carry an
ETag and `Cache-Control: max-age=5`, so dashboards polling every few seconds get 304s.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import Depends, FastAPI
from starlette.middleware.gzip import GZipMiddleware

from cxpulse.api import problems
from cxpulse.api.auth import ApiKeys
from cxpulse.api.cache import ResultCache
from cxpulse.api.deps import ApiContext, require_key
from cxpulse.api.etag import ETagMiddleware
from cxpulse.api.routes import (
    alerts,
    changes,
    compare,
    contact_center,
    drivers,
    funnels,
    impact,
    meta,
    self_service,
)
from cxpulse.sinks.store import Store
from cxpulse.streams.funnels import FunnelSpec
from cxpulse.streams.settings import Settings


def create_api(
    store: Store, funnel_specs: Sequence[FunnelSpec], settings: Settings, keys: ApiKeys
) -> FastAPI:
    app = FastAPI(
        title="cxpulse metrics API",
        version="1",
        description="Self-service funnels, contact-center KPIs, containment and freshness.",
        responses=problems.PROBLEM_RESPONSES,
    )
    cache: ResultCache[Any] = ResultCache(settings.api_cache_seconds)
    app.state.context = ApiContext(store, {f.name: f for f in funnel_specs}, settings, keys, cache)
    problems.install(app)
    secured = [Depends(require_key)]
    for router in (funnels.router, contact_center.router, self_service.router, alerts.router):
        app.include_router(router, dependencies=secured)
    app.include_router(changes.router, dependencies=secured)
    app.include_router(impact.router, dependencies=secured)
    app.include_router(compare.router, dependencies=secured)
    app.include_router(drivers.router, dependencies=secured)
    app.include_router(meta.router)
    # Added first, so it runs inside the gzip middleware and sees the plain body.
    app.add_middleware(ETagMiddleware)
    app.add_middleware(GZipMiddleware, minimum_size=1024)
    return app
