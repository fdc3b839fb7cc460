"""Restore the journey stage's per-key state from its compacted topic.

The state topic is co-partitioned with `cx.keyed.v1` (the same partition number holds the same
keys), so a worker that is assigned keyed partition p reads state partition p from the beginning
to its end offset and has the latest record of every unit of every key (`keystate.py`: a
journey, a contact, a key's links); a tombstone deletes a unit.

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
from collections.abc import Iterable

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from cxpulse.streams import metrics
from cxpulse.streams.keystate import KeyState
from cxpulse.streams.units import UnitRecord, decode_record, parse_record_key

log = logging.getLogger(__name__)

RESTORE_TIMEOUT_S = 600


def _unreadable(offset: int, key: bytes | None, exc: Exception) -> None:
    """A record cxpulse did not write (no key, a key or value it cannot decode) is skipped and
    counted, never raised: raising would stop every worker that takes the partition over in
    turn. Only the last record of a unit is decoded, so the unit is then left out; the stored
    figures of its key may be off, so the log names it."""
    metrics.STATE_RECORDS_UNREADABLE.inc()
    log.error(
        "skipping unreadable state record at offset %d (key %r): %s", offset, (key or b"")[:64], exc
    )


def states_from_records(
    records: Iterable[tuple[bytes | None, bytes | None, int]],
) -> dict[str, KeyState]:
    """The keys of a state partition from its records (key, value, offset) in offset order:
    the last record of each unit wins, and a record without a value deletes its unit."""
    latest: dict[bytes, tuple[bytes | None, int]] = {}
    for key, value, offset in records:
        if not key:
            _unreadable(offset, key, ValueError("a state record without a key"))
            continue
        latest[key] = (value, offset)
    units: dict[str, dict[tuple[str, str], UnitRecord]] = {}
    for key, (value, offset) in latest.items():
        if value is None:
            continue
        try:
            journey_key, kind, unit = parse_record_key(key)
            units.setdefault(journey_key, {})[(kind, unit)] = decode_record(value)
        except Exception as exc:
            _unreadable(offset, key, exc)
    return {key: KeyState.restore(records) for key, records in units.items()}


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
    records: list[tuple[bytes | None, bytes | None, int]] = []
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
        if high <= low:
            return {}
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
                records.append((message.key(), message.value(), message.offset()))
    finally:
        consumer.close()
    states = states_from_records(records)
    log.info(
        "restored %d keys of %s[%d] from %d records in %.2f s",
        len(states),
        topic,
        partition,
        len(records),
        time.monotonic() - started,
    )
    return states
