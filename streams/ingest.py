"""Ingest: raw input messages -> keyed batches for the journey stage, or dead letters.

Pure functions, so every accept/reject/route rule is tested without a broker. The stage that runs
them (`ingest_stage.py`) consumes many messages per poll and writes one message per target
partition, so the faust agent downstream pays its per-message cost once per batch, not per event
(design section 11).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import msgspec

from cxpulse.schemas.deadletters import Source, dead_letter
from cxpulse.schemas.events import ContactStarted, Event
from cxpulse.schemas.validate import DEFAULT_BOUNDS, Bounds, Rejection, journey_key, validate

# A keyed batch message stays well under Kafka's default 1 MB message limit.
MAX_BATCH_EVENTS = 1000
MAX_BATCH_BYTES = 512 * 1024
#: Dead-letter reason of an input message whose processing failed in a way no known input causes.
UNPROCESSABLE = "unprocessable"


class KeyedRecord(msgspec.Struct, frozen=True, array_like=True):
    """One event on its way to the journey stage (compact array encoding on the wire).

    `link` marks the copy of a `cc.contact_started` routed to the anonymous session it names, so
    that journey can see its escalation; only the primary copy counts as an event.
    """

    key: str
    event: msgspec.Raw
    topic: str
    partition: int
    offset: int
    received_ms: int
    link: bool = False


KEYED_BATCH_DECODER = msgspec.json.Decoder(list[KeyedRecord])


def partition_for(key: str, partitions: int) -> int:
    """Stable across processes and restarts (unlike hash()), so a key always meets its state."""
    return zlib.crc32(key.encode()) % partitions


@dataclass
class RoutedBatch:
    """The result of ingesting one poll's messages."""

    keyed: dict[int, list[list[KeyedRecord]]] = field(default_factory=dict)
    dead_letters: list[tuple[str, bytes]] = field(default_factory=list)  # (reason, message)
    accepted: int = 0


def route(
    messages: Iterable[tuple[bytes, Source]],
    partitions: int,
    received_ms: int,
    bounds: Bounds = DEFAULT_BOUNDS,
) -> RoutedBatch:
    """Validate each message and group valid events into per-partition batches.

    Every message ends accepted or dead-lettered: an unexpected failure on one message (no
    known input causes one; a test feeds arbitrary bytes) dead-letters it as `unprocessable`
    rather than stopping the stage, which would re-read the same poll and stop again.
    """
    result = RoutedBatch()
    sizes: dict[int, int] = {}
    for raw, source in messages:
        try:
            outcome = validate(raw, received_ms, bounds)
            if not isinstance(outcome, Rejection):
                targets = _targets(outcome)
        except Exception as exc:
            outcome = Rejection(UNPROCESSABLE, f"{type(exc).__name__}: {exc}")
        if isinstance(outcome, Rejection):
            result.dead_letters.append(
                (outcome.reason, dead_letter(outcome, raw, source, received_ms))
            )
            continue
        result.accepted += 1
        for target_key, link in targets:
            p = partition_for(target_key, partitions)
            record = KeyedRecord(
                target_key,
                msgspec.Raw(raw),
                source.topic,
                source.partition,
                source.offset,
                received_ms,
                link,
            )
            batches = result.keyed.setdefault(p, [[]])
            cost = len(raw) + len(target_key) + 64
            size = sizes.get(p, 0) + cost
            full = len(batches[-1]) >= MAX_BATCH_EVENTS or size > MAX_BATCH_BYTES
            if full and batches[-1]:
                batches.append([])
                size = cost
            sizes[p] = size
            batches[-1].append(record)
    return result


def _targets(event: Event) -> list[tuple[str, bool]]:
    """The keys an event goes to, and whether as a link: a contact also reaches the anonymous
    session it names, so that journey sees its escalation."""
    key = journey_key(event)
    targets = [(key, False)]
    if isinstance(event, ContactStarted) and event.data.linked_session_id:
        linked = f"s:{event.data.linked_session_id}"
        if linked != key:
            targets.append((linked, True))
    return targets


def encode_batch(records: Sequence[KeyedRecord]) -> bytes:
    return msgspec.json.encode(records)


def decode_batch(value: bytes) -> list[KeyedRecord]:
    return KEYED_BATCH_DECODER.decode(value)
