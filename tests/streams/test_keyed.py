"""Per-key state: exact dedupe whatever the order, retention, links, state round trip."""

from __future__ import annotations

import copy
from datetime import timedelta

import msgspec
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cxpulse.schemas.deadletters import Source
from cxpulse.schemas.validate import decode_trusted
from cxpulse.streams.ingest import decode_batch, encode_batch, route
from cxpulse.streams.keyed import (
    DEFAULT_KEY_LIMITS,
    KeyLimits,
    apply,
    count_bytes,
    event_cost,
    expired_keys,
    horizon_ms,
    precedence,
)
from cxpulse.streams.keystate import KeyState
from cxpulse.streams.state_store import states_from_records
from cxpulse.streams.units import record_key
from cxpulse.streams.windows import DEFAULT_WINDOWS
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


def _round_trip(states: dict[str, KeyState]) -> dict[str, KeyState]:
    """The states as the state topic restores them."""
    records = [(record_key(key, kind, unit), value, 0) for key, state in states.items()
               for kind, unit, value in state.records()]  # fmt: skip
    return states_from_records(records)


def test_reprocessing_after_a_restore_changes_nothing() -> None:
    states: dict[str, KeyState] = {}
    apply(states, _records(EVENTS))
    restored = _round_trip(states)
    assert {k: (s.events, s.links, s.newest_ms) for k, s in restored.items()} == {
        k: (s.events, s.links, s.newest_ms) for k, s in states.items()
    }
    again = apply(restored, _records(EVENTS))
    assert (again.accepted, again.duplicates, again.changed, again.raw_rows) == (0, 12, set(), [])


def test_an_overloaded_key_dead_letters_the_excess() -> None:
    states: dict[str, KeyState] = {}
    raws = [_raw(f"x{i}", minutes_ago=i) for i in range(5)]
    outcome = apply(states, _records(raws), KeyLimits(events=3))
    assert outcome.accepted == 3
    assert [reason for reason, _ in outcome.dead_letters] == ["key_overloaded"] * 2
    assert orjson.loads(outcome.dead_letters[0][1])["reason"] == "key_overloaded"
    assert len(states["cust-1"].events) == 3


