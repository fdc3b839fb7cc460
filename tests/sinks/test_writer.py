"""The store writer on the real broker: batches, commits after insert, survives a store outage,
dead-letters rows the store refuses instead of stalling on them, and takes messages of one row
or of many (one per line, as the row batcher sends them). Its sink, on chdb alone: refused rows
are split off and handed back, an outage is raised."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import orjson
import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from cxpulse.schemas.times import ch_time
from cxpulse.sinks.migrate import migrate
from cxpulse.sinks.sink import StoreSink
from cxpulse.sinks.store import ChdbStore, Row, StoreError
from cxpulse.sinks.writer import StoreWriter, WriterStats, _all_storable, _unstorable
from cxpulse.streams import topics
from cxpulse.streams.dlq import read_dead_letters
from cxpulse.streams.producer import DeadLetterProducer, JsonProducer
from cxpulse.streams.rowbatch import RowBatcher


class FlakyStore(ChdbStore):
    """The real chdb store, refusing its first `failures` inserts (a store outage)."""

    def __init__(self, *args: object, failures: int) -> None:
        super().__init__(*args)  # type: ignore[arg-type]
        self.failures = failures

    def insert(self, table: str, rows: Iterable[Row]) -> int:
        if self.failures > 0:
            self.failures -= 1
            raise StoreError("simulated outage")
        return super().insert(table, rows)


def _row(i: int) -> bytes:
    return orjson.dumps({
        "event_id": f"w{i}", "type": "portal.step_viewed",
        "occurred_at": ch_time(1_795_000_000_000 + i),
        "journey_key": f"k{i % 7}", "attrs": {}, "payload": "{}", "source_topic": "t",
        "source_partition": 0, "source_offset": i, "received_at": ch_time(1_795_000_000_000),
    })  # fmt: skip


def _topic(bootstrap: str) -> str:
    topic = f"test.store.{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])[topic].result()
    return topic


def _writer(
    store: ChdbStore, bootstrap: str, topic: str, group: str, **options: Any
) -> StoreWriter:
    """A writer of `topic` into events_raw, dead-lettering to the dead-letter topic."""
    dead_letters = DeadLetterProducer(bootstrap, "writer")
    return StoreWriter(
        StoreSink(store), bootstrap, {topic: "events_raw"}, dead_letters, group_id=group, **options
    )


def _run_until(
    store: ChdbStore, bootstrap: str, topic: str, group: str, done: Callable[[WriterStats], bool]
) -> StoreWriter:
    """A writer of `topic` into events_raw, in a thread until `done(stats)` (at most 60 s)."""
    stop = threading.Event()
    writer = _writer(store, bootstrap, topic, group, flush_seconds=0.2)
    thread = threading.Thread(target=writer.run, args=(stop,))
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not done(writer.stats) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        stop.set()
        thread.join(30)
    return writer


def _assert_nothing_left(store: ChdbStore, bootstrap: str, topic: str, group: str) -> None:
    """A new writer of the group finds nothing to store or dead-letter: all was committed."""
    again = _writer(store, bootstrap, topic, group, flush_seconds=0.2)
    again.setup()
    try:
        for _ in range(15):
            again.poll_once(0.2)
    finally:
        again.close()
    assert again.stats.rows_written == {}
    assert again.stats.dead_letters == 0


def test_rows_survive_a_store_outage_and_count_once(bootstrap: str, tmp_path) -> None:
    topic = f"test.store.{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])[topic].result()
    producer = Producer({"bootstrap.servers": bootstrap})
    for i in range(500):
        producer.produce(topic, _row(i))
    assert producer.flush(30) == 0

    store = FlakyStore(tmp_path / "chdb", "cxpulse_test", failures=0)
    migrate(store)
    store.failures = 3
    group = uuid.uuid4().hex
    writer = _run_until(store, bootstrap, topic, group, lambda s: s.rows_written.get(
        "events_raw", 0) >= 500)  # fmt: skip
    assert writer.stats.store_errors >= 2
    assert store.query("SELECT count() AS n FROM events_raw FINAL")[0]["n"] == 500
    # Offsets were committed after the insert: a new writer of the group finds nothing to do.
    _assert_nothing_left(store, bootstrap, topic, group)
    store.close()


def _changed(i: int, **change: object) -> bytes:
    return orjson.dumps({**orjson.loads(_row(i)), **change})


def _dead_letters_counted() -> float:
    """The writer's `unstorable_row` dead letters in the Prometheus counter so far."""
    labels = {"stage": "writer", "reason": "unstorable_row"}
    return REGISTRY.get_sample_value("cxpulse_dead_letters_total", labels) or 0.0


