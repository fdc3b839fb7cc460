"""The contract: every event type accepted, every kind of bad input rejected with its reason."""

from __future__ import annotations

import copy
import json
from datetime import timedelta
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cxpulse.schemas.events import EVENT_TYPES, type_name
from cxpulse.schemas.validate import (
    DEFAULT_BOUNDS,
    REASONS,
    Rejection,
    event_time_ms,
    journey_key,
    validate,
)
from tests.schemas.examples import EXAMPLES, NOW, NOW_MS


def _check(doc: Any) -> Any:
    return validate(orjson.dumps(doc), NOW_MS)


def test_every_type_has_an_example() -> None:
    assert set(EXAMPLES) == {type_name(cls) for cls in EVENT_TYPES}


@pytest.mark.parametrize("event_type", sorted(EXAMPLES))
def test_valid_example_is_accepted(event_type: str) -> None:
    event = _check(EXAMPLES[event_type])
    assert not isinstance(event, Rejection), event
    assert type_name(type(event)) == event_type
    assert event.event_id == f"ev-{event_type}"
    assert event_time_ms(event) == NOW_MS - 60_000


@pytest.mark.parametrize("event_type", sorted(EXAMPLES))
def test_unknown_extra_fields_are_accepted(event_type: str) -> None:
    doc = copy.deepcopy(EXAMPLES[event_type])
    doc["future_field"] = {"nested": [1, 2]}
    doc["data"]["future_data_field"] = "x"
    assert not isinstance(_check(doc), Rejection)


def _without(doc: dict[str, Any], *path: str) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    target = doc
    for part in path[:-1]:
        target = target[part]
    del target[path[-1]]
    return doc


def _with(doc: dict[str, Any], value: Any, *path: str) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    target = doc
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return doc


P = EXAMPLES["portal.step_completed"]
C = EXAMPLES["cc.survey_submitted"]

INVALID: list[tuple[str, bytes, str]] = [
    ("truncated", b'{"event_id": "x", ', "invalid_json"),
    ("not utf-8", b"\xff\xfe\x00garbage", "invalid_utf8"),
    ("empty", b"", "invalid_json"),
    ("lone surrogate", orjson.dumps(P).replace(b'"ev-', b'"\\ud800'), "invalid_json"),
    ("array", b"[1, 2, 3]", "not_an_object"),
    ("number", b"42", "not_an_object"),
    ("no event_id", orjson.dumps(_without(P, "event_id")), "missing_field"),
    ("no type", orjson.dumps(_without(P, "type")), "missing_field"),
    ("no occurred_at", orjson.dumps(_without(P, "occurred_at")), "missing_field"),
    ("portal without session", orjson.dumps(_without(P, "session_id")), "missing_field"),
    ("cc without contact", orjson.dumps(_without(C, "contact_id")), "missing_field"),
    ("cc without customer", orjson.dumps(_with(C, None, "customer_id")), "missing_field"),
    ("no data field", orjson.dumps(_without(P, "data", "step")), "missing_field"),
    ("event_id number", orjson.dumps(_with(P, 7, "event_id")), "wrong_type"),
    ("attrs list", orjson.dumps(_with(P, ["a"], "attrs")), "wrong_type"),
    ("attr value number", orjson.dumps(_with(P, {"a": 1}, "attrs")), "wrong_type"),
    ("data null", orjson.dumps(_with(P, None, "data")), "wrong_type"),
    ("eligible string", orjson.dumps(
        _with(EXAMPLES["portal.eligibility_checked"], "yes", "data", "eligible")), "wrong_type"),
    ("type number", orjson.dumps(_with(P, 5, "type")), "wrong_type"),
    ("schema_version string", orjson.dumps(_with(P, "1", "schema_version")), "wrong_type"),
    ("outcome not allowed", orjson.dumps(_with(P, "maybe", "data", "outcome")), "invalid_value"),
    ("via fax", orjson.dumps(
        _with(EXAMPLES["portal.help_requested"], "fax", "data", "via")), "invalid_value"),
    ("csat 9", orjson.dumps(_with(C, 9, "data", "csat")), "invalid_value"),
    ("nps -1", orjson.dumps(_with(C, -1, "data", "nps")), "invalid_value"),
    ("ces 8", orjson.dumps(_with(C, 8, "data", "ces")), "invalid_value"),
    ("event_id too long", orjson.dumps(_with(P, "x" * 65, "event_id")), "invalid_value"),
    ("event_id empty", orjson.dumps(_with(P, "", "event_id")), "invalid_value"),
    ("no offset", orjson.dumps(_with(P, "2026-11-23T11:00:00", "occurred_at")), "invalid_value"),
    ("not a time", orjson.dumps(_with(P, "yesterday", "occurred_at")), "invalid_value"),
    ("unknown type", orjson.dumps(_with(P, "portal.teleported", "type")), "unknown_type"),
    ("version 2", orjson.dumps(_with(P, 2, "schema_version")), "unsupported_version"),
    ("31 days old", orjson.dumps(
        _with(P, (NOW - timedelta(days=31)).isoformat(), "occurred_at")), "too_old"),
    ("6 minutes ahead", orjson.dumps(
        _with(P, (NOW + timedelta(minutes=6)).isoformat(), "occurred_at")), "in_future"),
    ("deeply nested", b'{"x":' + b"[" * 30_000 + b"]" * 30_000 + b"}", "too_deep"),
    ("huge", b'{"pad": "' + b"a" * DEFAULT_BOUNDS.event_bytes + b'"}', "too_large"),
    ("33 attrs", orjson.dumps(_with(P, {f"a{i}": "v" for i in range(33)}, "attrs")),
     "too_large"),
    ("long attr key", orjson.dumps(_with(P, {"k" * 65: "v"}, "attrs")), "too_large"),
    ("long attr value", orjson.dumps(_with(P, {"tier": "v" * 257}, "attrs")), "too_large"),
    ("invalid UTF-8 in an unknown field",
     orjson.dumps(_with(P, "@", "note")).replace(b"@", b"\xff"), "invalid_utf8"),
    ("overlong encoding", orjson.dumps(_with(P, "@", "session_id")).replace(b"@", b"\xc0\xaf"),
     "invalid_utf8"),
    ("encoded surrogate", orjson.dumps(_with(P, "@", "session_id")).replace(b"@", b"\xed\xa0\x80"),
     "invalid_utf8"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("raw", "reason"), [case[1:] for case in INVALID], ids=[c[0] for c in INVALID]
)
def test_invalid_input_gets_its_reason(raw: bytes, reason: str) -> None:
    result = validate(raw, NOW_MS)
    assert isinstance(result, Rejection)
    assert result.reason == reason, result.detail
    assert result.detail


def test_every_reason_is_exercised() -> None:
    assert {case[2] for case in INVALID} == set(REASONS)


def test_time_bounds_are_inclusive_at_the_edges() -> None:
    at_limit_old = _with(P, (NOW - timedelta(days=30)).isoformat(), "occurred_at")
    at_limit_new = _with(P, (NOW + timedelta(minutes=5)).isoformat(), "occurred_at")
    assert not isinstance(_check(at_limit_old), Rejection)
    assert not isinstance(_check(at_limit_new), Rejection)


def test_offsets_and_milliseconds_are_exact() -> None:
    event = _check(_with(P, "2026-11-23T13:00:00.999+02:00", "occurred_at"))
    assert event_time_ms(event) == NOW_MS - 3600_000 + 999


def test_journey_key() -> None:
    assert journey_key(_check(P)) == "cust-1"
    assert journey_key(_check(_with(P, None, "customer_id"))) == "s:sess-1"


def test_a_customer_id_that_looks_like_an_internal_key_never_meets_a_session() -> None:
    """Customer "s:sess-1" is not the anonymous session sess-1, nor customer "~s:sess-1"."""
    session = journey_key(_check(_with(P, None, "customer_id")))
    lookalike = journey_key(_check(_with(P, "s:sess-1", "customer_id")))
    escaped = journey_key(_check(_with(P, "~s:sess-1", "customer_id")))
    assert len({session, lookalike, escaped}) == 3
    assert (lookalike, escaped) == ("~s:sess-1", "~~s:sess-1")
    # Ordinary ids, also with a colon, are kept as sent.
    assert journey_key(_check(_with(P, "c:123", "customer_id"))) == "c:123"


def test_attrs_at_their_bounds_are_accepted() -> None:
    b = DEFAULT_BOUNDS
    attrs = {f"{i:0{b.attr_key_chars}d}": "v" * b.attr_value_chars for i in range(b.attrs_entries)}
    assert not isinstance(_check(_with(P, attrs, "attrs")), Rejection)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=2048))
