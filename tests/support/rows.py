"""Store rows the journey stage sent (as the store writer would insert them).

A store-topic message holds one row or, from the row batcher (streams/rowbatch.py), several as
JSONEachRow (one per line); what a collector Sender sees without a batcher is one row (a dict)
per send. The helpers here take either shape.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from cxpulse.sinks.store import Store
from cxpulse.streams import topics


def rows_of(value: Any) -> list[dict[str, Any]]:
    """The rows of one store-topic send or message: a dict is one row, bytes one row per line,
    None (a tombstone) none."""
    if value is None:
        return []
    if isinstance(value, bytes):
        return [orjson.loads(line) for line in value.split(b"\n")]
    return [value]


def row_count(value: bytes | None) -> int:
    """Rows in one store-topic message, without decoding them."""
    return 0 if value is None else value.count(b"\n") + 1


def insert_sent_rows(store: Store, messages: Iterable[tuple[str, Any, Any, int | None]]) -> None:
    """Insert every store-topic message into its table, in the order sent."""
    per_table: dict[str, list[dict[str, Any]]] = {}
    for topic, _key, value, _partition in messages:
        if topic in topics.STORE_TABLES:
            per_table.setdefault(topics.STORE_TABLES[topic], []).extend(rows_of(value))
    for table, rows in per_table.items():
        if rows:
            store.insert(table, rows)
