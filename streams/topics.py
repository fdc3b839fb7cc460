"""Every Kafka topic cxpulse reads or writes, and their creation.

Topics are created explicitly (the local broker has auto-creation off) so partition counts are a
decision, not an accident: input, internal and store topics share `CXPULSE_TOPIC_PARTITIONS`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

log = logging.getLogger(__name__)

DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True)
class TopicSpec:
    name: str
    config: dict[str, str] = field(default_factory=dict)
    partitions: int | None = None  # None: the deployment's count (CXPULSE_TOPIC_PARTITIONS)


PORTAL = TopicSpec("cx.portal.v1", {"retention.ms": str(7 * DAY_MS)})
CONTACT = TopicSpec("cx.contact.v1", {"retention.ms": str(7 * DAY_MS)})
# Dead letters are kept as long as events are accepted (max_event_age) so they can be replayed.
DLQ = TopicSpec("cx.dlq.v1", {"retention.ms": str(30 * DAY_MS)})
# Valid events, re-keyed by journey key and batched per partition by the ingest stage.
KEYED = TopicSpec("cx.keyed.v1", {"retention.ms": str(7 * DAY_MS)})
# The journey stage's state, a record per journey, contact and key's links (streams/keystate.py);
# compacted, it is the stage's recovery log.
STATE = TopicSpec(
    "cx.state.units.v2",
    {
        "cleanup.policy": "compact",
        "segment.ms": str(3600 * 1000),
        "min.compaction.lag.ms": "0",
    },
)
# Rows on their way to the store; the writer commits only after inserting them.
STORE_EVENTS_RAW = TopicSpec("cx.store.events_raw.v1", {"retention.ms": str(7 * DAY_MS)})
STORE_JOURNEYS = TopicSpec("cx.store.journeys.v1", {"retention.ms": str(7 * DAY_MS)})
STORE_JOURNEY_FUNNELS = TopicSpec("cx.store.journey_funnels.v1", {"retention.ms": str(7 * DAY_MS)})
STORE_CONTACTS = TopicSpec("cx.store.contacts.v1", {"retention.ms": str(7 * DAY_MS)})
STORE_FRESHNESS = TopicSpec("cx.store.freshness.v1", {"retention.ms": str(DAY_MS)})
# Alert changes (firing, resolved) for downstream consumers, keyed by alert id.
ALERTS = TopicSpec("cx.alerts.v1", {"retention.ms": str(30 * DAY_MS)})
# Facts the journey state depends on, e.g. the partition count it was built with (`layout`).
META = TopicSpec("cx.meta.v1", {"cleanup.policy": "compact"}, partitions=1)

INPUT_TOPICS = (PORTAL, CONTACT)
# Store topic -> the ClickHouse table its rows go to.
STORE_TABLES: dict[str, str] = {
    STORE_EVENTS_RAW.name: "events_raw",
    STORE_JOURNEYS.name: "journeys",
    STORE_JOURNEY_FUNNELS.name: "journey_funnels",
    STORE_CONTACTS.name: "contacts",
    STORE_FRESHNESS.name: "freshness",
}
ALL_TOPICS = (
    PORTAL, CONTACT, DLQ, KEYED, STATE,
    STORE_EVENTS_RAW, STORE_JOURNEYS, STORE_JOURNEY_FUNNELS, STORE_CONTACTS, STORE_FRESHNESS,
    ALERTS, META,
)  # fmt: skip


def ensure_topics(
    bootstrap: str, partitions: int, topics: tuple[TopicSpec, ...] = ALL_TOPICS
) -> list[str]:
    """Create the topics that do not exist yet, then (for the full set) check that the keyed
    and state topics still have the partition count the state was built with (`check_layout`,
    which raises PartitionLayoutError); returns the names created."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    existing = set(admin.list_topics(timeout=10).topics)
    missing = [
        NewTopic(
            t.name,
            num_partitions=t.partitions or partitions,
            replication_factor=-1,
            config=t.config,
        )
        for t in topics
        if t.name not in existing
    ]
    created: list[str] = []
    if missing:
        created = _create(admin, missing)
    if {KEYED.name, STATE.name, META.name} <= {t.name for t in topics}:
        check_layout(bootstrap)
    return created


def _create(admin: AdminClient, missing: list[NewTopic]) -> list[str]:
    created = []
    for name, future in admin.create_topics(missing, operation_timeout=30).items():
        try:
            future.result()
        except Exception as exc:  # a concurrent creator won the race: fine
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise
        else:
            created.append(name)
    return created


