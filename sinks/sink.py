"""The store side of the store writer: a batch of JSONEachRow rows into one table.

A row the store refuses as data (a parse or type error, `StoreError.bad_data`) would fail every
retry and stall whatever feeds the batch for good, so the batch is split in halves until the
refused rows are alone; each is handed back with ClickHouse's message and the rest are stored.
Splitting costs about 2·log2(n) extra inserts per refused row, and only when a row is refused.
Nothing here knows where the rows came from: the caller maps a refused row back to its source.
"""

from __future__ import annotations

from collections.abc import Callable

import orjson

from cxpulse.sinks.store import Store, StoreError

# A refused row: its table, its index in the batch written, the row and why it was refused.
Refused = Callable[[str, int, bytes, str], None]


class StoreSink:
    def __init__(self, store: Store) -> None:
        self.store = store

    def write(self, table: str, rows: list[bytes], refused: Refused) -> int:
        """Insert `rows` (each one encoded JSON object) into `table`, handing those the store
        refuses as data to `refused`; returns how many were stored. Any other StoreError (the
        store is down) propagates: the caller keeps the batch and writes it again later."""
        return self._insert(table, rows, 0, refused)

    def _insert(self, table: str, rows: list[bytes], first: int, refused: Refused) -> int:
        """`write` of `rows`, the batch from index `first` on."""
        try:
            return self.store.insert(table, [orjson.Fragment(row) for row in rows])
        except (StoreError, ValueError, TypeError) as exc:
            # ValueError/TypeError: rows the client could not even encode are bad data too.
            if isinstance(exc, StoreError) and not exc.bad_data:
                raise
            if len(rows) == 1:
                refused(table, first, rows[0], f"{table}: {exc}")
                return 0
            half = len(rows) // 2
            stored = self._insert(table, rows[:half], first, refused)
            return stored + self._insert(table, rows[half:], first + half, refused)
