"""The faust application: the journey agent over keyed batches, and the closing timer.

faust owns consumption of `cx.keyed.v1`, partition assignment, rebalancing and offset commits.
Each message is a batch of up to 1,000 events of one partition, so faust's per-message cost is
paid once per batch; messages are handled in groups (`take_events`), so one flush and one state
write per changed key serve a whole group. State lives in memory per partition and is persisted
by writing every changed key to the compacted state topic; after a rebalance a partition's state
is re-read from that topic before its first message is processed. Output goes through a
confluent-kafka producer and is flushed before the group is acknowledged, so committed offsets
never run ahead of the state and rows they produced.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Sequence
from typing import Any, NoReturn

import faust
from faust.types import TP, Message

from cxpulse.streams import metrics, topics
from cxpulse.streams.contacts import ShiftTable
from cxpulse.streams.funnels import FunnelSpec
from cxpulse.streams.keyed import KeyState
from cxpulse.streams.producer import JsonProducer
from cxpulse.streams.stage import JourneyStage
from cxpulse.streams.state_store import restore_partition

log = logging.getLogger(__name__)

APP_ID = "cxpulse"
TICK_INTERVAL_S = 5.0
# How long a group of keyed messages (CXPULSE_WORKER_GROUP_MESSAGES) waits to fill.
GROUP_WAIT_S = 0.05


def create_app(
    bootstrap: str,
    partitions: int,
    funnels: Sequence[FunnelSpec],
    shifts: ShiftTable,
    group_messages: int,
) -> faust.App:
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
        # A dead worker's partitions move to the others after 10 s, not faust's default 60 s.
        broker_session_timeout=10.0,
        broker_heartbeat_interval=1.0,
    )
    output = JsonProducer(bootstrap)

    def restore(partition: int) -> dict[str, KeyState]:
        return restore_partition(bootstrap, topics.STATE.name, partition)

    stage = JourneyStage(output, funnels, restore, shifts=shifts)
    keyed = app.topic(topics.KEYED.name, value_serializer="raw")

    async def flush_then_persist() -> None:
        # Rows first, then the states that produced them: see JourneyStage.persist. The input
        # is acknowledged (and later committed) only after both are in Kafka.
        with metrics.FLUSH_SECONDS.time():
            await app.loop.run_in_executor(None, output.flush)
            stage.persist()
            await app.loop.run_in_executor(None, output.flush)

    async def handle(messages: list[Message]) -> None:
        for partition in sorted({m.partition for m in messages} - stage.partitions.keys()):
            stage.install(partition, await app.loop.run_in_executor(None, restore, partition))
        stage.process_all([(m.partition, m.value, m.offset) for m in messages])
        await flush_then_persist()
        for message in messages:
            highwater = app.consumer.highwater(message.tp)
            if highwater is not None:
                lag = max(0, highwater - message.offset - 1)
                metrics.CONSUMER_LAG.labels("journeys", message.topic,
                                            str(message.partition)).set(lag)  # fmt: skip

    @app.agent(keyed, name="journeys")
    async def journeys(stream: faust.StreamT[bytes]) -> None:
        async for events in stream.take_events(group_messages, within=GROUP_WAIT_S):
            try:
                await handle([event.message for event in events])
            except asyncio.CancelledError:
                # take_events acknowledges the group on the way out, finished or not.
                die("stopped with a group of input unfinished")
            except Exception:
                die("the journey stage failed")
            # Its rows and states are in Kafka: acknowledge and commit the group now (take_events
            # would acknowledge it only when the next group is asked for, and commit later), so
            # a crash redoes as little as possible.
            for event in events:
                event.ack()
            try:
                await app.consumer.commit()
            except Exception as exc:  # the periodic commit tries again
                log.warning("committing the journey stage's offsets failed: %s", exc)

    @app.timer(TICK_INTERVAL_S)
    async def tick() -> None:
        try:
            stage.tick()
            await flush_then_persist()
        except Exception:
            die("closing journeys failed")

    async def on_revoked(_sender: faust.App, revoked: set[TP], **_: object) -> None:
        # What a tick sent must be in Kafka before another worker restores these partitions.
        await app.loop.run_in_executor(None, output.flush)
        stage.forget({tp.partition for tp in revoked if tp.topic == topics.KEYED.name})

    async def on_assigned(_sender: faust.App, assigned: set[TP], **_: object) -> None:
        # Restore every partition now, not at its first message: a quiet partition's open
        # journeys must still close on time.
        for tp in sorted(assigned):
            if tp.topic == topics.KEYED.name and tp.partition not in stage.partitions:
                states = await app.loop.run_in_executor(None, restore, tp.partition)
                stage.install(tp.partition, states)

    app.on_partitions_revoked.connect(on_revoked)
    app.on_partitions_assigned.connect(on_assigned)
    return app


def die(what: str) -> NoReturn:
    """Stop the whole process at once, before faust can acknowledge what failed.

    In-memory state may then be ahead of what reached Kafka; a restarted worker re-reads state
    and input from Kafka and redoes the work exactly (copies are dropped by event_id).
    """
    log.exception("%s; exiting so the work is redone from Kafka", what)
    logging.shutdown()
    os._exit(70)


def run_worker(app: faust.App, logging_config: dict[str, Any]) -> None:
    """Run the faust worker in this process until SIGTERM/SIGINT (blocks). On SIGTERM faust
    stops the agent after the batch in hand (whose output is flushed before it is
    acknowledged) and commits what was acknowledged."""
    level = logging_config["root"]["level"]
    worker = faust.Worker(app, loglevel=level, logging_config=logging_config, quiet=True,
                          redirect_stdouts=False)  # fmt: skip
    worker.execute_from_commandline()
