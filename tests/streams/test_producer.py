"""The worker's producers: failed deliveries surface; a partition's transactional producer is
fenced by the next owner, and output too large for Kafka is dead-lettered, never refused."""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, TopicPartition

from cxpulse.streams import topics
from cxpulse.streams.app import too_large_letter
from cxpulse.streams.producer import (
    ROW_TOO_LARGE,
    STATE_TOO_LARGE,
    JsonProducer,
    TransactionalProducer,
    TransactionFailed,
)


def test_a_message_kafka_refuses_makes_flush_raise(bootstrap: str) -> None:
    topics.ensure_topics(bootstrap, 4)
    producer = JsonProducer(bootstrap)
    producer.send(topics.STATE.name, "key", {"ok": True}, 0)
    producer.flush()  # delivered: no report, no error
    producer.send(topics.STATE.name, None, {"no": "key"}, 0)  # a compacted topic needs keys
    with pytest.raises(RuntimeError, match=r"Kafka rejected 1 messages.*INVALID_RECORD"):
        producer.flush()
    producer.flush()  # the error was reported once


def _committed(bootstrap: str, topic: str, partition: int, start: int) -> list[tuple[bytes, bytes]]:
    """(key, value) of the committed messages of one partition from `start` to its end."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex,
         "enable.auto.commit": False, "isolation.level": "read_committed"}
    )  # fmt: skip
    try:
        tp = TopicPartition(topic, partition, start)
        end = consumer.get_watermark_offsets(tp, timeout=10)[1]
        consumer.assign([tp])
        found: list[tuple[bytes, bytes]] = []
        deadline = time.monotonic() + 30
        while consumer.position([tp])[0].offset < end:
            assert time.monotonic() < deadline
            found += [(m.key(), m.value()) for m in consumer.consume(100, timeout=0.5)
                      if m.error() is None]  # fmt: skip
        return found
    finally:
        consumer.close()


def _end(bootstrap: str, topic: str, partition: int) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "end-probe"})
    try:
        return consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)[1]
    finally:
        consumer.close()


def test_a_new_owner_fences_the_last_one_and_its_writes_never_show(bootstrap: str) -> None:
    """The zombie's open transaction is aborted by the new owner's init_transactions(); its
    commit then fails as fenced, and a read_committed reader sees the new owner's writes only."""
    topics.ensure_topics(bootstrap, 4)
    tid = f"test-fence-{uuid.uuid4().hex}"
    start = _end(bootstrap, topics.STATE.name, 3)
    zombie = TransactionalProducer(bootstrap, tid)
    zombie.init()
    zombie.send(topics.STATE.name, "k", b'{"owner":"zombie"}', 3)
    zombie._producer.flush(10)  # written, in an open transaction
    owner = TransactionalProducer(bootstrap, tid)
    owner.init()  # fences the zombie, aborts its transaction
    owner.send(topics.STATE.name, "k", b'{"owner":"new"}', 3)
    assert owner.commit()

    def late_write() -> None:  # the zombie goes on as if it still owned the partition
        zombie.send(topics.STATE.name, "k", b'{"owner":"zombie-late"}', 3)
        zombie.commit()

    with pytest.raises(TransactionFailed) as failed:
        late_write()
    assert failed.value.fenced, failed.value
    assert _committed(bootstrap, topics.STATE.name, 3, start) == [(b"k", b'{"owner":"new"}')]


def test_output_too_large_for_kafka_is_dead_lettered_with_its_key(bootstrap: str) -> None:
    topics.ensure_topics(bootstrap, 4)
    letters: list[tuple[str, str]] = []

    def letter(reason: str, detail: str, topic: str, payload: bytes) -> bytes:
        letters.append((reason, detail))
        return too_large_letter(reason, detail, topic, payload)  # what the worker sends

    producer = TransactionalProducer(
        bootstrap, f"test-large-{uuid.uuid4().hex}", max_message_bytes=10_000, dead_letters=letter
    )
    producer.init()
    start = _end(bootstrap, topics.STATE.name, 2)
    producer.send(topics.STATE.name, "small", {"x": "y"}, 2)
    producer.send(topics.STATE.name, "huge", {"x": "y" * 20_000}, 2)
    producer.send(topics.STORE_JOURNEYS.name, "huge-row", {"x": "z" * 20_000})
    assert producer.commit()  # the transaction is intact
    assert [r for r, _ in letters] == [STATE_TOO_LARGE, ROW_TOO_LARGE]
    assert "'huge'" in letters[0][1]
    assert "'huge-row'" in letters[1][1]
    assert [k for k, _ in _committed(bootstrap, topics.STATE.name, 2, start)] == [b"small"]


def test_a_call_failing_as_fatal_is_named_by_the_producers_fatal_error() -> None:
    """A produce() after the producer was fenced fails only as `_FATAL`; the fatal error the
    producer reported says it was fenced, and the worker must hear that (exit, never write)."""
    producer = TransactionalProducer("127.0.0.1:1", "test-fatal")
    bare = KafkaError(KafkaError._FATAL, "Unable to produce message: Local: Fatal error")
    assert not producer._failed("produce to t", bare).fenced
    producer._on_error(
        KafkaError(KafkaError._FENCED, "Producer fenced by newer instance", fatal=True)
    )
    failure = producer._failed("produce to t", bare)
    assert failure.fenced
    assert "fenced" in str(failure).lower()
