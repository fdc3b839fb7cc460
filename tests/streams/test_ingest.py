"""Ingest routing: validation, dead letters with the original bytes, co-partitioned batches."""

from __future__ import annotations

import base64
import copy
import hashlib
import zlib

import orjson

from cxpulse.schemas.validate import Bounds
from cxpulse.streams.ingest import (
    MAX_BATCH_EVENTS,
    Source,
    decode_batch,
    encode_batch,
    partition_for,
    route,
)
from tests.schemas.examples import EXAMPLES, NOW_MS

SRC = Source("cx.portal.v1", 2, 40)


def _event(event_type: str, **changes: object) -> bytes:
    doc = copy.deepcopy(EXAMPLES[event_type])
    doc.update(changes)
    return orjson.dumps(doc)


def test_partition_is_stable_and_in_range() -> None:
    assert partition_for("cust-1", 4) == partition_for("cust-1", 4)
    assert {partition_for(f"k{i}", 4) for i in range(100)} == {0, 1, 2, 3}
    # Pinned (CRC-32): a change would separate keys from their stored state after an upgrade.
    assert [partition_for(k, 1000) for k in ("cust-1", "s:sess-1", "")] == [
        zlib.crc32(k.encode()) % 1000 for k in ("cust-1", "s:sess-1", "")
    ]


def test_valid_events_are_batched_by_the_partition_of_their_key() -> None:
    raws = [
        _event("portal.session_started", event_id=f"e{i}", customer_id=f"c{i}") for i in range(50)
    ]
    routed = route([(raw, SRC) for raw in raws], 4, NOW_MS)
    assert routed.accepted == 50
    assert not routed.dead_letters
    seen = []
    for partition, chunks in routed.keyed.items():
        for chunk in chunks:
            for record in decode_batch(encode_batch(chunk)):
                assert partition_for(record.key, 4) == partition
                assert (record.topic, record.partition, record.offset) == ("cx.portal.v1", 2, 40)
                assert record.received_ms == NOW_MS
                seen.append(bytes(record.event))
    assert sorted(seen) == sorted(raws)


def test_batches_are_split_at_the_event_limit() -> None:
    raws = [
        (_event("portal.step_viewed", event_id=f"e{i}"), SRC)
        for i in range(2 * MAX_BATCH_EVENTS + 1)
    ]
    routed = route(raws, 1, NOW_MS)
    assert [len(chunk) for chunk in routed.keyed[0]] == [MAX_BATCH_EVENTS, MAX_BATCH_EVENTS, 1]


def test_a_contact_linked_to_an_anonymous_session_is_also_sent_to_that_session() -> None:
    doc = copy.deepcopy(EXAMPLES["cc.contact_started"])
    doc["data"]["linked_session_id"] = "anon-9"
    routed = route([(orjson.dumps(doc), SRC)], 8, NOW_MS)
    records = [r for chunks in routed.keyed.values() for chunk in chunks for r in chunk]
    assert sorted((r.key, r.link) for r in records) == [("cust-1", False), ("s:anon-9", True)]
    assert routed.accepted == 1


def test_rejects_become_dead_letters_with_the_original_bytes() -> None:
    bad = b"\x00\x01 not an event"
    routed = route([(bad, SRC)], 4, NOW_MS)
    assert routed.accepted == 0
    assert not routed.keyed
    [(reason, letter)] = routed.dead_letters
    record = orjson.loads(letter)
    assert reason == record["reason"] == "invalid_json"
    assert base64.b64decode(record["original_b64"]) == bad
    assert (record["source_topic"], record["source_partition"], record["source_offset"]) == (
        "cx.portal.v1",
        2,
        40,
    )
    assert record["received_at"] == "2026-11-23T12:00:00+00:00"


def test_dead_letters_of_oversized_messages_stay_under_the_kafka_limit() -> None:
    huge = b'{"pad": "' + b"a" * (600 * 1024) + b'"}'
    routed = route([(huge, SRC)], 4, NOW_MS)
    [(reason, letter)] = routed.dead_letters
    assert reason == "too_large"
    assert len(letter) < 1_000_000
    record = orjson.loads(letter)
    assert record["original_truncated"] is True
    assert record["original_size"] == len(huge)
    assert record["original_sha256"] == hashlib.sha256(huge).hexdigest()
    assert huge.startswith(base64.b64decode(record["original_b64"]))


def test_batches_are_split_by_size_without_empty_ones() -> None:
    big = [
        _event("portal.step_viewed", event_id=f"b{i}", attrs={"pad": "x" * (200 * 1024)})
        for i in range(3)
    ]
    # Bounds far above the defaults, to reach the batch size limit with three events.
    loose = Bounds(event_bytes=256 * 1024, attr_value_chars=256 * 1024)
    routed = route([(raw, SRC) for raw in big], 1, NOW_MS, loose)
    assert [len(chunk) for chunk in routed.keyed[0]] == [2, 1]
    assert all(len(encode_batch(chunk)) < 1_000_000 for chunk in routed.keyed[0])
