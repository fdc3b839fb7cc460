"""Restoring state from the compacted topic: a record cxpulse did not write never stops it."""

from __future__ import annotations

from cxpulse.streams import metrics
from cxpulse.streams.state_store import states_from_records
from cxpulse.streams.units import CONTACT, UnitRecord, record_key


def test_unreadable_records_are_skipped_and_counted() -> None:
    good = UnitRecord([], {}, 5)
    value = b'{"events":[],"emitted":{},"version":5}'
    a, b, c = (record_key(key, CONTACT, "k1") for key in "abc")
    before = metrics.STATE_RECORDS_UNREADABLE._value.get()
    records = [
        (a, value), (None, value), (b"\xff", value), (b, b"not a state"), (b"b", value),
        (c, value), (c, None), (b"", value), (a, b'{"events": 5}'), (b, value),
    ]  # fmt: skip
    states = states_from_records([(k, v, offset) for offset, (k, v) in enumerate(records)])
    assert sorted(states) == ["b"]  # a's last record is unreadable, c's deleted
    assert states["b"].last_version == good.version
    assert metrics.STATE_RECORDS_UNREADABLE._value.get() - before == 5
