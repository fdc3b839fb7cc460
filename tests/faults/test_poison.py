"""Poison messages never stall a partition: what cannot be processed is dead-lettered with its
reason and position, and the valid traffic behind it on the same partition is processed.

Invalid input is the ingest stage's business (every reason of the event contract). The keyed
topic is internal, but anything with access to the cluster can write to it: bytes that are not
a keyed batch, a message without a value, and a well-formed batch whose record is not an event,
all ahead of valid traffic on one partition. A worker that stopped on them would stop again
after every restart (a crash loop) and that partition would never move again.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from cxpulse.sinks.migrate import migrate
from cxpulse.sinks.store import ChdbStore
from cxpulse.streams import topics
from cxpulse.streams.dlq import read_dead_letters
from cxpulse.streams.keyed import CORRUPT_INTERNAL
from cxpulse.streams.simulator.noise import NoiseConfig
from cxpulse.streams.simulator.output import send_to_kafka
from tests.support.kafka import produce_raw, wait_drained
from tests.support.truth import (
    HOUR,
    NOISE,
    assert_each_message_counted_once,
    assert_store_equals_truth,
    ground_truth,
    history,
)
from tests.support.workers import alive_check, worker_pool, writer_thread

POISONED = 1  # the keyed partition the poison goes to
NOT_AN_EVENT = b'{"event_id": 5}'
POISON: list[bytes | None] = [
    b"\xff\xfe not a keyed batch",
    None,
    b'[["k", ' + NOT_AN_EVENT + b', "elsewhere.v1", 3, 77, 0]]',
    b'{"a": "batch is a list"}',
]


@pytest.mark.timeout(150)
def test_poison_messages_do_not_stall_their_partition(
    bootstrap: str, worker_env: dict[str, str], chdb_store: ChdbStore, tmp_path: Path
) -> None:
    now_ms = time.time_ns() // 1_000_000
    noise = NoiseConfig(**{**NOISE.__dict__, "malformed": 0.03})
    messages = history(now_ms - 8 * HOUR, 3000, seed=61, noise=noise)
    truth = ground_truth(messages, now_ms)
    migrate(chdb_store)
    # The poison first, then the traffic: its batches queue up behind it on every partition.
    poison_offsets = produce_raw(bootstrap, topics.KEYED.name, POISONED, POISON)
    for _ in send_to_kafka(messages, bootstrap):
        pass
    with (
        writer_thread(chdb_store, bootstrap) as writer,
        worker_pool(worker_env, tmp_path) as pool,
    ):
        check = alive_check(pool, writer)
        worker = pool.start()
        wait_drained(bootstrap, 90, check=check)
    # One process throughout: nothing made it exit.
    assert [w.proc.pid for w in pool.all] == [worker.proc.pid]
    assert assert_store_equals_truth(chdb_store, truth) > 100
    assert_each_message_counted_once(chdb_store, bootstrap, truth, messages, now_ms)
    # Each poison message is dead-lettered once with its exact bytes and where it was; the
    # record that is not an event names the input position its batch claimed.
    internal = [
        (d.reason, d.source_topic, d.source_partition, d.source_offset, d.original)
        for d in read_dead_letters(bootstrap)
        if d.source_topic == topics.KEYED.name or d.original == NOT_AN_EVENT
    ]
    expected = [
        (CORRUPT_INTERNAL, topics.KEYED.name, POISONED, offset, value or b"")
        for offset, value in zip(poison_offsets, POISON, strict=True)
        if value is None or NOT_AN_EVENT not in value
    ]
    expected.append((CORRUPT_INTERNAL, "elsewhere.v1", 3, 77, NOT_AN_EVENT))
    assert sorted(internal) == sorted(expected)
