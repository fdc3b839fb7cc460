"""Ingest: raw Kafka message -> stored raw-event row, or a dead letter with its reason.

Pure functions, so every accept/reject rule is tested without a broker. This first slice checks
the envelope fields the store needs; the full event contract (schemas/) replaces `parse_envelope`.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from cxpulse.sinks.store import ch_time
from cxpulse.streams.keys import journey_key


@dataclass(frozen=True)
class Source:
    """Where a message came from, carried into rows and dead letters for traceability."""

    topic: str
    partition: int
    offset: int


@dataclass(frozen=True)
class DeadLetter:
    reason: str  # machine-readable code
    detail: str  # for the person fixing the producer


@dataclass(frozen=True)
class Envelope:
    event_id: str
    type: str
    occurred_at_ms: int
    journey_key: str
    attrs: dict[str, str]


def _epoch_ms(text: str) -> int:
    stamp = datetime.fromisoformat(text)
    if stamp.tzinfo is None:
        raise ValueError("no UTC offset")
    return int(stamp.timestamp() * 1000)


def parse_envelope(raw: bytes) -> Envelope | DeadLetter:
    try:
        doc: Any = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return DeadLetter("invalid_json", str(exc))
    if not isinstance(doc, dict):
        return DeadLetter("not_an_object", f"expected a JSON object, got {type(doc).__name__}")
    event_id, event_type, occurred = doc.get("event_id"), doc.get("type"), doc.get("occurred_at")
    if not isinstance(event_id, str) or not 1 <= len(event_id) <= 64:
        return DeadLetter("invalid_field", "event_id must be a string of 1-64 characters")
    if not isinstance(event_type, str) or not event_type:
        return DeadLetter("invalid_field", "type must be a non-empty string")
    try:
        occurred_ms = _epoch_ms(occurred) if isinstance(occurred, str) else None
    except ValueError:
        occurred_ms = None
    if occurred_ms is None:
        return DeadLetter("invalid_field", "occurred_at must be RFC 3339 with a UTC offset")
    attrs = doc.get("attrs") or {}
    if not isinstance(attrs, dict) or not all(isinstance(v, str) for v in attrs.values()):
        return DeadLetter("invalid_field", "attrs must be an object of strings")
    key = journey_key(doc.get("customer_id"), doc.get("session_id"))
    return Envelope(event_id, event_type, occurred_ms, key, attrs)


def raw_event_row(env: Envelope, raw: bytes, source: Source, received_ms: int) -> dict[str, Any]:
    return {
        "event_id": env.event_id,
        "type": env.type,
        "occurred_at": ch_time(env.occurred_at_ms),
        "journey_key": env.journey_key,
        "attrs": env.attrs,
        "payload": raw.decode(),
        "source_topic": source.topic,
        "source_partition": source.partition,
        "source_offset": source.offset,
        "received_at": ch_time(received_ms),
    }


def dead_letter_record(
    letter: DeadLetter, raw: bytes, source: Source, received_ms: int
) -> dict[str, Any]:
    """The DLQ message: reason, detail, the original bytes (base64) and where they came from."""
    return {
        "reason": letter.reason,
        "detail": letter.detail,
        "source_topic": source.topic,
        "source_partition": source.partition,
        "source_offset": source.offset,
        "received_at": datetime.fromtimestamp(received_ms / 1000, UTC).isoformat(),
        "original_b64": base64.b64encode(raw).decode(),
    }
