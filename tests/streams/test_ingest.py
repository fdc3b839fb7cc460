"""Envelope checks of the ingest slice: what is stored, what is dead-lettered and why."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import orjson
import pytest

from cxpulse.streams.ingest import (
    DeadLetter,
    Envelope,
    Source,
    dead_letter_record,
    parse_envelope,
    raw_event_row,
)
from cxpulse.streams.keys import journey_key

# 2026-11-23T10:00:00.250+01:00 is 09:00:00.250 UTC.
OCCURRED_MS = int(datetime(2026, 11, 23, 9, 0, 0, 250_000, tzinfo=UTC).timestamp() * 1000)
RECEIVED_MS = int(datetime(2026, 11, 23, 9, 0, 1, tzinfo=UTC).timestamp() * 1000)

GOOD = {
    "event_id": "e-1",
    "schema_version": 1,
    "type": "portal.session_started",
    "occurred_at": "2026-11-23T10:00:00.250+01:00",
    "customer_id": None,
    "session_id": "s-9",
    "attrs": {"locale": "de-DE"},
    "data": {"entry": "support_home"},
}


def test_journey_key_prefers_customer() -> None:
    assert journey_key("c-1", "s-1") == "c-1"
    assert journey_key(None, "s-1") == "s:s-1"
    assert journey_key("", "s-1") == "s:s-1"


def test_valid_event_becomes_a_row() -> None:
    raw = orjson.dumps(GOOD)
    env = parse_envelope(raw)
    assert env == Envelope(
        "e-1", "portal.session_started", OCCURRED_MS, "s:s-9", {"locale": "de-DE"}
    )
    row = raw_event_row(env, raw, Source("cx.portal.v1", 3, 42), RECEIVED_MS)
    assert row["occurred_at"] == "2026-11-23 09:00:00.250"
    assert row["payload"] == raw.decode()
    assert (row["source_topic"], row["source_partition"], row["source_offset"]) == (
        "cx.portal.v1",
        3,
        42,
    )


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xff\xfe not json", "invalid_json"),
        (b"[1, 2]", "not_an_object"),
        (orjson.dumps({**GOOD, "event_id": ""}), "invalid_field"),
        (orjson.dumps({**GOOD, "event_id": "x" * 65}), "invalid_field"),
        (orjson.dumps({**GOOD, "type": 5}), "invalid_field"),
        (orjson.dumps({**GOOD, "occurred_at": "2026-11-23T10:00:00"}), "invalid_field"),
        (orjson.dumps({**GOOD, "occurred_at": "yesterday"}), "invalid_field"),
        (orjson.dumps({**GOOD, "attrs": {"a": 1}}), "invalid_field"),
    ],
)
def test_bad_input_is_dead_lettered_with_a_reason(raw: bytes, reason: str) -> None:
    result = parse_envelope(raw)
    assert isinstance(result, DeadLetter)
    assert result.reason == reason
    record = dead_letter_record(result, raw, Source("cx.portal.v1", 0, 5), RECEIVED_MS)
    assert base64.b64decode(record["original_b64"]) == raw
    assert record["received_at"] == "2026-11-23T09:00:01+00:00"
    assert record["reason"] == reason
    assert record["detail"]