def test_rows_the_store_refuses_are_dead_lettered_and_the_rest_stored(
    bootstrap: str, tmp_path
) -> None:
    """A row ClickHouse cannot read would fail every retry: it is dead-lettered with the store's
    message, every other row of its batch is stored once, and the offsets move past it."""
    topics.ensure_topics(bootstrap, 4)  # the dead-letter topic
    topic = f"test.store.{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])[topic].result()
    refused = {
        10: (_changed(1000, occurred_at="yesterday"), "Code: 41"),
        55: (_changed(1001, source_partition=-1), "Code: 72"),
        120: (_changed(1002, source_partition="abc"), "Code: 27"),
        200: (b"[1, 2]", "not one JSON object"),
        # Rows ClickHouse would store as they are, or could not decode: never a dead writer.
        260: (_row(1005).replace(b'"w1005"', b'"w\xff1005"'), "not UTF-8"),
        270: (_row(1006).replace(b'"w1006"', b'"w\xed\xa0\x801006"'), "not UTF-8"),
        280: (_row(1007).replace(b'"w1007"', b'"w\\ud800"'), "Code: 25"),
    }
    producer = Producer({"bootstrap.servers": bootstrap})
    offsets = [0, 0]
    expected_letters = {}
    for i in range(300):
        if i in refused:
            value, detail = refused[i]
            producer.produce(topic, value, partition=i % 2)
            expected_letters[(i % 2, offsets[i % 2])] = (value, detail)
            offsets[i % 2] += 1
        producer.produce(topic, _row(i), partition=i % 2)
        offsets[i % 2] += 1
    assert producer.flush(30) == 0

    store = ChdbStore(tmp_path / "chdb", "cxpulse_test")
    migrate(store)
    group = uuid.uuid4().hex
    counted = _dead_letters_counted()
    writer = _run_until(store, bootstrap, topic, group, lambda s: s.dead_letters >= len(refused))
    assert _dead_letters_counted() - counted == len(refused)
    assert writer.stats.rows_written == {"events_raw": 300}
    assert writer.stats.store_errors == 0  # refused data is not an outage: no backoff
    stored = store.query("SELECT event_id FROM events_raw FINAL ORDER BY event_id")
    assert sorted(r["event_id"] for r in stored) == sorted(f"w{i}" for i in range(300))

    letters = [d for d in read_dead_letters(bootstrap) if d.source_topic == topic]
    assert {(d.source_partition, d.source_offset) for d in letters} == set(expected_letters)
    for letter in letters:
        value, detail = expected_letters[(letter.source_partition, letter.source_offset)]
        assert letter.reason == "unstorable_row"
        assert letter.original == value
        assert detail in letter.detail
    # The offsets moved past the refused rows: a new writer of the group finds nothing to do.
    _assert_nothing_left(store, bootstrap, topic, group)
    store.close()


