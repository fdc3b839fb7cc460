"""Restore the journey stage's per-key state from its compacted topic.

The state topic is co-partitioned with `cx.keyed.v1` (the same partition number holds the same
keys), so a worker that is assigned keyed partition p reads state partition p from the beginning
to its end offset and has every key's latest state; a tombstone deletes a key.

States are written in Kafka transactions (`TransactionalProducer`), so the restore reads
committed messages only: what an earlier owner wrote in a transaction that was aborted, or that
its successor's `init_transactions()` fenced, is never restored. The caller takes the
partition's transactional id over before restoring, so no transaction of the partition is
open and the read reaches the end offset (position steps over transaction markers).
"""

from __future__ import annotations

import logging
import time
import uuid

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from cxpulse.streams import metrics
from cxpulse.streams.keyed import KeyState, decode_state

log = logging.getLogger(__name__)

RESTORE_TIMEOUT_S = 600


def _apply_record(
    states: dict[str, KeyState], key: bytes | None, value: bytes | None, offset: int
) -> None:
    """One state record. A record cxpulse did not write (no key, a key or value it cannot
    decode) is skipped and counted, never raised: raising would stop every worker that takes
    the partition over in turn. Its key's state is then whatever came before it; the stored
    figures of that key may be off, so the log names it."""
    try:
        name = (key or b"").decode()
        if not name:
            raise ValueError("a state record without a key")
        if value is None:
            states.pop(name, None)
        else:
            states[name] = decode_state(value)
    except Exception as exc:
        metrics.STATE_RECORDS_UNREADABLE.inc()
        log.error("skipping unreadable state record at offset %d (key %r): %s", offset,
                  (key or b"")[:64], exc)  # fmt: skip


def restore_partition(bootstrap: str, topic: str, partition: int) -> dict[str, KeyState]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"cxpulse-restore-{uuid.uuid4().hex}",  # never commits
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    started = time.monotonic()
    states: dict[str, KeyState] = {}
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
        if high <= low:
            return states
        tp = TopicPartition(topic, partition, OFFSET_BEGINNING)
        consumer.assign([tp])
        deadline = time.monotonic() + RESTORE_TIMEOUT_S
        # position() also steps over offsets that compaction removed.
        while consumer.position([tp])[0].offset < high:
            if time.monotonic() > deadline:
                raise TimeoutError(f"restoring {topic}[{partition}] exceeded {RESTORE_TIMEOUT_S} s")
            for message in consumer.consume(10_000, timeout=1.0):
                error = message.error()
                if error is not None:
                    raise KafkaException(error)
                _apply_record(states, message.key(), message.value(), message.offset())
    finally:
        consumer.close()
    log.info(
        "restored %d keys of %s[%d] in %.2f s", len(states), topic, partition,
        time.monotonic() - started,
    )  # fmt: skip
    return states
