"""The store writer: rows from Kafka store topics -> batched inserts -> then commit.

Modelled on a small sink contract: rows are buffered per table, a flush writes every buffered
table through the sink (sinks/sink.py) and only then commits the consumed offsets. A crash
between insert and commit re-inserts the same rows, which the ReplacingMergeTree tables
collapse, so the store never counts twice. When the store fails the writer keeps its buffer,
pauses consumption and retries with backoff. Rows the store refuses as data are dead-lettered
as `unstorable_row`, and the dead letters are in Kafka before the offsets move past their rows.

A message holds one row or, from the journey stage's `RowBatcher` (streams/rowbatch.py), many:
JSONEachRow, one row per line. A line that is not one UTF-8 JSON object is dead-lettered alone
before it joins a batch (it could corrupt the insert or split into two rows), naming the line
of its message; the other lines of that message are stored.
"""

from __future__ import annotations

import logging
import threading
import time
from bisect import bisect_right
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Protocol

from confluent_kafka import Consumer, KafkaException, TopicPartition

from cxpulse.schemas.deadletters import Source, dead_letter
from cxpulse.schemas.validate import Rejection
from cxpulse.sinks.sink import StoreSink
from cxpulse.sinks.store import StoreError

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 30.0
MAX_POLL_MESSAGES = 10_000
UNSTORABLE_ROW = "unstorable_row"

# Where a row came from: its message, its line there (from 1) and the message's lines.
Origin = tuple[Source, int, int]
# Consecutive buffered rows from one message: the first one's index in its table's buffer, the
# message, the first one's line and the message's lines. One per message, not one per row: a
# tuple per row cost as much as everything else `_add` does for the row.
Run = tuple[int, Source, int, int]


class DeadLetters(Protocol):
    """Where the writer's dead letters go (the dead-letter topic, streams/producer.py)."""

    def send(self, reason: str, letter: bytes) -> None:
        """Send one `dead_letter` envelope; `reason`, its reason code, is for counting."""

    def flush(self) -> None:
        """Return once everything sent is acknowledged."""


@dataclass
class WriterStats:
    rows_written: dict[str, int] = field(default_factory=dict)
    flushes: int = 0
    store_errors: int = 0
    dead_letters: int = 0
    last_flush_ms: float = 0.0