def test_a_message_of_many_rows_stores_its_good_lines_and_dead_letters_each_bad_one(
    bootstrap: str, tmp_path
) -> None:
    """Each line of a message is a row: a line that is not one UTF-8 JSON object, or that the
    store refuses, is dead-lettered alone (source: the message; detail: which line), every
    other line is stored, and the offsets move past the message."""
    topics.ensure_topics(bootstrap, 4)  # the dead-letter topic
    topic = _topic(bootstrap)
    mixed = [
        _row(5),
        b"[1, 2]",
        _row(6),
        _row(1005).replace(b'"w1005"', b'"w\xff1005"'),
        _changed(1000, occurred_at="yesterday"),
        _row(7),
        _row(1003),
    ]
    messages = [
        b"\n".join(_row(i) for i in range(5)),  # 0: five good rows
        b"\n".join(mixed),  # 1
        _row(1004) + b"\n" + _row(1006),  # 2: once refused as "not one object", now two rows
        b"not json",  # 3: a message of one bad row says no line
        _row(8) + b"\n",  # 4: an empty line is not a row either
        _row(9),  # 5: one row, as the stage sends without a batcher
    ]
    producer = Producer({"bootstrap.servers": bootstrap})
    for value in messages:
        producer.produce(topic, value, partition=0)
    assert producer.flush(30) == 0
    expected_letters = {
        (1, "line 2 of 7: not one JSON object"): b"[1, 2]",
        (1, "line 4 of 7: not UTF-8"): mixed[3],
        (1, "line 5 of 7: events_raw: Code: 41"): mixed[4],
        (3, "not one JSON object"): b"not json",
        (4, "line 2 of 2: not one JSON object"): b"",
    }
    good = [f"w{i}" for i in (*range(10), 1003, 1004, 1006)]

    store = ChdbStore(tmp_path / "chdb", "cxpulse_test")
    migrate(store)
    group = uuid.uuid4().hex
    writer = _run_until(
        store, bootstrap, topic, group,
        lambda s: s.dead_letters >= len(expected_letters) and bool(s.rows_written),
    )  # fmt: skip
    assert writer.stats.rows_written == {"events_raw": len(good)}
    assert writer.stats.dead_letters == len(expected_letters)
    stored = store.query("SELECT event_id FROM events_raw FINAL")
    assert sorted(r["event_id"] for r in stored) == sorted(good)

    letters = [d for d in read_dead_letters(bootstrap) if d.source_topic == topic]
    assert len(letters) == len(expected_letters)
    for letter in letters:
        assert letter.reason == "unstorable_row"
        assert letter.source_partition == 0
        [(key, original)] = [
            (key, value) for key, value in expected_letters.items()
            if key[0] == letter.source_offset and letter.detail.startswith(key[1])
        ]  # fmt: skip
        assert letter.original == original, key
    _assert_nothing_left(store, bootstrap, topic, group)
    store.close()


