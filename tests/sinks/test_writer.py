"""The store writer on the real broker: batches, commits after insert, survives a store outage."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterable

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from cxpulse.sinks.migrate import migrate
from cxpulse.sinks.store import ChdbStore, Row, StoreError, ch_time
from cxpulse.sinks.writer import StoreWriter


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
    import orjson

    return orjson.dumps({
        "event_id": f"w{i}", "type": "portal.step_viewed",
        "occurred_at": ch_time(1_795_000_000_000 + i),
        "journey_key": f"k{i % 7}", "attrs": {}, "payload": "{}", "source_topic": "t",
        "source_partition": 0, "source_offset": i, "received_at": ch_time(1_795_000_000_000),
    })  # fmt: skip


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
    stop = threading.Event()
    writer = StoreWriter(store, bootstrap, {topic: "events_raw"}, group_id=group, flush_seconds=0.2)
    thread = threading.Thread(target=writer.run, args=(stop,))
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while writer.stats.rows_written.get("events_raw", 0) < 500 and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        stop.set()
        thread.join(30)
    assert writer.stats.store_errors >= 2
    assert store.query("SELECT count() AS n FROM events_raw FINAL")[0]["n"] == 500
    # Offsets were committed after the insert: a new writer of the group finds nothing to do.
    again = StoreWriter(store, bootstrap, {topic: "events_raw"}, group_id=group, flush_seconds=0.2)
    for _ in range(15):
        again.poll_once(0.2)
    assert again.stats.rows_written == {}
    store.close()