def test_any_bytes_are_accepted_or_rejected_never_raise(raw: bytes) -> None:
    result = validate(raw, NOW_MS)
    if isinstance(result, Rejection):
        assert result.reason in REASONS
    else:
        assert result.event_id


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from(sorted(EXAMPLES)),
    st.sampled_from(["event_id", "type", "occurred_at", "customer_id", "session_id",
                     "contact_id", "attrs", "data", "schema_version"]),
    JSON,
)  # fmt: skip
def test_mutated_events_are_accepted_or_rejected_never_raise(
    event_type: str, field: str, value: Any
) -> None:
    doc = _with(EXAMPLES[event_type], value, field)
    # stdlib json: it also writes integers beyond 64 bits, which producers can send.
    result = validate(json.dumps(doc).encode(), NOW_MS)
    if isinstance(result, Rejection):
        assert result.reason in REASONS


@settings(max_examples=300, deadline=None)
@given(
    st.integers(0, 86_399),
    st.text(alphabet="0123456789", min_size=0, max_size=9),
    st.sampled_from(["Z", "z", "+00:00", "+05:30", "-08:00"]),
    st.sampled_from(["T", "t", " "]),
)
def test_event_time_resolution_matches_the_ground_truth(
    second: int, fraction: str, offset: str, separator: str
) -> None:
    """Digits below the microsecond round (7th digit >= 5 up), then milliseconds truncate."""
    from cxpulse.streams.simulator.truth_events import epoch_ms

    clock = f"{second // 3600:02d}:{second // 60 % 60:02d}:{second % 60:02d}"
    text = f"2026-11-23{separator}{clock}{'.' + fraction if fraction else ''}{offset}"
    doc = _with(P, text, "occurred_at")
    event = validate(orjson.dumps(doc), NOW_MS + 2 * 86_400_000)
    assert not isinstance(event, Rejection), (text, event)
    assert event_time_ms(event) == epoch_ms(text)
