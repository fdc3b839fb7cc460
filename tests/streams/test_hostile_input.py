"""Hostile bytes, fuzzed at the byte level, through every stage that reads a message: ingest
routing, the journey stage (keyed batches) and the store writer's row check. Every message must
end accepted or dead-lettered with a reason; nothing may raise, and nothing accepted may carry
bytes a later reader (ClickHouse, the API) cannot decode.
"""

from __future__ import annotations

import copy
from typing import Any

import msgspec
import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from cxpulse.schemas.validate import REASONS
from cxpulse.sinks.writer import _unstorable
from cxpulse.streams import topics
from cxpulse.streams.ingest import (
    UNPROCESSABLE,
    KeyedRecord,
    Source,
    decode_batch,
    encode_batch,
    route,
)
from cxpulse.streams.keyed import CORRUPT_INTERNAL
from cxpulse.streams.stage import JourneyStage
from tests.schemas.examples import EXAMPLES, NOW_MS
from tests.streams.test_stage import FUNNELS, Collector

SRC = Source("cx.portal.v1", 0, 7)
INGEST_REASONS = {*REASONS, UNPROCESSABLE}
# Byte sequences that are not UTF-8: a lone continuation byte, bytes never used, overlong forms
# of "/" and NUL, a UTF-8-encoded surrogate, a code point past U+10FFFF, truncated sequences.
NOT_UTF8 = [
    b"\x80", b"\xff", b"\xfe", b"\xc0\xaf", b"\xc1\xbf", b"\xe0\x80\xaf", b"\xf0\x80\x80\xaf",
    b"\xed\xa0\x80", b"\xed\xbf\xbf", b"\xf4\x90\x80\x80", b"\xf8\x88\x80\x80\x80", b"\xc3",
    b"\xe2\x82", b"\xf0\x9f\x98",
]  # fmt: skip
# JSON escapes of lone or reversed surrogates: valid UTF-8 text, but no character.
BAD_ESCAPES = [b"\\ud800", b"\\udfff", b"\\udc00\\ud800", b"\\ud800x", b"\\ud83d"]
# Where a string can sit in an event: known fields, attrs keys and values, data, unknown fields.
PLACES = [
    ("event_id",), ("customer_id",), ("session_id",), ("attrs", "tier"), ("attrs", "@key"),
    ("data", "step"), ("data", "unknown_extra"), ("unknown_top",),
]  # fmt: skip


def _event_with_marker(place: tuple[str, ...]) -> bytes:
    """A valid step_viewed event whose string at `place` holds the marker "@@" to replace."""
    doc: dict[str, Any] = copy.deepcopy(EXAMPLES["portal.step_viewed"])
    if place == ("attrs", "@key"):
        doc["attrs"]["a@@b"] = "v"
    elif len(place) == 1:
        doc[place[0]] = "a@@b"
    else:
        doc[place[0]][place[1]] = "a@@b"
    return orjson.dumps(doc)


def _run_stage(records: list[KeyedRecord]) -> Collector:
    """The records through the journey stage as one keyed batch of partition 0."""
    out = Collector()
    stage = JourneyStage(out, FUNNELS, restore=lambda p: {}, clock=lambda: NOW_MS)
    stage.process(0, encode_batch(records))
    stage.tick()
    stage.persist()
    return out


def _assert_output_is_storable(out: Collector) -> None:
    """Every row the stage sends is one UTF-8 JSON object the writer takes as it is."""
    for topic, _key, value, _partition in out.messages:
        if topic in topics.STORE_TABLES:
            assert _unstorable(orjson.dumps(value)) is None, value


