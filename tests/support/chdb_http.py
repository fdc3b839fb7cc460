"""ClickHouse's HTTP interface served by the real ClickHouse engine (chdb), for tests.

No ClickHouse server can run on the development machines, but clickhouse-connect only needs
ClickHouse's HTTP protocol: this server accepts it (query in the URL or body, data in the body,
`param_*` bindings, settings, compressed bodies) and executes every statement in chdb, so the
`ServerStore` code path is exercised against the same engine without a mock of its answers.

Fault tests make it fail at the protocol level: `fail()` answers every request with HTTP 500 and a
ClickHouse exception, `go_down()` closes the listening socket (connections are refused) while the
database stays open, and `recover()` / `come_back()` undo that on the same port.
"""

from __future__ import annotations

import gzip
import socket
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import cramjam

# URL parameters that are part of the HTTP protocol, not ClickHouse settings.
_PROTOCOL_PARAMS = {
    "query", "database", "default_format", "query_id", "session_id", "session_timeout",
    "session_check", "compress", "decompress", "user", "password", "wait_end_of_query",
    "enable_http_compression", "send_progress_in_http_headers", "http_headers_progress_interval_ms",
    "client_protocol_version",
}  # fmt: skip
_DECODERS = {
    "gzip": gzip.decompress,
    "deflate": zlib.decompress,
    "lz4": lambda b: bytes(cramjam.lz4.decompress(b)),
    "zstd": lambda b: bytes(cramjam.zstd.decompress(b)),
    "br": lambda b: bytes(cramjam.brotli.decompress(b)),
}


class ChdbHttpServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, path: Path) -> None:
        from chdb import session

        super().__init__(("127.0.0.1", 0), _Handler)
        self.session = session.Session(str(path))
        self.lock = threading.Lock()
        self.requests: list[str] = []
        self.failing = False
        self.refused: list[float] = []  # when (monotonic) each request was refused while failing
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://default:@127.0.0.1:{self.server_address[1]}"

    def __enter__(self) -> ChdbHttpServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._thread.is_alive():
            self.shutdown()
        self.server_close()
        self.session.close()

    def fail(self) -> None:
        """Answer every request with HTTP 500 and a ClickHouse exception until `recover()`."""
        self.failing = True

    def recover(self) -> None:
        self.failing = False

    def go_down(self) -> None:
        """Stop listening: clients get "connection refused" until `come_back()`."""
        self.shutdown()
        self.socket.close()

    def come_back(self) -> None:
        """Listen again on the same port, with the same database."""
        self.socket = socket.socket(self.address_family, self.socket_type)
        self.server_bind()  # the port chosen at the first bind (allow_reuse_address is set)
        self.server_activate()
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()


class _Handler(BaseHTTPRequestHandler):
    server: ChdbHttpServer

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self._handle(b"")

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        encoding = self.headers.get("Content-Encoding")
        if encoding:
            body = _DECODERS[encoding](body)
        self._handle(body)

    def _handle(self, body: bytes) -> None:
        params = dict(parse_qsl(urlsplit(self.path).query, keep_blank_values=True))
        query = params.get("query")
        if query is None:
            query, body = body.decode(), b""
        elif body:
            query = f"{query}\n{body.decode()}"
        bindings = {k[6:]: v for k, v in params.items() if k.startswith("param_")}
        settings = {
            k: v
            for k, v in params.items()
            if k not in _PROTOCOL_PARAMS and not k.startswith("param_")
        }
        fmt = params.get("default_format", "TabSeparated")
        server = self.server
        server.requests.append(query)
        if server.failing:
            server.refused.append(time.monotonic())
            self._error(b"Code: 202. DB::Exception: Too many simultaneous queries. (outage)")
            return
        try:
            with server.lock:
                if "database" in params:
                    server.session.query(f"USE {params['database']}")
                for name, value in settings.items():
                    server.session.query(f"SET {name} = '{value}'")
                result = server.session.query(query, fmt, params=bindings or None)
            payload = bytes(result.bytes()) if result is not None else b""
        except Exception as exc:
            self._error(str(exc).encode())
            return
        self.send_response(200)
        self.send_header("X-ClickHouse-Timezone", "UTC")
        self.send_header("X-ClickHouse-Server-Display-Name", "chdb-http")
        self.send_header("X-ClickHouse-Summary", '{"read_rows":"0","written_rows":"0"}')
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _error(self, message: bytes) -> None:
        self.send_response(500)
        self.send_header(
            "X-ClickHouse-Exception-Code",
            message.split(b".")[0][6:].decode() if message.startswith(b"Code: ") else "1",
        )
        self.send_header("Content-Length", str(len(message)))
        self.end_headers()
        self.wfile.write(message)