class PartitionLayoutError(SystemExit):
    """The partition counts no longer match the ones the journey state was built with.

    A SystemExit: every process that checks (worker, `up`) stops at once with the message and
    exit status 1, before it consumes or routes anything."""


LAYOUT_KEY = b"layout"
PROCEDURE = "see 'Changing the partition count' in README.md"


def partition_counts(
    admin: AdminClient, names: Sequence[str], timeout_s: float = 30
) -> dict[str, int]:
    """Partition counts of existing topics (waiting a little for topics just created)."""
    deadline = time.monotonic() + timeout_s
    while True:
        metadata = admin.list_topics(timeout=10).topics
        counts = {n: len(metadata[n].partitions) for n in names if n in metadata}
        if len(counts) == len(names) or time.monotonic() > deadline:
            return counts
        time.sleep(0.2)


def check_layout(bootstrap: str) -> int:
    """Refuse a keyed or state topic whose partition count differs from the count the state was
    built with (recorded in the `layout` record of the meta topic); returns that count.

    A journey key's state lives in the state partition of the same number as the keyed
    partition its events are routed to (crc32 of the key modulo the count), so adding
    partitions to `cx.keyed.v1` or `cx.state.units.v2` sends keys to partitions that do not hold
    their state: events would be counted against an empty state. While both topics are empty
    nothing has been routed yet, and the current count is (re)recorded. Input and store topics
    may have any count (nothing is co-partitioned with them); a difference is only logged.
    """
    admin = AdminClient({"bootstrap.servers": bootstrap})
    counts = partition_counts(admin, [t.name for t in ALL_TOPICS if t is not META])
    keyed, state = counts[KEYED.name], counts[STATE.name]  # ensure_topics created them
    recorded, empty = _read_layout(bootstrap, keyed, state)
    if keyed == state and (recorded is None or recorded == keyed or empty):
        if recorded != keyed:
            _write_layout(bootstrap, keyed)
        others = {n: c for n, c in counts.items() if c != keyed}
        if others:
            log.info(
                "topics with another partition count than %s (%d): %s", KEYED.name, keyed, others
            )
        return keyed
    built = recorded if recorded is not None else state
    raise PartitionLayoutError(
        f"refusing to start: the journey state was built for {built} partitions, but "
        f"{KEYED.name} has {keyed} and {STATE.name} has {state}. Keys would be routed to "
        f"partitions that do not hold their state and be counted wrong. Partition counts of "
        f"these topics cannot change while they hold data: {PROCEDURE} (rebuild the state "
        f"with the new count, or recreate the topics with {built} partitions)."
    )


def _read_layout(bootstrap: str, keyed: int, state: int) -> tuple[int | None, bool]:
    """The recorded partition count (None: never recorded), and whether the keyed and state
    topics are still empty."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "cxpulse-layout-check",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    try:
        ends = [
            _watermarks(consumer, TopicPartition(name, p))[1]
            for name, count in ((KEYED.name, keyed), (STATE.name, state))
            for p in range(count)
        ]
        tp = TopicPartition(META.name, 0)
        low, high = _watermarks(consumer, tp)
        recorded = None
        if high > low:
            consumer.assign([TopicPartition(META.name, 0, OFFSET_BEGINNING)])
            deadline = time.monotonic() + 30
            while consumer.position([tp])[0].offset < high:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"reading {META.name} took over 30 s")
                for message in consumer.consume(100, timeout=1.0):
                    if message.error() is None and message.key() == LAYOUT_KEY:
                        recorded = int(json.loads(message.value())["partitions"])
        return recorded, not any(ends)
    finally:
        consumer.close()


def _watermarks(consumer: Consumer, tp: TopicPartition, timeout_s: float = 30) -> tuple[int, int]:
    """Low and high offsets, asking again while a topic just created has no leader yet."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            low, high = consumer.get_watermark_offsets(tp, timeout=10)
            return int(low), int(high)
        except KafkaException:  # e.g. NOT_LEADER_FOR_PARTITION, not flagged retriable
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _write_layout(bootstrap: str, partitions: int) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    producer.produce(META.name, json.dumps({"partitions": partitions}).encode(), LAYOUT_KEY)
    if producer.flush(30) > 0:
        raise TimeoutError(f"recording the partition layout in {META.name} timed out")
