"""The faust application: the journey agent over keyed batches, with its per-key state.

faust owns consumption of `cx.keyed.v1`, partition assignment, rebalancing and offset commits.
Each message is a batch of up to 1,000 events of one partition, so faust's per-message cost is
paid once per batch. State lives in memory per partition and is persisted by writing every
changed key to the compacted state topic; after a rebalance a partition's state is re-read from
that topic before its first message is processed. Output goes through a confluent-kafka producer
and is flushed before the message is acknowledged, so committed offsets never run ahead of the
state and rows they produced.
"""

from __future__ import annotations

import logging
import time

import faust
from faust.types import TP

from cxpulse.streams import metrics, topics
from cxpulse.streams.ingest import decode_batch
from cxpulse.streams.keyed import KeyState, apply, encode_state, expired_keys
from cxpulse.streams.producer import JsonProducer
from cxpulse.streams.state_store import restore_partition

log = logging.getLogger(__name__)

APP_ID = "cxpulse"
SWEEP_INTERVAL_S = 300.0


class JourneyStage:
    """Per-partition key state and the processing of one keyed batch message."""

    def __init__(self, bootstrap: str, output: JsonProducer) -> None:
        self.bootstrap = bootstrap
        self.output = output
        self.partitions: dict[int, dict[str, KeyState]] = {}

    def states(self, partition: int) -> dict[str, KeyState]:
        states = self.partitions.get(partition)
        if states is None:
            states = restore_partition(self.bootstrap, topics.STATE.name, partition)
            self.partitions[partition] = states
            metrics.KEYS.set(self.key_count())
        return states

    def forget(self, partitions: set[int]) -> None:
        """Drop state of partitions this worker may no longer own; re-read when needed again."""
        for partition in partitions:
            self.partitions.pop(partition, None)
        metrics.KEYS.set(self.key_count())

    def key_count(self) -> int:
        return sum(len(states) for states in self.partitions.values())

    def process(self, partition: int, value: bytes) -> None:
        states = self.states(partition)
        outcome = apply(states, decode_batch(value))
        for key in outcome.changed:
            self.output.send(topics.STATE.name, key, encode_state(states[key]), partition)
        for key, row in outcome.raw_rows:
            self.output.send(topics.STORE_EVENTS_RAW.name, key, row)
        for reason, letter in outcome.dead_letters:
            self.output.send(topics.DLQ.name, None, letter)
            metrics.DEAD_LETTERS.labels("journeys", reason).inc()
        metrics.EVENTS_ACCEPTED.inc(outcome.accepted)
        metrics.DUPLICATES.inc(outcome.duplicates)
        if outcome.changed:
            metrics.KEYS.set(self.key_count())

    def sweep(self, now_ms: int) -> int:
        """Forget keys no future event can reach, with a tombstone so restores forget them too."""
        removed = 0
        for partition, states in self.partitions.items():
            for key in list(expired_keys(states, now_ms)):
                del states[key]
                self.output.send(topics.STATE.name, key, None, partition)
                removed += 1
        return removed


def create_app(bootstrap: str, partitions: int) -> faust.App:
    app = faust.App(
        APP_ID,
        broker=f"kafka://{bootstrap}",
        store="memory://",
        web_enabled=False,
        topic_partitions=partitions,
        consumer_auto_offset_reset="earliest",
        broker_commit_every=100,
        broker_commit_interval=1.0,
        producer_compression_type="lz4",
    )
    output = JsonProducer(bootstrap)
    stage = JourneyStage(bootstrap, output)
    keyed = app.topic(topics.KEYED.name, value_serializer="raw")

    @app.agent(keyed, name="journeys")
    async def journeys(stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            message = event.message
            stage.process(message.partition, message.value)
            # Acknowledged (and later committed) only once this returns: output is in Kafka.
            await app.loop.run_in_executor(None, output.flush)

    @app.timer(SWEEP_INTERVAL_S)
    async def sweep() -> None:
        if stage.sweep(time.time_ns() // 1_000_000):
            await app.loop.run_in_executor(None, output.flush)

    async def on_revoked(_sender: faust.App, revoked: set[TP], **_: object) -> None:
        stage.forget({tp.partition for tp in revoked if tp.topic == topics.KEYED.name})

    app.on_partitions_revoked.connect(on_revoked)
    return app


def run_worker(app: faust.App, loglevel: str) -> None:
    """Run the faust worker in this process until SIGTERM/SIGINT (blocks)."""
    worker = faust.Worker(app, loglevel=loglevel, quiet=True, redirect_stdouts=False)
    worker.execute_from_commandline()
