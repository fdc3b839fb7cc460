"""Per-key state: exact dedupe whatever the order, retention, links, state round trip."""

from __future__ import annotations

import copy
from datetime import timedelta

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from cxpulse.streams.ingest import Source, decode_batch, encode_batch, route
from cxpulse.streams.keyed import (
    KeyState,
    apply,
    decode_state,
    encode_state,
    expired_keys,
    horizon_ms,
)
from tests.schemas.examples import EXAMPLES, NOW, NOW_MS

SRC = Source("cx.portal.v1", 0, 1)


def _raw(event_id: str, minutes_ago: float, key: str = "cust-1") -> bytes:
    doc = copy.deepcopy(EXAMPLES["portal.step_viewed"])
    doc.update(
        event_id=event_id,
        customer_id=key,
        occurred_at=(NOW - timedelta(minutes=minutes_ago)).isoformat(),
    )
    return orjson.dumps(doc)


def _records(raws: list[bytes]) -> list:
    routed = route([(raw, SRC) for raw in raws], 1, NOW_MS)
    return [r for chunk in routed.keyed.get(0, []) for r in decode_batch(encode_batch(chunk))]


# Spread over 11 days: beyond the 7-day windows, arrival order must still not matter.
EVENTS = [_raw(f"e{i}", minutes_ago=i * 1500, key=f"cust-{i % 3}") for i in range(12)]


@settings(max_examples=200, deadline=None)
@given(st.permutations(EVENTS + EVENTS[:5] + EVENTS[3:4]), st.integers(1, 6))
def test_any_order_with_duplicates_gives_the_same_state(order: list[bytes], batch: int) -> None:
    states: dict[str, KeyState] = {}
    accepted = duplicates = 0
    records = _records(order)
    for start in range(0, len(records), batch):
        outcome = apply(states, records[start : start + batch])
        accepted += outcome.accepted
        duplicates += outcome.duplicates
        assert outcome.changed == {key for key, _ in outcome.raw_rows}
    assert accepted == 12
    assert duplicates == 6
    expected: dict[str, KeyState] = {}
    apply(expected, _records(EVENTS))
    assert {k: sorted(s.events) for k, s in states.items()} == {
        k: sorted(s.events) for k, s in expected.items()
    }
    assert {k: s.newest_ms for k, s in states.items()} == {
        k: s.newest_ms for k, s in expected.items()
    }


def test_reprocessing_after_a_restore_changes_nothing() -> None:
    states: dict[str, KeyState] = {}
    apply(states, _records(EVENTS))
    restored = {key: decode_state(encode_state(state)) for key, state in states.items()}
    assert restored == states
    again = apply(restored, _records(EVENTS))
    assert (again.accepted, again.duplicates, again.changed, again.raw_rows) == (0, 12, set(), [])


def test_an_overloaded_key_dead_letters_the_excess() -> None:
    states: dict[str, KeyState] = {}
    raws = [_raw(f"x{i}", minutes_ago=i) for i in range(5)]
    outcome = apply(states, _records(raws), max_events=3)
    assert outcome.accepted == 3
    assert [reason for reason, _ in outcome.dead_letters] == ["key_overloaded"] * 2
    assert orjson.loads(outcome.dead_letters[0][1])["reason"] == "key_overloaded"
    assert len(states["cust-1"].events) == 3


def test_link_copies_are_kept_apart_and_not_counted() -> None:
    doc = copy.deepcopy(EXAMPLES["cc.contact_started"])
    doc["data"]["linked_session_id"] = "anon-1"
    raw = orjson.dumps(doc)
    states: dict[str, KeyState] = {}
    outcome = apply(states, _records([raw, raw]))
    assert (outcome.accepted, outcome.duplicates) == (1, 1)
    assert list(states["s:anon-1"].links) == ["ev-cc.contact_started"]
    assert not states["s:anon-1"].events
    assert [key for key, _ in outcome.raw_rows] == ["cust-1"]


def test_keys_expire_only_when_no_valid_event_can_reach_them() -> None:
    states = {"old": KeyState(newest_ms=NOW_MS - 44 * 86_400_000 - 1),
              "edge": KeyState(newest_ms=NOW_MS - 44 * 86_400_000)}  # fmt: skip
    assert horizon_ms(NOW_MS) == NOW_MS - 44 * 86_400_000
    assert list(expired_keys(states, NOW_MS)) == ["old"]
