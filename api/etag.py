"""HTTP caching of /v1 responses: an ETag of the figures, `Cache-Control: max-age`, and 304s.

The tag covers the figures, not `freshness_seconds` (which ticks every second): unchanged figures
revalidate as 304 while they stay the same. Routes serving cached figures send a `Payload`, whose
body and tag are computed once per cached result; other /v1 responses are hashed here.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import Response
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CACHE_SECONDS = 5
CACHE_CONTROL = f"private, max-age={CACHE_SECONDS}"


def tag_of(body: bytes) -> str:
    return f'"{hashlib.blake2b(body, digest_size=12).hexdigest()}"'


@dataclass(frozen=True)
class Payload:
    """A response's figures encoded once: JSON without `freshness_seconds`, and its ETag."""

    body: bytes
    etag: str

    @classmethod
    def of(cls, doc: dict[str, Any]) -> Payload:
        body = orjson.dumps(doc)
        return cls(body, tag_of(body))

    def with_freshness(self, freshness_seconds: float | None) -> bytes:
        """The figures with the current freshness appended: no re-encoding per request."""
        freshness = b'"freshness_seconds":' + orjson.dumps(freshness_seconds) + b"}"
        return self.body[:-1] + (b"," if len(self.body) > 2 else b"") + freshness

    def response(self, freshness_seconds: float | None) -> Response:
        headers = {"ETag": self.etag, "Cache-Control": CACHE_CONTROL}
        body = self.with_freshness(freshness_seconds)
        return Response(body, media_type="application/json", headers=headers)


class ETagMiddleware:
    """Tags successful /v1 GET responses (those without a tag of their own by hashing their
    figures) and answers 304 when `If-None-Match` names the tag."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "GET"
            or not scope["path"].startswith("/v1/")
        ):
            await self.app(scope, receive, send)
            return
        wanted = Headers(scope=scope).get("if-none-match", "")
        start: Message = {}
        chunks: list[bytes] = []
        mode = "pass"  # pass: send as it is; 304: not modified; hash: tag the buffered body

        async def tagging_send(message: Message) -> None:
            nonlocal start, mode
            if message["type"] == "http.response.start":
                tag = MutableHeaders(scope=message).get("etag")
                if message["status"] != 200 or (tag is not None and tag not in wanted):
                    mode = "pass"
                    await send(message)
                elif tag is None:
                    mode, start = "hash", message
                else:
                    mode = "304"
                    await send(_not_modified(tag))
                return
            more = message.get("more_body", False)
            if mode == "pass":
                await send(message)
            elif mode == "304":
                if not more:
                    await send({"type": "http.response.body", "body": b""})
            else:
                chunks.append(message.get("body", b""))
                if not more:
                    await self._send_tagged(start, b"".join(chunks), wanted, send)

        await self.app(scope, receive, tagging_send)

    @staticmethod
    async def _send_tagged(start: Message, body: bytes, wanted: str, send: Send) -> None:
        doc = orjson.loads(body)
        if isinstance(doc, dict):
            doc.pop("freshness_seconds", None)
        tag = tag_of(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS))
        if tag in wanted:
            await send(_not_modified(tag))
            body = b""
        else:
            headers = MutableHeaders(scope=start)
            headers["ETag"] = tag
            headers["Cache-Control"] = CACHE_CONTROL
            await send(start)
        await send({"type": "http.response.body", "body": body})


def _not_modified(tag: str) -> Message:
    headers = [(b"etag", tag.encode()), (b"cache-control", CACHE_CONTROL.encode())]
    return {"type": "http.response.start", "status": 304, "headers": headers}
