"""Store rows the journey stage sent (as the store writer would insert them)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from cxpulse.sinks.store import Store
from cxpulse.streams import topics


def insert_sent_rows(store: Store, messages: Iterable[tuple[str, Any, Any, int | None]]) -> None:
    """Insert every store-topic message into its table, in the order sent."""
    per_table: dict[str, list[dict[str, Any]]] = {}
    for topic, _key, row, _partition in messages:
        if topic in topics.STORE_TABLES and row is not None:
            per_table.setdefault(topics.STORE_TABLES[topic], []).append(row)
    for table, rows in per_table.items():
        store.insert(table, rows)