def test_batched_rows_are_stored_once_and_a_batch_fills_by_rows(bootstrap: str, tmp_path) -> None:
    """Rows sent through a RowBatcher (a small cap: a few rows a message) are all stored; a
    batch is full by its rows, not its messages: with the flush timer out of the way, fewer
    messages than `batch_rows` still make a flush."""
    topic = _topic(bootstrap)
    producer = JsonProducer(bootstrap)
    batcher = RowBatcher(producer, store_topics=[topic], max_bytes=2000)
    for i in range(600):
        batcher.send(topic, f"k{i}", orjson.loads(_row(i)))
        if i in (299, 599):
            batcher.flush(i // 300)
    producer.flush()

    store = ChdbStore(tmp_path / "chdb", "cxpulse_test")
    migrate(store)
    group = uuid.uuid4().hex
    writer = _writer(store, bootstrap, topic, group, batch_rows=100, flush_seconds=3600)
    writer.setup()
    deadline = time.monotonic() + 30
    while writer.stats.flushes == 0:
        assert time.monotonic() < deadline, "no flush: the batch never counted 100 rows"
        writer.poll_once(0.2)
    assert writer.flush()  # the final flush
    writer.close()
    assert writer.stats.rows_written == {"events_raw": 600}
    assert writer.stats.dead_letters == 0
    assert store.query("SELECT count() AS n FROM events_raw FINAL")[0]["n"] == 600
    _assert_nothing_left(store, bootstrap, topic, group)
    store.close()


def test_buffered_rows_are_flushed_when_due_not_a_poll_later(bootstrap: str, tmp_path) -> None:
    """consume() waits for its whole batch or its timeout: with rows buffered the writer waits
    only until they are due, so a row waits the flush interval, not up to a whole poll more."""
    topic = _topic(bootstrap)
    producer = Producer({"bootstrap.servers": bootstrap})
    producer.produce(topic, _row(0))
    assert producer.flush(30) == 0

    store = ChdbStore(tmp_path / "chdb", "cxpulse_test")
    migrate(store)
    writer = _writer(store, bootstrap, topic, uuid.uuid4().hex, flush_seconds=0.5)
    writer.setup()
    polls: list[float] = []
    deadline = time.monotonic() + 60
    while writer.stats.flushes == 0:
        assert time.monotonic() < deadline, "the row was never stored"
        started = time.monotonic()
        writer.poll_once(5.0)
        polls.append(time.monotonic() - started)
    # The poll that buffered the row waited its 5 s; the one that stored it woke when it was due.
    assert polls[-1] < 1.5, polls
    assert writer.stats.rows_written == {"events_raw": 1}
    writer.close()
    store.close()


def test_the_sink_stores_a_batch_and_hands_back_each_row_the_store_refuses(
    chdb_store: ChdbStore,
) -> None:
    """The batch is split until the refused rows are alone: each comes back with its index in
    the batch and ClickHouse's message, every other row is stored once."""
    migrate(chdb_store)
    rows = [_row(i) for i in range(40)]
    rows[3] = _changed(1000, occurred_at="yesterday")
    rows[29] = _changed(1001, source_partition=-1)
    refused: list[tuple[str, int, bytes, str]] = []
    stored = StoreSink(chdb_store).write("events_raw", rows, lambda *r: refused.append(r))
    assert stored == 38
    assert [r[:3] for r in refused] == [("events_raw", 3, rows[3]), ("events_raw", 29, rows[29])]
    assert refused[0][3].startswith("events_raw: ")
    assert "Code: 41" in refused[0][3]
    assert "Code: 72" in refused[1][3]
    assert chdb_store.query("SELECT count() AS n FROM events_raw FINAL")[0]["n"] == 38


def test_the_sink_raises_an_outage_and_refuses_nothing(tmp_path) -> None:
    """A store that is down refuses no row: the error goes to the caller, which retries."""
    store = FlakyStore(tmp_path / "chdb", "cxpulse_test", failures=0)
    migrate(store)
    store.failures = 1
    refused: list[tuple[str, int, bytes, str]] = []
    with pytest.raises(StoreError, match="simulated outage"):
        StoreSink(store).write("events_raw", [_row(0)], lambda *r: refused.append(r))
    assert refused == []
    assert StoreSink(store).write("events_raw", [_row(0)], lambda *r: refused.append(r)) == 1
    store.close()


class NoDeadLetters:
    """The writer's dead-letter contract, for a writer that has nothing to dead-letter."""

    def send(self, reason: str, letter: bytes) -> None:
        raise AssertionError(f"unexpected dead letter ({reason})")

    def flush(self) -> None:
        pass


def test_a_writer_connects_only_when_set_up(chdb_store: ChdbStore) -> None:
    """Constructing a writer opens no connection (it can be built before Kafka is up);
    `setup()` does, and polling before it is an error, not a silent wait."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.settimeout(1.0)
        bootstrap = f"127.0.0.1:{listener.getsockname()[1]}"
        letters = NoDeadLetters()
        writer = StoreWriter(StoreSink(chdb_store), bootstrap, {"t": "events_raw"}, letters)
        with pytest.raises(TimeoutError):
            listener.accept()
        with pytest.raises(RuntimeError, match="setup"):
            writer.poll_once(0)
        writer.setup()
        try:
            listener.settimeout(10.0)
            connection, _ = listener.accept()
            connection.close()
        finally:
            writer.close()


# Pieces of lines: braces, a row, other bytes, and UTF-8 that is valid, broken or a surrogate.
PIECES = [b"{", b"}", b"{}", b'{"a": 1}', b"x", b" ", b"\xff", b"\xc3\xa9", b"\xed\xa0\x80"]
LINE = st.lists(st.sampled_from(PIECES), max_size=6).map(b"".join)


@settings(max_examples=500, deadline=None)
@given(lines=st.lists(LINE, min_size=1, max_size=6))
def test_the_whole_message_check_agrees_with_the_row_check_line_by_line(
    lines: list[bytes],
) -> None:
    """`_all_storable` (a few passes over the message) says yes exactly when every line is a
    row `_unstorable` takes."""
    value = b"\n".join(lines)
    assert _all_storable(value, len(lines)) == all(_unstorable(line) is None for line in lines)
