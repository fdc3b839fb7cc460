"""Dead-letter tools: what was rejected and why, and re-injecting it after a fix.

Reading the DLQ never commits offsets (it is a log to inspect, not a queue to drain), so
`inspect` always sees everything still retained. `replay` sends the exact original bytes back to
the topic they came from, where they are validated again; valid copies of events that were
already accepted are dropped as duplicates, so replaying twice is harmless.
"""

from __future__ import annotations

import base64
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from cxpulse.streams import topics
from cxpulse.streams.producer import JsonProducer


@dataclass(frozen=True)
class DeadLetter:
    offset: tuple[int, int]  # (partition, offset) in the DLQ
    reason: str
    detail: str
    source_topic: str
    source_partition: int
    source_offset: int
    received_at: str
    original: bytes

    @classmethod
    def from_message(cls, partition: int, offset: int, value: bytes) -> DeadLetter:
        doc = orjson.loads(value)
        return cls(
            (partition, offset),
            doc["reason"],
            doc["detail"],
            doc["source_topic"],
            doc["source_partition"],
            doc["source_offset"],
            doc["received_at"],
            base64.b64decode(doc["original_b64"]),
        )

    def preview(self, limit: int = 160) -> str:
        text = self.original.decode("utf-8", errors="backslashreplace")
        return text if len(text) <= limit else text[:limit] + "..."


def read_dead_letters(bootstrap: str, topic: str = topics.DLQ.name) -> Iterator[DeadLetter]:
    """Every dead letter retained in the topic, partition by partition, up to its current end."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"cxpulse-dlq-reader-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            # The journey stage dead-letters inside its transactions: not what they aborted.
            "isolation.level": "read_committed",
        }
    )
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics[topic]
        # The ends of every partition, taken before reading any: letters that arrive meanwhile
        # (a replay dead-lettering again) are not read, so nothing is replayed twice.
        ends = {
            partition: consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            for partition in sorted(metadata.partitions)
        }
        for partition, (low, high) in ends.items():
            tp = TopicPartition(topic, partition)
            if high <= low:
                continue
            consumer.assign([TopicPartition(topic, partition, OFFSET_BEGINNING)])
            while consumer.position([tp])[0].offset < high:
                for message in consumer.consume(1000, timeout=1.0):
                    if message.error() is None and message.offset() < high:
                        yield DeadLetter.from_message(partition, message.offset(), message.value())
    finally:
        consumer.close()


@dataclass
class Inspection:
    total: int
    by_reason: dict[str, int]
    samples: dict[str, list[DeadLetter]]

    def as_json(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "by_reason": self.by_reason,
            "samples": {
                reason: [
                    {
                        "dlq_partition": d.offset[0],
                        "dlq_offset": d.offset[1],
                        "detail": d.detail,
                        "source": f"{d.source_topic}[{d.source_partition}]@{d.source_offset}",
                        "received_at": d.received_at,
                        "original": d.preview(),
                    }
                    for d in letters
                ]
                for reason, letters in self.samples.items()
            },
        }


def inspect(letters: Iterator[DeadLetter], samples_per_reason: int = 3) -> Inspection:
    counts: Counter[str] = Counter()
    samples: dict[str, list[DeadLetter]] = {}
    for letter in letters:
        counts[letter.reason] += 1
        bucket = samples.setdefault(letter.reason, [])
        if len(bucket) < samples_per_reason:
            bucket.append(letter)
    return Inspection(sum(counts.values()), dict(counts.most_common()), samples)


def replay(
    letters: Iterator[DeadLetter],
    bootstrap: str,
    select: Callable[[DeadLetter], bool],
    *,
    dry_run: bool = False,
) -> Counter[str]:
    """Send the selected dead letters' original bytes to their source topics; counts by topic."""
    producer = None if dry_run else JsonProducer(bootstrap)
    sent: Counter[str] = Counter()
    for letter in letters:
        if not select(letter):
            continue
        if producer is not None:
            producer.send(letter.source_topic, None, letter.original)
        sent[letter.source_topic] += 1
    if producer is not None:
        producer.flush()
    return sent
