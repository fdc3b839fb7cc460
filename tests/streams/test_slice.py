"""End to end on the real broker: confluent-kafka -> faust worker -> writer -> chdb."""

from __future__ import annotations

import base64
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Consumer, Producer

from cxpulse.sinks.migrate import migrate
from cxpulse.sinks.sink import StoreSink
from cxpulse.sinks.store import ChdbStore
from cxpulse.sinks.writer import StoreWriter
from cxpulse.streams import topics
from cxpulse.streams.producer import DeadLetterProducer

# A recent time in another offset, with milliseconds: stored exactly, in UTC.
OCCURRED = (
    (datetime.now(UTC) - timedelta(hours=1))
    .replace(microsecond=250_000)
    .astimezone(timezone(timedelta(hours=1)))
)


@pytest.fixture
def worker(cli_env: dict[str, str], bootstrap: str, tmp_path: Path) -> Iterator[Path]:
    """A real `cxpulse worker` process against the session broker; yields its log file."""
    topics.ensure_topics(bootstrap, 4)
    log_file = tmp_path / "worker.log"
    with log_file.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cxpulse.deploy.cli", "worker"],
            env=cli_env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    yield log_file
    proc.terminate()
    assert proc.wait(timeout=60) == 0, log_file.read_text()[-3000:]


def _consume_until(bootstrap: str, topic: str, match: bytes, timeout_s: float = 60) -> dict:
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex,
         "auto.offset.reset": "earliest"}
    )  # fmt: skip
    consumer.subscribe([topic])
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            for message in consumer.consume(500, timeout=0.5):
                if message.error() is None and match in message.value():
                    return orjson.loads(message.value())
        raise AssertionError(f"nothing matching {match!r} on {topic} within {timeout_s} s")
    finally:
        consumer.close()


def test_event_reaches_clickhouse_and_bad_bytes_reach_the_dlq(
    bootstrap: str, worker: Path, chdb_store: ChdbStore
) -> None:
    migrate(chdb_store)
    event_id = f"slice-{uuid.uuid4().hex}"
    event = {
        "event_id": event_id,
        "schema_version": 1,
        "type": "portal.session_started",
        "occurred_at": OCCURRED.isoformat(),
        "customer_id": "cust-42",
        "session_id": "sess-1",
        "attrs": {"product_line": "printers"},
        "data": {"entry": "support_home"},
    }
    malformed = b'{"event_id": "' + event_id.encode() + b'", broken'
    producer = Producer({"bootstrap.servers": bootstrap, "compression.type": "zstd"})
    producer.produce(topics.PORTAL.name, orjson.dumps(event), b"any-key")
    producer.produce(topics.PORTAL.name, malformed)
    assert producer.flush(30) == 0

    stop = threading.Event()
    writer = StoreWriter(
        StoreSink(chdb_store),
        bootstrap,
        topics.STORE_TABLES,
        DeadLetterProducer(bootstrap, "writer"),
        group_id=uuid.uuid4().hex,
        flush_seconds=0.2,
    )
    thread = threading.Thread(target=writer.run, args=(stop,))
    thread.start()
    try:
        rows: list[dict] = []
        deadline = time.monotonic() + 90
        while not rows and time.monotonic() < deadline:
            time.sleep(0.3)
            rows = chdb_store.query(
                "SELECT event_id, type, occurred_at, journey_key, attrs, source_topic, payload "
                "FROM events_raw FINAL WHERE event_id = {id:String}",
                {"id": event_id},
            )
    finally:
        stop.set()
        thread.join(30)
    assert rows, f"the event never reached ClickHouse; worker log:\n{worker.read_text()[-3000:]}"
    assert len(rows) == 1
    row = rows[0]
    assert row["type"] == "portal.session_started"
    assert row["occurred_at"] == OCCURRED.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.250")
    assert row["journey_key"] == "cust-42"  # re-keyed by customer, not the producer's key
    assert row["attrs"] == {"product_line": "printers"}
    assert row["source_topic"] == topics.PORTAL.name
    assert row["payload"].encode() == orjson.dumps(event)  # the bytes as produced

    dead = _consume_until(bootstrap, topics.DLQ.name, base64.b64encode(malformed)[:40])
    assert dead["reason"] == "invalid_json"
    assert base64.b64decode(dead["original_b64"]) == malformed
    assert dead["source_topic"] == topics.PORTAL.name
