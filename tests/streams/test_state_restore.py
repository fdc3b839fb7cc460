"""Restoring state from the compacted topic: a record cxpulse did not write never stops it."""

from __future__ import annotations

from cxpulse.streams import metrics
from cxpulse.streams.keyed import KeyState, encode_state
from cxpulse.streams.state_store import _apply_record


def test_unreadable_records_are_skipped_and_counted() -> None:
    good = encode_state(KeyState(newest_ms=5))
    states: dict[str, KeyState] = {}
    before = metrics.STATE_RECORDS_UNREADABLE._value.get()
    for offset, (key, value) in enumerate([
        (b"a", good), (None, good), (b"\xff", good), (b"b", b"not a state"), (b"b", good),
        (b"c", good), (b"c", None), (b"", good), (b"a", b'{"events": 5}'),
    ]):  # fmt: skip
        _apply_record(states, key, value, offset)
    assert states == {"a": KeyState(newest_ms=5), "b": KeyState(newest_ms=5)}
    assert metrics.STATE_RECORDS_UNREADABLE._value.get() - before == 5
