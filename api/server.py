"""Serving the API: uvicorn in a thread of `cxpulse up`, or in the foreground of `cxpulse api`."""

from __future__ import annotations

import os
import socket
import threading
import time

import uvicorn
from fastapi import FastAPI

from cxpulse.api.auth import ApiKeys, new_key
from cxpulse.streams.settings import Settings

KEY_FILE = "api_key"


class ApiError(RuntimeError):
    """A reason the API cannot start, for the person running it."""


def resolve_keys(settings: Settings, generate: bool) -> tuple[ApiKeys, str | None]:
    """The configured keys; else the key kept in the data dir (made when `generate`).

    Returns the keys and, when the key comes from the data dir, the key itself to show.
    """
    if settings.api_keys is not None:
        try:
            return ApiKeys.parse(settings.api_keys.get_secret_value()), None
        except ValueError as exc:
            raise ApiError(f"CXPULSE_API_KEYS: {exc}") from exc
    path = settings.data_dir.resolve() / KEY_FILE
    if not path.exists():
        if not generate:
            raise ApiError(
                "no API key: set CXPULSE_API_KEYS, or run `cxpulse up` once to generate one "
                f"(kept in {path})"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(new_key() + "\n")
    key = path.read_text().strip()
    return ApiKeys.parse(key), key


def _bind(settings: Settings) -> socket.socket:
    """The API's listening socket, bound here so a taken port is a clear error (uvicorn would
    log it and exit the process) and nothing can take the port between a check and the bind."""
    family = socket.AF_INET6 if ":" in settings.api_host else socket.AF_INET
    # Name the protocol: asyncio turns Nagle off (TCP_NODELAY) only on connections whose socket
    # says IPPROTO_TCP; with 0, every keep-alive response waited ~40 ms for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((settings.api_host, settings.api_port))
    except OSError as exc:
        sock.close()
        raise ApiError(
            f"cannot listen on {settings.api_host}:{settings.api_port} ({exc.strerror}); "
            "choose another port with CXPULSE_API_PORT"
        ) from exc
    return sock


def _server(app: FastAPI, settings: Settings) -> uvicorn.Server:
    config = uvicorn.Config(
        app,
        host=settings.api_host,
        port=settings.api_port,
        log_level="warning",
        access_log=False,
    )
    return uvicorn.Server(config)


def serve_forever(app: FastAPI, settings: Settings) -> None:
    sock = _bind(settings)
    _server(app, settings).run(sockets=[sock])


class BackgroundApi:
    """The API in a thread of this process (embedded mode shares the process's chdb store)."""

    def __init__(self, app: FastAPI, settings: Settings) -> None:
        self.server = _server(app, settings)
        self.socket = _bind(settings)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.socket]}, name="api", daemon=True
        )
        self.url = f"http://{settings.api_host}:{settings.api_port}"

    def start(self, timeout_s: float = 15.0) -> None:
        self.thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise ApiError(f"the API did not start on {self.url}")
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.socket.close()

    @property
    def alive(self) -> bool:
        return self.thread.is_alive()
