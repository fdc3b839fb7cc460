"""Store rows batched into few Kafka messages: JSONEachRow, one row per line.

One produce call per store row was a large part of the worker's CPU. `RowBatcher` sits between
the journey stage and the producer: it keeps the rows of each store topic and, when the worker
is about to commit its transaction, sends them as a few messages of many rows each, which the
store writer (`sinks/writer.py`) splits into rows again. No faust here.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import orjson

from cxpulse.streams import topics

if TYPE_CHECKING:
    from cxpulse.streams.stage import Sender

#: Bytes of rows per message: half of Kafka's default 1 MiB message limit (producer
#: `message.max.bytes`, broker `message.max.bytes`), leaving room for the record overhead.
MAX_MESSAGE_BYTES = 512 * 1024


class RowBatcher:
    """A Sender that holds store rows until `flush` and passes everything else on at once.

    A row sent to a store topic (`topics.STORE_TABLES`) is kept: a dict is encoded once with
    orjson, bytes are taken as one JSON object already encoded on one line (a newline in them
    would make two rows of one). Anything else (another topic, or a value of None) goes to the
    wrapped sender as it comes, so state, dead letters and tombstones are not held back.
    """

    def __init__(
        self,
        output: Sender,
        store_topics: Iterable[str] = topics.STORE_TABLES,
        max_bytes: int = MAX_MESSAGE_BYTES,
    ) -> None:
        self.output = output
        self.max_bytes = max_bytes
        self._rows: dict[str, list[bytes]] = {topic: [] for topic in store_topics}

    def send(
        self, topic: str, key: str | bytes | None, value: object, partition: int | None = None
    ) -> None:
        """Keep a store row (its key and partition are dropped: `flush` decides), or pass on."""
        rows = self._rows.get(topic)
        if rows is None or value is None:
            self.output.send(topic, key, value, partition)
        else:
            rows.append(value if isinstance(value, bytes) else orjson.dumps(value))

    def flush(self, partition: int | None) -> int:
        """Send the rows kept so far to `partition` of their topics (None: the wrapped sender's
        partitioner chooses), without a key, and forget them; returns the messages sent.

        A message holds the rows in the order they were sent, joined by newlines, up to
        `max_bytes`; a row larger than that goes alone in a message of its own. The worker
        calls this before it commits the transaction that the rows belong to.
        """
        sent = 0
        for topic, rows in self._rows.items():
            if not rows:
                continue
            chunk: list[bytes] = []
            size = 0
            for row in rows:
                if chunk and size + 1 + len(row) > self.max_bytes:
                    self.output.send(topic, None, b"\n".join(chunk), partition)
                    sent += 1
                    chunk = []
                size = size + 1 + len(row) if chunk else len(row)
                chunk.append(row)
            self.output.send(topic, None, b"\n".join(chunk), partition)
            sent += 1
            rows.clear()
        return sent

    def clear(self) -> None:
        """Forget the rows kept so far (work that is aborted and will be redone)."""
        for rows in self._rows.values():
            rows.clear()

    def pending(self) -> int:
        """Rows kept and not yet flushed."""
        return sum(len(rows) for rows in self._rows.values())