def test_a_key_past_its_byte_bound_dead_letters_the_excess() -> None:
    """The bound is on bytes, so a few large events fill a key as surely as many small ones."""
    raws = [_raw(f"x{i}", minutes_ago=i) for i in range(40)]
    one = event_cost(decode_trusted(raws[0]), "cust-1", DEFAULT_KEY_LIMITS.identities)
    limits = KeyLimits(bytes=10 * one + one // 2)
    states: dict[str, KeyState] = {}
    outcome = apply(states, _records(raws), limits)
    assert outcome.accepted == 10
    assert [reason for reason, _ in outcome.dead_letters] == ["key_overloaded"] * 30
    state = states["cust-1"]
    assert state.size_bytes == 10 * one
    # A restored state is counted afresh (the stage does it when it installs a partition).
    restored = _round_trip(states)["cust-1"]
    assert count_bytes(restored, "cust-1", DEFAULT_KEY_LIMITS.identities) == state.size_bytes
    again = apply({"cust-1": restored}, _records(raws[10:11]), limits)
    assert [reason for reason, _ in again.dead_letters] == ["key_overloaded"]


@pytest.mark.parametrize("funnels", [1, 3])
def test_a_full_journey_record_fits_kafkas_default_message_limit(funnels: int) -> None:
    """A key's state is written a unit (journey, contact, links) per record, so the unit bound
    keeps each record under Kafka's 1 MiB: the smallest events, all in one journey that is in
    every funnel, under the longest customer id, filled to the bound, while the key itself
    holds far more in journeys of their own."""
    from cxpulse.streams.stage import JourneyStage
    from tests.streams.test_stage import FUNNELS, Collector

    specs = [msgspec.structs.replace(FUNNELS[0], name=f"funnel_{i}") for i in range(funnels)]
    key = "k" * 128
    doc = {
        "event_id": "",
        "schema_version": 1,
        "type": "portal.session_started",
        "occurred_at": "",
        "customer_id": key,
        "session_id": "s",
        "data": {"entry": "e"},
    }
    raws = []
    for i in range(4000):  # 3000 in one journey (a minute apart), 1000 journeys of their own
        apart = 60_000 if i < 3000 else DEFAULT_WINDOWS.gap_ms + 1
        at = NOW - timedelta(milliseconds=(i % 3000 + 1) * apart + (i >= 3000) * 3 * 86_400_000)
        raws.append(orjson.dumps({**doc, "event_id": f"{i:x}", "occurred_at": at.isoformat()}))
    out = Collector()
    stage = JourneyStage(out, specs, restore=lambda p: {}, clock=lambda: NOW_MS)
    records = _records(raws)
    for start in range(0, len(records), 1000):
        stage.process(0, encode_batch(records[start : start + 1000]))
    stage.persist()
    state = stage.partitions[0][key]
    limit = DEFAULT_KEY_LIMITS.unit_bytes
    full = max(state.runs, key=lambda run: len(run.events))
    assert limit - 2000 < full.bytes <= limit  # full: one more event would not fit
    # Past the bound, the excess is dead-lettered until an event is more than the inactivity
    # gap away: the key goes on with journeys of their own, each within the bound.
    assert sum(len(run.events) == 1 for run in state.runs) == 1000
    assert all(run.bytes <= limit for run in state.runs)
    assert state.size_bytes > 3 * limit
    sizes = [len(value) for topic, _, value, _ in out.messages
             if topic == "cx.state.units.v2" and value]  # fmt: skip
    print(f"{funnels} funnels: {len(full.events)} events in one journey, record {max(sizes)} B")
    assert max(sizes) <= full.bytes < 1_000_000


def test_conflicting_copies_keep_one_copy_whatever_the_order() -> None:
    """Copies of one event_id with different content: the earliest, then the smaller canonical
    form is kept in any order, and each order counts one event."""
    a = _raw("dup", minutes_ago=5)
    b = orjson.dumps({**orjson.loads(a), "attrs": {"tier": "gold"}})
    c = _raw("dup", minutes_ago=6)
    results = []
    for order in ([a, b], [b, a], [a, b, a, b], [a, c, b], [b, c, a], [c, b, a]):
        states: dict[str, KeyState] = {}
        outcome = apply(states, _records(order))
        results.append(states["cust-1"].events["dup"])
        assert outcome.accepted == 1
        assert outcome.conflicts >= 1
        assert outcome.conflicts + outcome.duplicates == len(order) - 1
        state = states["cust-1"]
        assert state.size_bytes == event_cost(state.events["dup"], "cust-1", 2)
    assert results[0] == results[1] == results[2]
    assert precedence(results[0]) == min(
        precedence(decode_trusted(a)), precedence(decode_trusted(b))
    )
    assert results[3] == results[4] == results[5] == decode_trusted(c)


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
    states = {"old": KeyState(), "edge": KeyState()}
    states["old"].newest_ms = NOW_MS - 44 * 86_400_000 - 1
    states["edge"].newest_ms = NOW_MS - 44 * 86_400_000
    assert horizon_ms(NOW_MS, DEFAULT_WINDOWS) == NOW_MS - 44 * 86_400_000
    aging = [(state.newest_ms, key) for key, state in states.items()]
    assert list(expired_keys(aging, states, horizon_ms(NOW_MS, DEFAULT_WINDOWS))) == ["old"]
    assert aging == [(NOW_MS - 44 * 86_400_000, "edge")]


def test_a_conflicting_copy_that_would_overflow_a_journey_is_dead_lettered() -> None:
    """A copy that precedes the kept one is still held to the bounds: one that would bridge two
    full journeys into one over the unit bound leaves the state as it was."""
    raws = [_raw(f"a{i}", minutes_ago=200 - i) for i in range(4)]  # a journey of 4 events
    raws += [_raw(f"b{i}", minutes_ago=150 - i) for i in range(4)]  # another, 47 min later
    one = event_cost(decode_trusted(raws[0]), "cust-1", DEFAULT_KEY_LIMITS.identities)
    limits = KeyLimits(unit_bytes=5 * one)
    states: dict[str, KeyState] = {}
    apply(states, _records(raws), limits)
    state = states["cust-1"]
    assert [len(run.events) for run in state.runs] == [4, 4]
    bridge = orjson.dumps({**orjson.loads(raws[7]), "occurred_at": (
        NOW - timedelta(minutes=175)).isoformat()})  # fmt: skip
    outcome = apply(states, _records([bridge]), limits)
    assert [reason for reason, _ in outcome.dead_letters] == ["key_overloaded"]
    assert [len(run.events) for run in state.runs] == [4, 4]
    assert state.size_bytes == count_bytes(state, "cust-1", DEFAULT_KEY_LIMITS.identities)


def test_a_new_key_whose_first_event_is_refused_is_not_kept() -> None:
    states: dict[str, KeyState] = {}
    outcome = apply(states, _records([_raw("x", minutes_ago=1)]), KeyLimits(unit_bytes=16))
    assert [reason for reason, _ in outcome.dead_letters] == ["key_overloaded"]
    assert states == {}
