"""The faust application: its configuration and the ingest agent.

faust owns consumption, partition assignment, rebalancing and offset commits; the agent consumes
messages in batches (one faust hand-off per message caps a worker near 11,000 events/s, design
section 11) and hands its output to a confluent-kafka producer, flushing it before the batch is
acknowledged so that offsets never run ahead of what was produced.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import faust
from faust.types import EventT

from cxpulse.streams import topics
from cxpulse.streams.ingest import (
    DeadLetter,
    Source,
    dead_letter_record,
    parse_envelope,
    raw_event_row,
)
from cxpulse.streams.producer import JsonProducer

log = logging.getLogger(__name__)

APP_ID = "cxpulse"
BATCH_MAX = 5_000
BATCH_WITHIN_S = 0.2


def create_app(bootstrap: str, partitions: int) -> faust.App:
    app = faust.App(
        APP_ID,
        broker=f"kafka://{bootstrap}",
        store="memory://",
        web_enabled=False,
        topic_partitions=partitions,
        consumer_auto_offset_reset="earliest",
        broker_commit_every=BATCH_MAX,
        broker_commit_interval=1.0,
        producer_compression_type="lz4",
    )
    output = JsonProducer(bootstrap)
    source = app.topic(*(t.name for t in topics.INPUT_TOPICS), value_serializer="raw")

    @app.agent(source, name="ingest")
    async def ingest(stream: faust.StreamT[bytes]) -> None:
        async for events in stream.take_events(BATCH_MAX, within=BATCH_WITHIN_S):
            process_batch(events, output)
            # Acknowledged (and later committed) only once this returns: output is in Kafka.
            await app.loop.run_in_executor(None, output.flush)

    return app


def process_batch(events: Sequence[EventT], output: JsonProducer) -> None:
    received_ms = time.time_ns() // 1_000_000
    for event in events:
        message = event.message
        raw = message.value if isinstance(message.value, bytes) else bytes(message.value or b"")
        source = Source(message.topic, message.partition, message.offset)
        parsed = parse_envelope(raw)
        if isinstance(parsed, DeadLetter):
            record = dead_letter_record(parsed, raw, source, received_ms)
            output.send(topics.DLQ.name, None, record)
            log.warning(
                "dead-lettered %s:%s@%s: %s",
                source.topic,
                source.partition,
                source.offset,
                parsed.reason,
            )
            continue
        row = raw_event_row(parsed, raw, source, received_ms)
        output.send(topics.STORE_EVENTS_RAW.name, parsed.journey_key, row)


def run_worker(app: faust.App, loglevel: str) -> None:
    """Run the faust worker in this process until SIGTERM/SIGINT (blocks)."""
    worker = faust.Worker(app, loglevel=loglevel, quiet=True, redirect_stdouts=False)
    worker.execute_from_commandline()