class StoreWriter:
    """Consumes `tables`' topics (topic -> table) into `sink`. Constructing it connects to
    nothing, so it can be wired before Kafka is up: `setup()` joins the consumer group."""

    def __init__(
        self,
        sink: StoreSink,
        bootstrap: str,
        tables: Mapping[str, str],
        dead_letters: DeadLetters,
        *,
        group_id: str = "cxpulse-store-writer",
        batch_rows: int = 50_000,
        flush_seconds: float = 0.25,
        on_flush: Callable[[WriterStats], None] | None = None,
    ) -> None:
        self.sink = sink
        self.bootstrap = bootstrap
        self.tables = dict(tables)
        self.group_id = group_id
        self.batch_rows = batch_rows
        self.flush_seconds = flush_seconds
        self.stats = WriterStats()
        self._on_flush = on_flush
        self._buffers: dict[str, list[bytes]] = {table: [] for table in self.tables.values()}
        self._runs: dict[str, list[Run]] = {table: [] for table in self.tables.values()}
        self._dead_letters = dead_letters
        self._letters_unflushed = False
        self._buffered = 0
        self._rows_per_message = 1  # in the last poll, rounded up: sizes the next one
        self._oldest: float | None = None
        self._offsets: dict[tuple[str, int], int] = {}
        self._paused = False
        self._retry_at = 0.0
        self._backoff = 0.5
        self._consumer: Consumer | None = None

    @property
    def consumer(self) -> Consumer:
        if self._consumer is None:
            raise RuntimeError("the store writer is not set up: call setup() first")
        return self._consumer

    def setup(self) -> None:
        """Join the consumer group of the store topics."""
        self._consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": self.group_id,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "partition.assignment.strategy": "range",
                # Rows are written in the journey stage's transactions: never store a row of
                # one that was aborted or fenced (a worker that lost its partition, issue 14).
                # Offsets committed stay last row + 1, so a commit marker after it stays
                # unconsumed (tests/support/kafka.py `behind` knows).
                "isolation.level": "read_committed",
                # As the worker's consumers: a dead writer's partitions move on after 10 s,
                # not librdkafka's default 45 s.
                "session.timeout.ms": 10_000,
                "heartbeat.interval.ms": 1_000,
            }
        )
        self._consumer.subscribe(
            list(self.tables), on_assign=self._on_assign, on_revoke=self._on_revoke
        )

    def close(self) -> None:
        """Leave the group. Rows still buffered are not stored: `flush()` first to keep them."""
        self.consumer.close()

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # librdkafka keeps a partition's pause flag across revoke and re-assign: start afresh.
        consumer.resume(partitions)
        self._paused = False
        self._backoff = 0.5

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Eager rebalancing revokes every partition and re-assigns from committed offsets, so
        # rows that cannot be stored now are dropped here and read again after the rebalance.
        if not self.flush():
            self._clear()

    def run(self, stop: threading.Event) -> None:
        """Set up, then consume until `stop` is set; stores what is buffered before closing."""
        self.setup()
        try:
            while not stop.is_set():
                self.poll_once()
            self.flush()
        finally:
            self.close()

    def poll_once(self, timeout_s: float = 0.2) -> None:
        if self._paused:
            if time.monotonic() >= self._retry_at:
                self.flush()
            # Retry on time: a poll must not run past the backoff it waits out.
            timeout_s = min(timeout_s, max(0.0, self._retry_at - time.monotonic()))
        elif self._oldest is not None:
            # Flush on time: consume() waits for its whole batch or the timeout, which would
            # otherwise keep due rows up to a whole poll longer.
            due_in = self._oldest + self.flush_seconds - time.monotonic()
            timeout_s = min(timeout_s, max(0.0, due_in))
        # A message may hold hundreds of rows: take about as many as the batch has room for,
        # so it stays near batch_rows instead of growing to all that librdkafka has fetched.
        room = (self.batch_rows - self._buffered) // self._rows_per_message
        messages = self.consumer.consume(
            num_messages=max(1, min(MAX_POLL_MESSAGES, room)), timeout=timeout_s
        )
        rows = 0
        for message in messages:
            error = message.error()
            if error is not None:
                if error.fatal():
                    raise KafkaException(error)
                log.warning("store topic consume error: %s", error)
                continue
            rows += self._add(
                message.topic(), message.partition(), message.offset(), message.value()
            )
        if messages:
            self._rows_per_message = max(1, -(-rows // len(messages)))
        full = self._buffered >= self.batch_rows
        due = self._oldest is not None and time.monotonic() - self._oldest >= self.flush_seconds
        if (full or due) and not self._paused:
            self.flush()

    def _add(self, topic: str, partition: int, offset: int, value: bytes | None) -> int:
        """Buffer a message's rows, dead-lettering the lines that are not rows; returns its
        lines."""
        self._offsets[(topic, partition)] = offset + 1
        if value is None:
            return 0
        if self._oldest is None:  # a dead letter, too, is due in Kafka and then committed
            self._oldest = time.monotonic()
        source = Source(topic, partition, offset)
        table = self.tables[topic]
        buffer, runs = self._buffers[table], self._runs[table]
        lines = value.split(b"\n") if b"\n" in value else [value]  # `in`: memchr, fast
        count = len(lines)
        if _all_storable(value, count):
            runs.append((len(buffer), source, 1, count))
            buffer.extend(lines)
            self._buffered += count
            return count
        for line, row in enumerate(lines, 1):
            problem = _unstorable(row)
            if problem is not None:
                self._reject((source, line, count), row, problem)
            else:
                runs.append((len(buffer), source, line, count))
                buffer.append(row)
                self._buffered += 1
        return count

    def _origin(self, table: str, index: int) -> Origin:
        """Where the row at `index` of the table's buffer came from."""
        runs = self._runs[table]
        first, source, line, lines = runs[bisect_right(runs, index, key=itemgetter(0)) - 1]
        return source, line + index - first, lines

    def _refuse(self, table: str, index: int, row: bytes, detail: str) -> None:
        """The sink refused the row at `index` of the table's buffer."""
        self._reject(self._origin(table, index), row, detail)

    def _reject(self, origin: Origin, value: bytes, detail: str) -> None:
        """Dead-letter one row (`value`, a line of the message when it has several)."""
        source, line, lines = origin
        if lines > 1:
            detail = f"line {line} of {lines}: {detail}"
        log.warning(
            "dead-lettering %s[%d]@%d: %s", source.topic, source.partition, source.offset, detail
        )
        rejection = Rejection(UNSTORABLE_ROW, detail)
        letter = dead_letter(rejection, value, source, time.time_ns() // 1_000_000)
        self._dead_letters.send(UNSTORABLE_ROW, letter)
        self._letters_unflushed = True
        self.stats.dead_letters += 1

    def flush(self) -> bool:
        """Write every buffered row, then commit the offsets consumed; False when the store
        failed (the rows stay buffered and consumption pauses until a retry succeeds)."""
        if not self._offsets:
            return True
        started = time.perf_counter()
        try:
            for table, rows in self._buffers.items():
                if rows:
                    stored = self.sink.write(table, rows, self._refuse)
                    self.stats.rows_written[table] = self.stats.rows_written.get(table, 0) + stored
                    rows.clear()  # a later failure must not insert these again
                    self._runs[table].clear()
        except StoreError as exc:
            self.stats.store_errors += 1
            self._pause(exc)
            return False
        if self._letters_unflushed:  # in Kafka before the offsets that dropped them move on
            self._dead_letters.flush()
            self._letters_unflushed = False
        try:
            self.consumer.commit(
                offsets=[TopicPartition(t, p, o) for (t, p), o in self._offsets.items()],
                asynchronous=False,
            )
        except KafkaException as exc:
            # The rows are stored; re-reading them after a rebalance inserts copies that the
            # ReplacingMergeTree tables collapse.
            log.warning("writer commit failed (rows will be re-read and collapse): %s", exc)
        self._offsets.clear()
        self._buffered = 0
        self._oldest = None
        self.stats.flushes += 1
        self.stats.last_flush_ms = (time.perf_counter() - started) * 1000
        if self._paused:
            log.info("store is back; resuming consumption")
            self.consumer.resume(self.consumer.assignment())
            self._paused = False
            self._backoff = 0.5
        if self._on_flush is not None:
            self._on_flush(self.stats)
        return True

    def _pause(self, exc: StoreError) -> None:
        log.warning("store insert failed, retrying in %.1f s: %s", self._backoff, exc)
        if not self._paused:
            self.consumer.pause(self.consumer.assignment())
            self._paused = True
        self._retry_at = time.monotonic() + self._backoff
        self._backoff = min(self._backoff * 2, MAX_BACKOFF_S)

    def _clear(self) -> None:
        for rows in self._buffers.values():
            rows.clear()
        for runs in self._runs.values():
            runs.clear()
        self._offsets.clear()
        self._buffered = 0
        self._oldest = None


def _all_storable(value: bytes, lines: int) -> bool:
    """Whether each of the message's `lines` is a row `_unstorable` takes, checked over the
    whole message at C speed rather than line by line: it starts with `{`, ends with `}` and
    every newline stands between `}` and `{` (the occurrences cannot overlap), and it is
    UTF-8 as a whole, which holds for each line too since a newline is never part of a
    multi-byte sequence. ASCII, the usual case, needs no decoding at all."""
    if not (value.startswith(b"{") and value.endswith(b"}")):
        return False
    if lines > 1 and value.count(b"}\n{") != lines - 1:
        return False
    if value.isascii():
        return True
    try:
        value.decode()
    except UnicodeDecodeError:
        return False
    return True


def _unstorable(value: bytes) -> str | None:
    """Why a message cannot be a JSONEachRow row, or None: a row is one object on one line (as
    cxpulse writes them) and UTF-8, since ClickHouse would store other bytes as they are and
    every reader of the table would fail on them later."""
    if not (value.startswith(b"{") and value.endswith(b"}") and b"\n" not in value):
        return "not one JSON object on one line"
    try:
        value.decode()
    except UnicodeDecodeError as exc:
        return f"not UTF-8 at byte {exc.start}: {exc.reason}"
    return None
