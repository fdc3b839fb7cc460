"""Every Kafka topic cxpulse reads or writes, and their creation.

Topics are created explicitly (the local broker has auto-creation off) so partition counts are a
decision, not an accident: input, internal and store topics share `CXPULSE_TOPIC_PARTITIONS`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from confluent_kafka.admin import AdminClient, NewTopic

DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True)
class TopicSpec:
    name: str
    config: dict[str, str] = field(default_factory=dict)


PORTAL = TopicSpec("cx.portal.v1", {"retention.ms": str(7 * DAY_MS)})
CONTACT = TopicSpec("cx.contact.v1", {"retention.ms": str(7 * DAY_MS)})
# Dead letters are kept as long as events are accepted (max_event_age) so they can be replayed.
DLQ = TopicSpec("cx.dlq.v1", {"retention.ms": str(30 * DAY_MS)})
# Valid events, re-keyed by journey key and batched per partition by the ingest stage.
KEYED = TopicSpec("cx.keyed.v1", {"retention.ms": str(7 * DAY_MS)})
# Per-journey-key state of the journey stage; compacted, it is the stage's recovery log.
STATE = TopicSpec(
    "cx.state.keys.v1",
    {
        "cleanup.policy": "compact",
        "segment.ms": str(3600 * 1000),
        "min.compaction.lag.ms": "0",
        "max.message.bytes": str(16 * 1024 * 1024),
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
    ALERTS,
)  # fmt: skip


def ensure_topics(
    bootstrap: str, partitions: int, topics: tuple[TopicSpec, ...] = ALL_TOPICS
) -> list[str]:
    """Create the topics that do not exist yet; returns the names created."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    existing = set(admin.list_topics(timeout=10).topics)
    missing = [
        NewTopic(t.name, num_partitions=partitions, replication_factor=-1, config=t.config)
        for t in topics
        if t.name not in existing
    ]
    if not missing:
        return []
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
