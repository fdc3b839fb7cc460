"""The faust application: the journey agent over keyed batches, and the closing timer.

faust owns consumption of `cx.keyed.v1`, partition assignment, rebalancing and offset commits.
Each message is a batch of up to 1,000 events of one partition, so faust's per-message cost is
paid once per batch; messages are handled in groups (`take_events`), so one commit and one state
write per changed key serve a whole group. State lives in memory per partition and is persisted
by writing every changed key to the compacted state topic.

Ownership and fencing (issue 14, docs/decisions.md): every keyed partition this worker owns has
its own transactional confluent-kafka producer (`cxpulse-journeys-<p>`). Taking a partition
over calls `init_transactions()`, which fences the previous owner (and aborts its open
transaction), and only then restores the partition's state with a read_committed consumer.
Everything one group (or one tick) produces for a partition - rows, dead letters, freshness,
states - is sent in that partition's transaction and committed before the input is
acknowledged; every reader of those topics reads committed messages only. So a worker that lost
a partition without knowing it (stalled past the session timeout, frozen, partitioned away)
can no longer write anything a reader sees once the new owner has taken over: its commit fails
as fenced, and it exits (`die`) before acknowledging, to start afresh from Kafka.

The stage's work runs in one worker thread, never on the event loop, so faust's heartbeats and
rebalances are not held up by a large group; one asyncio lock serializes the agent, the timer
and the rebalance handlers on the stage's shared state (`dirty`, partitions, producers).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NoReturn, TypeVar

import faust
from faust.types import TP, Message
from prometheus_client import Counter

from cxpulse.schemas.deadletters import Source, dead_letter
from cxpulse.schemas.validate import Rejection
from cxpulse.streams import metrics, topics
from cxpulse.streams.contacts import ShiftTable
from cxpulse.streams.funnels import FunnelSpec
from cxpulse.streams.keyed import DEFAULT_KEY_LIMITS, KeyLimits
from cxpulse.streams.keystate import KeyState
from cxpulse.streams.producer import (
    DEFAULT_MAX_MESSAGE_BYTES,
    TransactionalProducer,
    TransactionFailed,
)
from cxpulse.streams.rowbatch import MAX_MESSAGE_BYTES, RowBatcher
from cxpulse.streams.stage import JourneyStage
from cxpulse.streams.state_store import restore_partition
from cxpulse.streams.windows import DEFAULT_WINDOWS, Windows

log = logging.getLogger(__name__)

APP_ID = "cxpulse"
TICK_INTERVAL_S = 5.0
# How long a group of keyed messages (CXPULSE_WORKER_GROUP_MESSAGES) waits to fill.
GROUP_WAIT_S = 0.05
T = TypeVar("T")

TRANSACTIONS = Counter(
    "cxpulse_journey_transactions",
    "Transactions of the journey stage committed, by keyed partition.",
    ["partition"],
)


def transactional_id(partition: int) -> str:
    """The same for every worker that owns the partition: that is what fences the last one."""
    return f"{APP_ID}-journeys-{partition}"


class PartitionOutput:
    """The stage's sender: everything goes into the transaction of the partition being worked
    on, and nothing can be sent outside one (a write for a partition this worker does not own
    is a bug, not something to let through)."""

    def __init__(self) -> None:
        self.target: TransactionalProducer | None = None

    def send(
        self, topic: str, key: str | bytes | None, value: object, partition: int | None = None
    ) -> None:
        if self.target is None:
            raise RuntimeError(f"output to {topic} outside a partition's transaction")
        self.target.send(topic, key, value, partition)


def too_large_letter(reason: str, detail: str, topic: str, payload: bytes) -> bytes:
    """The dead letter of output Kafka would refuse as too large (counted like any other). Its
    source is the topic it was meant for, at no offset (it never got there); the original is
    cut to what a dead letter carries, so it is for inspection, not for replay."""
    metrics.DEAD_LETTERS.labels("journeys", reason).inc()
    return dead_letter(
        Rejection(reason, detail), payload, Source(topic, -1, -1), time.time_ns() // 1_000_000
    )


def create_app(
    bootstrap: str,
    partitions: int,
    funnels: Sequence[FunnelSpec],
    shifts: ShiftTable,
    group_messages: int,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    limits: KeyLimits = DEFAULT_KEY_LIMITS,
    windows: Windows = DEFAULT_WINDOWS,
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
    output = PartitionOutput()
    owners: dict[int, TransactionalProducer] = {}
    lock = asyncio.Lock()
    # One thread: the stage is not thread-safe, and its work must not block the event loop.
    work = ThreadPoolExecutor(max_workers=1, thread_name_prefix="journeys")

    def unowned(partition: int) -> dict[str, KeyState]:
        raise RuntimeError(f"keyed partition {partition} is not owned by this worker")

    # Store rows leave in a few messages per partition's transaction, not one per row.
    rows = RowBatcher(output, max_bytes=min(MAX_MESSAGE_BYTES, max_message_bytes))
    stage = JourneyStage(rows, funnels, unowned, shifts=shifts, limits=limits, windows=windows)
    keyed = app.topic(topics.KEYED.name, value_serializer="raw")

    async def off_loop(fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(work, fn, *args)

    async def own(partition: int) -> None:
        """Take the partition over: fence its last owner, then restore what it committed."""
        if partition in owners:
            return
        producer = TransactionalProducer(
            bootstrap, transactional_id(partition), max_message_bytes, too_large_letter
        )
        await off_loop(producer.init)
        states = await off_loop(restore_partition, bootstrap, topics.STATE.name, partition)
        owners[partition] = producer
        stage.install(partition, states)
        log.info("owning keyed partition %d (%d keys)", partition, len(states))

    def disown(partitions: set[int]) -> None:
        for partition in sorted(partitions & owners.keys()):
            owners.pop(partition).close()
        stage.forget(partitions)

    def commit(partitions: Sequence[int]) -> None:
        """Commit each partition's transaction (in the stage thread)."""
        output.target = None
        with metrics.FLUSH_SECONDS.time():
            for partition in partitions:
                if owners[partition].commit():
                    TRANSACTIONS.labels(str(partition)).inc()

    def process(groups: dict[int, list[tuple[int, bytes | None, int]]]) -> None:
        for partition, messages in groups.items():
            with stage.only(partition):
                output.target = owners[partition]
                stage.process_all(messages)
                stage.persist()
                rows.flush(None)
        commit(sorted(groups))

    def close_journeys() -> None:
        for partition in sorted(owners):
            with stage.only(partition):
                output.target = owners[partition]
                stage.tick()
                stage.persist()
                rows.flush(None)
        commit(sorted(owners))

    async def handle(messages: list[Message]) -> None:
        groups: dict[int, list[tuple[int, bytes | None, int]]] = {}
        for m in messages:
            groups.setdefault(m.partition, []).append((m.partition, m.value, m.offset))
        async with lock:
            for partition in sorted(groups):
                await own(partition)
            await off_loop(process, groups)
        for message in messages:
            try:
                highwater = app.consumer.highwater(message.tp)
            except AssertionError:  # revoked by a rebalance meanwhile: its lag is not ours
                continue
            if highwater is not None:
                lag = max(0, highwater - message.offset - 1)
                metrics.CONSUMER_LAG.labels("journeys", message.topic, str(message.partition)).set(
                    lag
                )

    @app.agent(keyed, name="journeys")
    async def journeys(stream: faust.StreamT[bytes]) -> None:
        async for events in stream.take_events(group_messages, within=GROUP_WAIT_S):
            try:
                await handle([event.message for event in events])
            except asyncio.CancelledError:
                # take_events acknowledges the group on the way out, finished or not.
                die("stopped with a group of input unfinished")
            except TransactionFailed as exc:
                die(_failed(exc))
            except Exception:
                die("the journey stage failed")
            # Its rows and states are committed: acknowledge and commit the group now
            # (take_events would acknowledge it only when the next group is asked for, and
            # commit later), so a crash redoes as little as possible.
            for event in events:
                event.ack()
            try:
                await app.consumer.commit()
            except Exception as exc:  # the periodic commit tries again
                log.warning("committing the journey stage's offsets failed: %s", exc)

    @app.timer(TICK_INTERVAL_S)
    async def tick() -> None:
        try:
            async with lock:
                await off_loop(close_journeys)
        except TransactionFailed as exc:
            die(_failed(exc))
        except Exception:
            die("closing journeys failed")

    async def on_revoked(_sender: faust.App, revoked: set[TP], **_: object) -> None:
        # faust calls this after every group in hand was acknowledged (so committed); the lock
        # waits for a tick. Nothing is written for these partitions again unless reassigned.
        async with lock:
            await off_loop(
                disown, {tp.partition for tp in revoked if tp.topic == topics.KEYED.name}
            )

    async def on_assigned(_sender: faust.App, assigned: set[TP], **_: object) -> None:
        # Take every partition over now, not at its first message: a quiet partition's open
        # journeys must still close on time.
        try:
            async with lock:
                for tp in sorted(assigned):
                    if tp.topic == topics.KEYED.name:
                        await own(tp.partition)
        except TransactionFailed as exc:
            die(_failed(exc))

    app.on_partitions_revoked.connect(on_revoked)
    app.on_partitions_assigned.connect(on_assigned)
    return app


