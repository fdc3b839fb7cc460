"""One store interface over two ClickHouse backends that run identical SQL.

`ChdbStore` is the embedded default (ClickHouse in-process, one process per database directory);
`ServerStore` talks to a ClickHouse server through clickhouse-connect. Both exchange data in the
same text formats (JSONEachRow in, JSON out) and the same session settings, so a query that passes
its tests on chdb means the same thing on a server.
"""

from __future__ import annotations

import re
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import orjson

# Settings both backends apply to every query: 64-bit integers as JSON numbers (not strings).
SESSION_SETTINGS: dict[str, int] = {
    "output_format_json_quote_64bit_integers": 0,
    # events_raw.payload arrives as the event's JSON object and is stored as its text
    # (streams/keyed.py); ClickHouse's default since 23.x, set so an older server agrees.
    "input_format_json_read_objects_as_strings": 1,
}

Row = Mapping[str, Any]


# ClickHouse's codes for rows it cannot read (parse and type errors): the data is at fault, not
# the store, so retrying the same rows can never succeed.
_BAD_DATA_CODES = frozenset(
    {6, 25, 26, 27, 38, 41, 53, 69, 70, 72, 117, 131, 321, 349, 376, 377, 691}
)
_CODE = re.compile(r"\bCode: (\d+)\. DB::Exception")


class StoreError(RuntimeError):
    """A query or insert the store refused, with ClickHouse's own message."""

    @property
    def bad_data(self) -> bool:
        """Whether ClickHouse refused the rows themselves, rather than being unavailable."""
        match = _CODE.search(str(self))
        return match is not None and int(match.group(1)) in _BAD_DATA_CODES


def encode_rows(rows: Iterable[Row]) -> bytes:
    """Rows as JSONEachRow, the one insert format of both backends."""
    return b"\n".join(orjson.dumps(row) for row in rows)


class Store(ABC):
    """What the rest of cxpulse may ask of ClickHouse."""

    backend: str
    database: str

    @abstractmethod
    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        """Run a statement that returns nothing (DDL, INSERT ... SELECT, OPTIMIZE)."""

    @abstractmethod
    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """Rows of a SELECT as dicts. Parameters use ClickHouse's `{name:Type}` placeholders."""

    @abstractmethod
    def insert(self, table: str, rows: Iterable[Row]) -> int:
        """Insert rows (dicts keyed by column name); returns how many were sent."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the connection; the default has nothing to release."""

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_ESCAPES = str.maketrans({"\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r", "\0": "\\0"})


def _escape(value: Any) -> Any:
    """Query parameters are read in ClickHouse's escaped text format (clickhouse-connect does
    the same for the server): a backslash, tab, newline or NUL in a value must be escaped."""
    return value.translate(_ESCAPES) if isinstance(value, str) else value


class ChdbStore(Store):
    """Embedded ClickHouse (chdb) with its database directory on local disk."""

    backend = "chdb"

    def __init__(self, path: Path, database: str) -> None:
        from chdb import session

        path.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.database = database
        # chdb serialises queries internally; this lock keeps USE/SET and queries of several
        # threads (writer, API) from interleaving on the one session.
        self._lock = threading.Lock()
        try:
            self._session = session.Session(str(path))
        except Exception as exc:
            raise StoreError(
                f"cannot open the chdb database in {path}: {exc}. chdb allows one process per "
                "database directory; is another cxpulse process (`cxpulse up`) using it?"
            ) from exc
        self._run(f"CREATE DATABASE IF NOT EXISTS {database}")
        self._run(f"USE {database}")
        for name, value in SESSION_SETTINGS.items():
            self._run(f"SET {name} = {value}")

    def _run(self, sql: str, fmt: str = "CSV", params: Mapping[str, Any] | None = None) -> bytes:
        bound = {k: _escape(v) for k, v in params.items()} if params else None
        with self._lock:
            try:
                result = self._session.query(sql, fmt, params=bound)
            except Exception as exc:
                raise StoreError(str(exc)) from exc
        return bytes(result.bytes()) if result is not None else b""

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        self._run(sql, params=params)

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        raw = self._run(sql, "JSON", params)
        return orjson.loads(raw)["data"] if raw else []

    def insert(self, table: str, rows: Iterable[Row]) -> int:
        batch = list(rows)
        if batch:
            self._run(f"INSERT INTO {table} FORMAT JSONEachRow\n" + encode_rows(batch).decode())
        return len(batch)

    def close(self) -> None:
        with self._lock:
            self._session.close()


class ServerStore(Store):
    """A ClickHouse server over HTTP(S) through clickhouse-connect."""

    backend = "clickhouse"

    def __init__(self, url: str, database: str) -> None:
        import clickhouse_connect

        self.database = database
        try:
            self._client = clickhouse_connect.get_client(
                dsn=url, settings=dict(SESSION_SETTINGS), autogenerate_session_id=False
            )
            self._client.command(f"CREATE DATABASE IF NOT EXISTS {database}")
        except Exception as exc:
            raise StoreError(f"cannot reach ClickHouse: {exc}") from exc
        self._client.database = database

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        try:
            self._client.command(sql, parameters=dict(params) if params else None)
        except Exception as exc:
            raise StoreError(str(exc)) from exc

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        try:
            raw = self._client.raw_query(
                sql, parameters=dict(params) if params else None, fmt="JSON"
            )
        except Exception as exc:
            raise StoreError(str(exc)) from exc
        return orjson.loads(raw)["data"] if raw else []

    def insert(self, table: str, rows: Iterable[Row]) -> int:
        batch = list(rows)
        if not batch:
            return 0
        try:
            self._client.raw_insert(table, insert_block=encode_rows(batch), fmt="JSONEachRow")
        except Exception as exc:
            raise StoreError(str(exc)) from exc
        return len(batch)

    def close(self) -> None:
        self._client.close()


def open_store(clickhouse_url: str | None, chdb_path: Path, database: str) -> Store:
    """The server store when a URL is configured, else embedded chdb."""
    if clickhouse_url:
        return ServerStore(clickhouse_url, database)
    return ChdbStore(chdb_path, database)
