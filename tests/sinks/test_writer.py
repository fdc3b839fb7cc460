"""The store writer on the real broker: batches, commits after insert, survives a store outage,
and dead-letters rows the store refuses instead of stalling on them."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterable

import orjson
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from cxpulse.sinks.migrate import migrate
from cxpulse.sinks.store import ChdbStore, Row, StoreError, ch_time
from cxpulse.sinks.writer import StoreWriter, WriterStats
from cxpulse.streams import topics
from cxpulse.streams.dlq import read_dead_letters


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


def _run_until(
    store: ChdbStore, bootstrap: str, topic: str, group: str, done: Callable[[WriterStats], bool]
) -> StoreWriter:
    """A writer of `topic` into events_raw, in a thread until `done(stats)` (at most 60 s)."""
    stop = threading.Event()
    writer = StoreWriter(store, bootstrap, {topic: "events_raw"}, group_id=group, flush_seconds=0.2)
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
    again = StoreWriter(store, bootstrap, {topic: "events_raw"}, group_id=group, flush_seconds=0.2)
    for _ in range(15):
        again.poll_once(0.2)
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
        250: (_row(1003) + b"\n" + _row(1004), "not one JSON object"),
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
    writer = _run_until(store, bootstrap, topic, group, lambda s: s.dead_letters >= len(refused))
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