def _failed(exc: TransactionFailed) -> str:
    if exc.fenced:
        return (
            f"fenced: another worker took a keyed partition over ({exc}); this one writes "
            "nothing more for it"
        )
    return f"a journey transaction failed ({exc})"


def die(what: str) -> NoReturn:
    """Stop the whole process at once, before faust can acknowledge what failed.

    In-memory state may then be ahead of what reached Kafka; a restarted worker re-reads state
    and input from Kafka and redoes the work exactly (copies are dropped by event_id).
    """
    log.exception("%s; exiting so the work is redone from Kafka", what)
    logging.shutdown()
    os._exit(70)


#: Allocations between young collections (CPython's default is 700). The journey state holds a
#: few GC-tracked containers per journey and contact (lists of events, indexes); with the
#: default, collections that walk them took half of the stage's CPU (bench.worker_throughput's
#: in-process stage: 12,300 events/s with it, 20,200 with this, 21,200 with the collector off).
GC_YOUNG_THRESHOLD = 50_000


def tune_gc() -> None:
    """Collect garbage rarely: the stage makes no reference cycles on its hot path, and what it
    keeps is long-lived state, which every collection of the old generations walks again."""
    gc.set_threshold(GC_YOUNG_THRESHOLD, 20, 20)


def run_worker(app: faust.App, logging_config: dict[str, Any]) -> None:
    """Run the faust worker in this process until SIGTERM/SIGINT (blocks). On SIGTERM faust
    stops the agent after the batch in hand (whose output is flushed before it is
    acknowledged) and commits what was acknowledged."""
    tune_gc()
    level = logging_config["root"]["level"]
    worker = faust.Worker(
        app, loglevel=level, logging_config=logging_config, quiet=True, redirect_stdouts=False
    )
    worker.execute_from_commandline()
