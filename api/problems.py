"""RFC 9457 problem details for every error the API returns: never a stack trace."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from cxpulse.sinks.query_sql import QueryError
from cxpulse.sinks.store import StoreError

log = logging.getLogger(__name__)
MEDIA_TYPE = "application/problem+json"


class ProblemModel(BaseModel):
    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    errors: list[dict[str, Any]] | None = None


class Problem(Exception):
    """Raised by handlers for a 4xx/5xx with a title and a detail for the caller; a 401 carries
    its RFC 6750 challenge (`WWW-Authenticate`), plain `Bearer` unless told otherwise."""

    def __init__(
        self, status: int, title: str, detail: str | None = None, challenge: str = "Bearer"
    ) -> None:
        super().__init__(detail or title)
        self.status, self.title, self.detail = status, title, detail
        self.challenge = challenge


def problem_response(
    status: int, title: str, detail: str | None = None, challenge: str = "Bearer", **extra: Any
) -> JSONResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    headers = {"WWW-Authenticate": challenge} if status == 401 else None
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


# Declared on every route so the OpenAPI document says what errors look like. No 403: a key is
# either accepted (every route) or not (401), there are no per-route permissions.
PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ProblemModel, "content": {MEDIA_TYPE: {}}} for code in (400, 401, 404, 422, 503)
}
PROBLEM_RESPONSES[401]["headers"] = {
    "WWW-Authenticate": {
        "description": 'RFC 6750: `Bearer` without a key, `Bearer error="invalid_token"` with an '
        "unknown one.",
        "schema": {"type": "string"},
    }
}


def install(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(_request: Request, exc: Problem) -> JSONResponse:
        return problem_response(exc.status, exc.title, exc.detail, exc.challenge)

    @app.exception_handler(QueryError)
    async def _query(_request: Request, exc: QueryError) -> JSONResponse:
        return problem_response(400, "Bad request", str(exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", ""))}
            for e in exc.errors()
        ]
        return problem_response(422, "Invalid request", "see errors", errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem_response(exc.status_code, str(exc.detail))

    @app.exception_handler(StoreError)
    async def _store(_request: Request, exc: StoreError) -> JSONResponse:
        log.error("store error: %s", exc)
        return problem_response(503, "Store unavailable", "the store did not answer; retry")

    @app.exception_handler(Exception)
    async def _crash(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return problem_response(500, "Internal error", "the error was logged")
