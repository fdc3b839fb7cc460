"""The store fails for a while (HTTP 500s, then refused connections): the writer backs off,
commits nothing it has not stored, and afterwards the figures equal the ground truth.

The store is a `ServerStore` (clickhouse-connect) talking ClickHouse's HTTP protocol to the chdb
engine (`tests/support/chdb_http.py`), so the failures are real protocol-level failures.
"""

from __future__ import annotations

import itertools
import math
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Consumer, TopicPartition

from cxpulse.sinks.migrate import migrate
from cxpulse.sinks.store import ServerStore
from cxpulse.streams import topics
from tests.support.chdb_http import ChdbHttpServer
from tests.support.kafka import (
    STORE_TOPICS,
    WRITER_GROUP,
    Offsets,
    TrafficThread,
    committed_offsets,
    wait_drained,
)
from tests.support.rows import rows_of
from tests.support.truth import (
    HOUR,
    assert_each_message_counted_once,
    assert_store_equals_truth,
    ground_truth,
    history,
)
from tests.support.workers import alive_check, worker_pool, writer_thread

DATABASE = "cxpulse_test"
ERRORS_S = 4.0  # at least this long HTTP 500 from every request
REFUSED_S = 4.0  # then at least this long nothing listens


def max_failed_flushes(outage_s: float) -> int:
    """Backoff from 0.5 s, doubling: the n-th retry comes 0.5 * (2**n - 1) s after the first
    failure, so an outage of T s sees at most 1 + log2(T / 0.5 + 1) failed flushes (one more
    for the flush already failing when it was measured). Retrying every poll would make 5 a
    second."""
    return 2 + int(math.log2(outage_s / 0.5 + 1))


@pytest.mark.timeout(180)
def test_a_store_outage_is_ridden_out_without_committing_unstored_rows(
    bootstrap: str, worker_env: dict[str, str], tmp_path: Path
) -> None:
    now_ms = time.time_ns() // 1_000_000
    messages = history(now_ms - 8 * HOUR, 5000, seed=91)
    truth = ground_truth(messages, now_ms)
    with (
        ChdbHttpServer(tmp_path / "server") as server,
        ServerStore(server.url, DATABASE) as store,
    ):
        migrate(store)
        with (
            writer_thread(store, bootstrap) as writer,
            worker_pool(worker_env, tmp_path) as pool,
        ):
            check = alive_check(pool, writer)
            pool.start()
            traffic = TrafficThread(messages, bootstrap, seconds=12)
            traffic.start()
            _wait_until(lambda: _committed_raw_events(bootstrap) > 0, check)
            server.fail()
            _wait_until(lambda: writer.writer.stats.store_errors > 0, check)
            outage_started = time.monotonic()
            held = committed_offsets(bootstrap, WRITER_GROUP, STORE_TOPICS)
            # HTTP 500s for at least ERRORS_S and three failed flushes, then refused
            # connections for at least REFUSED_S and one more failed flush.
            for phase, seconds, failures in (("errors", ERRORS_S, 3), ("refused", REFUSED_S, 1)):
                if phase == "refused":
                    server.go_down()
                    failures += writer.writer.stats.store_errors
                until = time.monotonic() + seconds
                while time.monotonic() < until or writer.writer.stats.store_errors < failures:
                    check()
                    # The writer commits nothing while it cannot store.
                    assert committed_offsets(bootstrap, WRITER_GROUP, STORE_TOPICS) == held
                    assert time.monotonic() - outage_started < 60, "the writer stopped retrying"
                    time.sleep(0.2)
            _assert_stored_below(server, bootstrap, held)
            outage_s = time.monotonic() - outage_started
            failed = writer.writer.stats.store_errors
            refused_at = list(server.refused)
            server.recover()
            server.come_back()
            traffic.finish()
            wait_drained(bootstrap, 120, check=check)
            flushes = writer.writer.stats.flushes
    gaps = [round(b - a, 2) for a, b in itertools.pairwise(refused_at)]
    print(f"{failed} failed flushes in a {outage_s:.1f} s outage; gaps between the 500s: {gaps}; "
          f"{flushes} flushes in all")  # fmt: skip
    # Both kinds of failure reached the writer, and it backed off instead of spinning: the
    # gaps between its attempts start at 0.5 s and double (plus up to one 0.2 s poll).
    assert 1 <= len(refused_at) < failed
    assert len(gaps) >= 2, gaps
    assert gaps[0] >= 0.45, gaps
    assert all(later >= earlier * 1.5 for earlier, later in itertools.pairwise(gaps))
    assert failed <= max_failed_flushes(outage_s), (failed, outage_s)
    with (
        ChdbHttpServer(tmp_path / "server") as server,
        ServerStore(server.url, DATABASE) as store,
    ):
        assert assert_store_equals_truth(store, truth) > 200
        assert_each_message_counted_once(store, bootstrap, truth, messages, now_ms)


def _committed_raw_events(bootstrap: str) -> int:
    done = committed_offsets(bootstrap, WRITER_GROUP, [topics.STORE_EVENTS_RAW.name])
    return sum(max(offset, 0) for offset in done.values())


def _wait_until(condition: Any, check: Any, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        check()
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def _assert_stored_below(server: ChdbHttpServer, bootstrap: str, committed: Offsets) -> None:
    """Every raw event and every journey snapshot below the writer's committed offsets is in
    the store: its event_id is stored, and its journey is stored at that version or a later
    one. Read from the engine directly, since the server is answering 500 meanwhile."""
    events: set[str] = set()
    versions: dict[tuple[str, str], int] = defaultdict(int)
    for (topic, partition), offset in committed.items():
        if topic not in (topics.STORE_EVENTS_RAW.name, topics.STORE_JOURNEYS.name):
            continue
        for row in _rows_below(bootstrap, topic, partition, offset):
            if topic == topics.STORE_EVENTS_RAW.name:
                events.add(row["event_id"])
            else:
                identity = (row["journey_key"], row["journey_id"])
                versions[identity] = max(versions[identity], row["version"])
    assert events, "the outage began after the writer committed raw events"
    with server.lock:
        raw = server.session.query(f"SELECT event_id FROM {DATABASE}.events_raw", "JSONCompact")
        journeys = server.session.query(
            f"SELECT journey_key, journey_id, max(version) FROM {DATABASE}.journeys "
            "GROUP BY journey_key, journey_id",
            "JSONCompact",
        )
    stored_events = {r[0] for r in orjson.loads(bytes(raw.bytes()))["data"]}
    stored_versions = {(k, i): v for k, i, v in orjson.loads(bytes(journeys.bytes()))["data"]}
    assert events <= stored_events, len(events - stored_events)
    behind = [j for j, v in versions.items() if stored_versions.get(j, -1) < v]
    assert not behind, behind[:5]


def _rows_below(bootstrap: str, topic: str, partition: int, end: int) -> list[dict[str, Any]]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "rows-probe",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }  # as the writer reads them
    )
    rows: list[dict[str, Any]] = []
    try:
        if end <= 0:
            return rows
        consumer.assign([TopicPartition(topic, partition, 0)])
        deadline = time.monotonic() + 30
        offset = 0
        while offset < end:
            assert time.monotonic() < deadline, f"could not read {topic}[{partition}]"
            for message in consumer.consume(1000, timeout=1.0):
                assert message.error() is None, message.error()
                if message.offset() < end:
                    rows.extend(rows_of(message.value()))  # one row, or several (batched)
                offset = message.offset() + 1
        return rows
    finally:
        consumer.close()
