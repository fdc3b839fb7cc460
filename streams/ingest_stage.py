"""The ingest stage: a batch-consuming confluent-kafka loop in front of the faust journey agent.

It is stateless, so it needs nothing of faust; consuming up to 10,000 messages a poll keeps it
far from faust's per-message ceiling (design section 11). Offsets are committed only after the
keyed batches and dead letters it produced are acknowledged by Kafka: a crash re-reads the
uncommitted messages, and the journey stage drops the resulting copies by event_id.
"""

from __future__ import annotations

import logging
import threading
import time

from confluent_kafka import Consumer, KafkaException, TopicPartition

from cxpulse.schemas.deadletters import Source
from cxpulse.schemas.validate import DEFAULT_BOUNDS, Bounds
from cxpulse.streams import metrics, topics
from cxpulse.streams.ingest import encode_batch, route
from cxpulse.streams.producer import JsonProducer

log = logging.getLogger(__name__)
LAG_EVERY_S = 5.0


class IngestStage:
    def __init__(
        self, bootstrap: str, group_id: str = "cxpulse-ingest", bounds: Bounds = DEFAULT_BOUNDS
    ) -> None:
        self.bounds = bounds
        self.output = JsonProducer(bootstrap)
        self.partitions = self.output.partitions(topics.KEYED.name)
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": group_id,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "partition.assignment.strategy": "cooperative-sticky",
                "fetch.max.bytes": 32 * 1024 * 1024,
                # As the journey agent: a dead worker's partitions move on after 10 s.
                "session.timeout.ms": 10_000,
                "heartbeat.interval.ms": 1_000,
                "logger": logging.getLogger("librdkafka"),
            }
        )
        self.consumer.subscribe([t.name for t in topics.INPUT_TOPICS])

    def run(self, stop: threading.Event) -> None:
        """Until `stop`; the batch in hand is finished (produced, flushed, committed) first."""
        next_lag = 0.0
        try:
            while not stop.is_set():
                self.poll_once()
                if time.monotonic() >= next_lag:
                    self.report_lag()
                    next_lag = time.monotonic() + LAG_EVERY_S
        finally:
            self.consumer.close()

    def report_lag(self) -> None:
        """Consumer lag of the assigned input partitions (for the worker's /metrics)."""
        for tp in self.consumer.assignment():
            try:
                _low, high = self.consumer.get_watermark_offsets(tp, timeout=1.0)
                (position,) = self.consumer.position([tp])
            except KafkaException as exc:
                log.debug("lag of %s unknown: %s", tp, exc)
                continue
            behind = high - position.offset if position.offset >= 0 else high
            metrics.CONSUMER_LAG.labels("ingest", tp.topic, str(tp.partition)).set(max(0, behind))

    def poll_once(self, timeout_s: float = 0.2) -> int:
        messages = self.consumer.consume(10_000, timeout=timeout_s)
        batch = []
        offsets: dict[tuple[str, int], int] = {}
        for message in messages:
            error = message.error()
            if error is not None:
                if error.fatal():
                    raise KafkaException(error)
                log.warning("input consume error: %s", error)
                continue
            source = Source(message.topic(), message.partition(), message.offset())
            batch.append((message.value() or b"", source))
            offsets[(source.topic, source.partition)] = source.offset + 1
        if not batch:
            return 0
        routed = route(batch, self.partitions, time.time_ns() // 1_000_000, self.bounds)
        for partition, chunks in routed.keyed.items():
            for chunk in chunks:
                self.output.send(topics.KEYED.name, None, encode_batch(chunk), partition)
        for reason, letter in routed.dead_letters:
            self.output.send(topics.DLQ.name, None, letter)
            metrics.DEAD_LETTERS.labels("ingest", reason).inc()
        self.output.flush()
        try:
            self.consumer.commit(
                offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()],
                asynchronous=False,
            )
        except KafkaException as exc:
            # Output is in Kafka; whoever reads these messages again drops the copies by event_id.
            log.warning("ingest commit failed (the next owner re-reads these messages): %s", exc)
        metrics.EVENTS_CONSUMED.inc(len(batch))
        return len(batch)
