"""Serving the API: it listens on the configured port and says so clearly when it cannot."""

from __future__ import annotations

import socket
import urllib.request

import pytest
from fastapi import FastAPI

from cxpulse.api.server import ApiError, BackgroundApi
from cxpulse.deploy.kafka import free_port
from cxpulse.streams.settings import Settings


def _app() -> FastAPI:
    app = FastAPI()
    app.get("/ping")(lambda: {"ok": True})
    return app


def test_the_api_serves_on_its_port_and_refuses_a_taken_one() -> None:
    port = free_port()
    settings = Settings(api_host="127.0.0.1", api_port=port)
    api = BackgroundApi(_app(), settings)
    api.start()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=5) as response:
            assert response.read() == b'{"ok":true}'
        # asyncio sets TCP_NODELAY on accepted connections only when the listening socket names
        # IPPROTO_TCP (protocol 0 cost ~40 ms per keep-alive response in the API benchmark).
        assert api.socket.proto == socket.IPPROTO_TCP
        with pytest.raises(
            ApiError, match=rf"cannot listen on 127\.0\.0\.1:{port} .*CXPULSE_API_PORT"
        ):
            BackgroundApi(_app(), settings)
    finally:
        api.stop()
    assert not api.alive
    with socket.socket() as probe:  # stopping released the port
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", port))