def _route_all(raws: list[bytes]) -> tuple[Any, list[KeyedRecord]]:
    routed = route([(raw, SRC) for raw in raws], 1, NOW_MS)
    assert routed.accepted + len(routed.dead_letters) == len(raws)
    for reason, letter in routed.dead_letters:
        assert reason in INGEST_REASONS
        assert orjson.loads(letter)["reason"] == reason
    records = [r for chunk in routed.keyed.get(0, []) for r in decode_batch(encode_batch(chunk))]
    return routed, records


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=600), min_size=1, max_size=8))
def test_arbitrary_bytes_are_routed_or_dead_lettered(raws: list[bytes]) -> None:
    _routed, records = _route_all(raws)
    _assert_output_is_storable(_run_stage(records))


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(PLACES),
    st.sampled_from(NOT_UTF8 + BAD_ESCAPES) | st.binary(min_size=1, max_size=4),
)
def test_bad_bytes_inside_any_string_are_dead_lettered_or_harmless(
    place: tuple[str, ...], bad: bytes
) -> None:
    """Invalid UTF-8 anywhere is `invalid_utf8`; a bad escape in a field cxpulse reads is
    `invalid_json`; whatever is accepted goes through the stage into storable rows."""
    raw = _event_with_marker(place).replace(b"@@", bad)
    routed, records = _route_all([raw])
    if bad in NOT_UTF8:
        assert [reason for reason, _ in routed.dead_letters] == ["invalid_utf8"]
    _assert_output_is_storable(_run_stage(records))


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(EXAMPLES)), st.data())
def test_one_byte_flipped_or_inserted_anywhere(event_type: str, data: st.DataObject) -> None:
    raw = bytearray(orjson.dumps(EXAMPLES[event_type]))
    at = data.draw(st.integers(0, len(raw) - 1))
    byte = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        raw[at] = byte
    else:
        raw.insert(at, byte)
    _routed, records = _route_all([bytes(raw)])
    _assert_output_is_storable(_run_stage(records))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_arbitrary_keyed_batches_are_dead_lettered_as_corrupt(value: bytes) -> None:
    out = Collector()
    stage = JourneyStage(out, FUNNELS, restore=lambda p: {}, clock=lambda: NOW_MS)
    stage.process(0, value, offset=3)
    stage.tick()
    letters = [orjson.loads(v) for t, _, v, _ in out.messages if t == topics.DLQ.name]
    try:
        records = decode_batch(value)
    except Exception:
        assert [letter["reason"] for letter in letters] == [CORRUPT_INTERNAL]
        return
    # Valid framing: each record is accepted or dead-lettered on its own.
    assert len(letters) <= len(records)
    _assert_output_is_storable(out)


def test_keyed_records_with_invalid_utf8_are_dead_lettered_one_by_one() -> None:
    """A keyed batch cxpulse did not write: invalid UTF-8 in a key or an event dead-letters
    that record (or the batch, when its framing cannot be read), never stops the stage."""
    good = orjson.dumps(EXAMPLES["portal.step_viewed"])
    bad_event = good.replace(b"diagnose", b"diag\xffnose")
    batch = msgspec.json.encode([
        KeyedRecord("cust-1", msgspec.Raw(good), "cx.portal.v1", 0, 1, NOW_MS),
        KeyedRecord("cust-1", msgspec.Raw(bad_event), "cx.portal.v1", 0, 2, NOW_MS),
    ])  # fmt: skip
    out = Collector()
    stage = JourneyStage(out, FUNNELS, restore=lambda p: {}, clock=lambda: NOW_MS)
    stage.process(0, batch, offset=1)
    letters = [orjson.loads(v) for t, _, v, _ in out.messages if t == topics.DLQ.name]
    assert [(d["reason"], d["source_offset"]) for d in letters] == [(CORRUPT_INTERNAL, 2)]
    assert sum(1 for t, *_ in out.messages if t == topics.STORE_EVENTS_RAW.name) == 1
    # Invalid UTF-8 in the framing (a record's key): the whole message is dead-lettered.
    stage.process(0, batch.replace(b'"cust-1"', b'"cust\xff1"', 1), offset=2)
    letters = [orjson.loads(v) for t, _, v, _ in out.messages if t == topics.DLQ.name]
    assert [d["reason"] for d in letters] == [CORRUPT_INTERNAL, CORRUPT_INTERNAL]
    _assert_output_is_storable(out)


def test_the_writer_refuses_rows_a_reader_could_not_decode() -> None:
    ok = b'{"a":"b"}'
    assert _unstorable(ok) is None
    assert "UTF-8" in (_unstorable(b'{"a":"\xff"}') or "")
    assert "UTF-8" in (_unstorable(b'{"a":"\xed\xa0\x80"}') or "")
    assert "one JSON object" in (_unstorable(b'{"a":1}\n{"a":2}') or "")
    assert "one JSON object" in (_unstorable(b"[1]") or "")
