"""Per-journey-key state: the key's distinct events, deduplicated by event_id.

Every copy of an event reaches the same key (copies share their journey key), so checking the
key's own events is an exact duplicate test: no false positives, no window to size. The state
survives restarts because each changed key's state is written to a compacted topic before the
input is acknowledged (`state_store.py`), so reprocessing after a crash finds the events already
present and changes nothing.

Retention: a key keeps every event that a future valid event could still interact with. A new
event is at most MAX_EVENT_AGE_MS [30 d] old (ingest rejects older ones) and looks back at most
RETENTION_MS [7 d] (the FCR window, the longest), so events older than now - 37 d can go: the
journey stage prunes old journeys whole (`stage.py`), and a key with nothing newer is forgotten.
This keeps results independent of arrival order (docs/decisions.md). A key that accumulates more
than MAX_EVENTS_PER_KEY events (a producer sending one id for everyone) dead-letters the excess
as `key_overloaded` instead of growing without bound.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import msgspec

from cxpulse.schemas.events import Event
from cxpulse.schemas.validate import MAX_EVENT_AGE_MS, Rejection, decode_trusted, event_time_ms
from cxpulse.sinks.store import ch_time
from cxpulse.streams.ingest import KeyedRecord, Source, dead_letter
from cxpulse.streams.snapshots import Emitted

RETENTION_MS = 7 * 24 * 3600 * 1000
MAX_EVENTS_PER_KEY = 20_000
#: Dead-letter reason of a message on an internal topic that cxpulse did not write: it cannot be
#: processed, and stopping on it would stall its partition for good.
CORRUPT_INTERNAL = "corrupt_internal"
KEYED_RETENTION_MS = 7 * 24 * 3600 * 1000  # retention of cx.keyed.v1 (streams/topics.py)


class KeyState(msgspec.Struct, gc=False):
    """What the stage remembers about one journey key (also its wire format in the state topic)."""

    events: dict[str, Event] = {}
    # Copies of contacts that name one of this key's anonymous sessions (not this key's events).
    links: dict[str, Event] = {}
    newest_ms: int = 0
    # Snapshot rows last sent per identity, the last version used, and when an open journey
    # of this key closes next (0: none open).
    emitted: dict[str, Emitted] = {}
    last_version: int = 0
    next_due_ms: int = 0


_STATE_ENCODER = msgspec.json.Encoder()
_STATE_DECODER = msgspec.json.Decoder(KeyState)


def encode_state(state: KeyState) -> bytes:
    return _STATE_ENCODER.encode(state)


def decode_state(value: bytes) -> KeyState:
    return _STATE_DECODER.decode(value)


@dataclass
class Outcome:
    """What applying a batch produced: rows to store, keys whose state changed, counts."""

    raw_rows: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    changed: set[str] = field(default_factory=set)
    dead_letters: list[tuple[str, bytes]] = field(default_factory=list)
    accepted: int = 0
    duplicates: int = 0


def raw_event_row(key: str, event: Event, record: KeyedRecord) -> dict[str, Any]:
    """The `events_raw` row of an accepted event: its original bytes and where it came from."""
    return {
        "event_id": event.event_id,
        "type": type(event).__struct_config__.tag,
        "occurred_at": ch_time(event_time_ms(event)),
        "journey_key": key,
        "attrs": event.attrs,
        "payload": bytes(record.event).decode(),
        "source_topic": record.topic,
        "source_partition": record.partition,
        "source_offset": record.offset,
        "received_at": ch_time(record.received_ms),
    }


def apply(
    states: dict[str, KeyState],
    records: Iterable[KeyedRecord],
    max_events: int = MAX_EVENTS_PER_KEY,
) -> Outcome:
    """Add a batch of keyed records to the states of their keys."""
    out = Outcome()
    for record in records:
        try:
            event = decode_trusted(bytes(record.event))
        except msgspec.DecodeError as exc:  # written to the internal topic by someone else
            source = Source(record.topic, record.partition, record.offset)
            rejection = Rejection(CORRUPT_INTERNAL, f"keyed record: {exc}")
            letter = dead_letter(rejection, bytes(record.event), source, record.received_ms)
            out.dead_letters.append((rejection.reason, letter))
            continue
        state = states.get(record.key)
        if state is None:
            state = states[record.key] = KeyState(events={}, links={}, emitted={})
        occurred_ms = event_time_ms(event)
        target = state.links if record.link else state.events
        if event.event_id in target:
            if not record.link:
                out.duplicates += 1
            continue
        if len(target) >= max_events:
            if not record.link:
                rejection = Rejection(
                    "key_overloaded",
                    f"journey key {record.key!r} already holds {max_events} events; is a "
                    "producer sending one customer or session id for many people?",
                )
                source = Source(record.topic, record.partition, record.offset)
                out.dead_letters.append(
                    (rejection.reason, dead_letter(rejection, bytes(record.event), source,
                                                   record.received_ms))
                )  # fmt: skip
            continue
        target[event.event_id] = event
        if not record.link:
            out.accepted += 1
            out.raw_rows.append((record.key, raw_event_row(record.key, event, record)))
        state.newest_ms = max(state.newest_ms, occurred_ms)
        out.changed.add(record.key)
    return out


def horizon_ms(now_ms: int) -> int:
    """Events before this can no longer interact with any event that may still be accepted:
    an event is at most 30 d old at ingest, may wait in the keyed topic up to its retention
    (7 d) before this stage sees it, and looks back at most 7 d."""
    return now_ms - MAX_EVENT_AGE_MS - KEYED_RETENTION_MS - RETENTION_MS


def expired_keys(states: dict[str, KeyState], now_ms: int) -> Iterator[str]:
    """Keys no valid future event can reach."""
    horizon = horizon_ms(now_ms)
    return (key for key, state in states.items() if state.newest_ms < horizon)
