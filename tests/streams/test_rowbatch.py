"""The row batcher: store rows held until `flush`, then sent as few JSONEachRow messages."""

from __future__ import annotations

import itertools
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from cxpulse.streams import topics
from cxpulse.streams.rowbatch import MAX_MESSAGE_BYTES, RowBatcher

JOURNEYS = topics.STORE_JOURNEYS.name
RAW = topics.STORE_EVENTS_RAW.name


class Collector:
    def __init__(self) -> None:
        self.messages: list[tuple[str, Any, Any, int | None]] = []

    def send(self, topic: str, key: Any, value: Any, partition: int | None = None) -> None:
        self.messages.append((topic, key, value, partition))


def test_rows_wait_for_flush_and_leave_one_message_per_topic_in_order() -> None:
    out = Collector()
    batcher = RowBatcher(out)
    rows = [{"journey_id": f"j{i}", "version": i, "name": "é"} for i in range(5)]
    for i, row in enumerate(rows):
        batcher.send(JOURNEYS, f"key{i}", row)
        batcher.send(RAW, "k", {"event_id": f"e{i}"}, 7)
    assert out.messages == []
    assert batcher.pending() == 10

    assert batcher.flush(3) == 2
    assert sorted(out.messages) == [
        (RAW, None, b"\n".join(orjson.dumps({"event_id": f"e{i}"}) for i in range(5)), 3),
        (JOURNEYS, None, b"\n".join(orjson.dumps(row) for row in rows), 3),
    ]
    assert batcher.pending() == 0


def test_other_topics_and_tombstones_pass_straight_through() -> None:
    out = Collector()
    batcher = RowBatcher(out)
    batcher.send(topics.STATE.name, "key", b"state", 2)
    batcher.send(JOURNEYS, "key", {"journey_id": "j"})
    batcher.send(topics.DLQ.name, None, b"letter")
    batcher.send(JOURNEYS, "gone", None)
    assert out.messages == [
        (topics.STATE.name, "key", b"state", 2),
        (topics.DLQ.name, None, b"letter", None),
        (JOURNEYS, "gone", None, None),
    ]
    assert batcher.pending() == 1


def test_bytes_are_taken_as_encoded_and_dicts_encoded_once() -> None:
    out = Collector()
    batcher = RowBatcher(out)
    batcher.send(RAW, "k", b'{"event_id":"already"}')
    batcher.send(RAW, "k", {"event_id": "dict", "n": 1})
    batcher.flush(0)
    assert out.messages == [(RAW, None, b'{"event_id":"already"}\n{"event_id":"dict","n":1}', 0)]


def test_an_empty_flush_sends_nothing() -> None:
    out = Collector()
    batcher = RowBatcher(out)
    assert batcher.flush(0) == 0
    batcher.send(RAW, "k", {"event_id": "e"})
    assert batcher.flush(0) == 1
    assert batcher.flush(0) == 0
    assert len(out.messages) == 1


def test_clear_forgets_the_rows() -> None:
    out = Collector()
    batcher = RowBatcher(out)
    batcher.send(RAW, "k", {"event_id": "e"})
    batcher.clear()
    assert batcher.flush(0) == 0
    assert out.messages == []


def test_a_row_over_the_cap_goes_alone() -> None:
    out = Collector()
    batcher = RowBatcher(out, max_bytes=100)
    small = b'{"a":"' + b"x" * 40 + b'"}'  # 48 bytes: two fit in 100 with the newline
    huge = b'{"a":"' + b"y" * 200 + b'"}'
    for row in (small, small, small, huge, small):
        batcher.send(RAW, "k", row)
    assert batcher.flush(None) == 4
    assert [m[2] for m in out.messages] == [small + b"\n" + small, small, huge, small]
    assert all(m[3] is None and m[1] is None for m in out.messages)


def test_the_default_cap_is_well_under_kafkas_one_mib() -> None:
    assert MAX_MESSAGE_BYTES <= 512 * 1024


ROWS = st.lists(
    st.tuples(
        st.sampled_from([RAW, JOURNEYS, topics.STORE_CONTACTS.name]),
        st.integers(min_value=0, max_value=120).map(lambda n: b"{" + b"r" * n + b"}"),
    ),
    max_size=200,
)


@settings(max_examples=200, deadline=None)
@given(rows=ROWS, cap=st.integers(min_value=2, max_value=400))
def test_messages_hold_every_row_in_order_under_the_cap(
    rows: list[tuple[str, bytes]], cap: int
) -> None:
    out = Collector()
    batcher = RowBatcher(out, max_bytes=cap)
    for topic, row in rows:
        batcher.send(topic, "key", row)
    sent = batcher.flush(5)
    assert sent == len(out.messages)
    for topic in {t for t, _ in rows}:
        values = [m[2] for m in out.messages if m[0] == topic]
        lines = [line for value in values for line in value.split(b"\n")]
        assert lines == [row for t, row in rows if t == topic]
        # Within the cap unless a row alone exceeds it, and no smaller than needed: the next
        # message's first row would not have fitted.
        assert all(len(value) <= cap or b"\n" not in value for value in values)
        for value, following in itertools.pairwise(values):
            assert len(value) + 1 + len(following.split(b"\n")[0]) > cap
    assert all(m[1] is None and m[3] == 5 for m in out.messages)
