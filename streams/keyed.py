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
This keeps results independent of arrival order (docs/decisions.md). A key that would hold more
than its limits (`KeyLimits`: events, and bytes so its state fits a Kafka message; a producer
sending one id for everyone) dead-letters the excess as `key_overloaded` instead of growing
without bound. Copies of an event_id with different content keep one copy by an order-free rule
(`precedence`) and are counted as conflicts.
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
    # What this state may encode to at most (`event_cost` of its events and links), for the
    # per-key bound; -1: not counted yet (a state written before the bound existed).
    size_bytes: int = -1


_STATE_ENCODER = msgspec.json.Encoder()
_STATE_DECODER = msgspec.json.Decoder(KeyState)


def encode_state(state: KeyState) -> bytes:
    return _STATE_ENCODER.encode(state)


def decode_state(value: bytes) -> KeyState:
    return _STATE_DECODER.decode(value)


#: What one row identity adds to a key's state besides the key itself (`emitted`: the identity,
#: table, fingerprint, journey or contact id, start time and funnel name, JSON included).
IDENTITY_BYTES = 256


def event_bytes(event: Event) -> int:
    """An event's share of its key's state: its encoding there, plus its id as the dict key."""
    return len(_STATE_ENCODER.encode(event)) + len(event.event_id) + 4


def event_cost(event: Event, key: str, identities: int) -> int:
    """What an event may add to its key's state message at most: itself, and the fingerprints
    of the rows it may start (a journey of its own with a row per funnel, or a contact), each
    of which repeats the key."""
    return event_bytes(event) + identities * (len(key.encode()) + IDENTITY_BYTES)


def count_bytes(state: KeyState, key: str, identities: int) -> int:
    """Recount (after pruning, or for a state written before the bound existed)."""
    held = (*state.events.values(), *state.links.values())
    state.size_bytes = sum(event_cost(e, key, identities) for e in held)
    return state.size_bytes


def precedence(event: Event) -> tuple[int, bytes]:
    """Which of two copies of an event_id is kept: the earlier event time, then the smaller
    canonical form (decoded fields in contract order, unknown fields dropped, so copies that
    differ only in spacing, key order or unknown fields are equal: plain duplicates)."""
    return event_time_ms(event), _STATE_ENCODER.encode(event)


@dataclass(frozen=True, slots=True)
class KeyLimits:
    """What one journey key may hold (settings `CXPULSE_MAX_KEY_*`). The byte bound is on the
    key's state message as `event_cost` counts it (events, and the row fingerprints they may
    add), so it stays under Kafka's default 1 MiB message limit whatever the events are like;
    every snapshot row is derived from the key's events and is bounded by it too."""

    events: int = MAX_EVENTS_PER_KEY
    bytes: int = 512 * 1024
    #: Row identities one event may start: its journey's row and one per funnel (JourneyStage
    #: sets it from the funnels it computes).
    identities: int = 2


DEFAULT_KEY_LIMITS = KeyLimits()


@dataclass
class Outcome:
    """What applying a batch produced: rows to store, keys whose state changed, counts."""

    raw_rows: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    changed: set[str] = field(default_factory=set)
    dead_letters: list[tuple[str, bytes]] = field(default_factory=list)
    accepted: int = 0
    duplicates: int = 0
    conflicts: int = 0


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


def _reject(out: Outcome, record: KeyedRecord, reason: str, detail: str) -> None:
    source = Source(record.topic, record.partition, record.offset)
    letter = dead_letter(Rejection(reason, detail), bytes(record.event), source,
                         record.received_ms)  # fmt: skip
    out.dead_letters.append((reason, letter))


def apply(
    states: dict[str, KeyState],
    records: Iterable[KeyedRecord],
    limits: KeyLimits = DEFAULT_KEY_LIMITS,
) -> Outcome:
    """Add a batch of keyed records to the states of their keys.

    Every record ends accepted, dropped as a copy, or dead-lettered with a reason: a record
    that fails in any way (it can only be one cxpulse did not write) is dead-lettered as
    `corrupt_internal` instead of stopping the partition.
    """
    out = Outcome()
    for record in records:
        try:
            _apply_one(states, record, limits, out)
        except Exception as exc:  # one bad record must not stop the partition
            _reject(out, record, CORRUPT_INTERNAL, f"keyed record: {type(exc).__name__}: {exc}")
    return out


def _apply_one(
    states: dict[str, KeyState], record: KeyedRecord, limits: KeyLimits, out: Outcome
) -> None:
    event = decode_trusted(bytes(record.event))
    occurred_ms = event_time_ms(event)
    state = states.get(record.key)
    if state is None:
        state = states[record.key] = KeyState(events={}, links={}, emitted={}, size_bytes=0)
    elif state.size_bytes < 0:
        count_bytes(state, record.key, limits.identities)
    target = state.links if record.link else state.events
    size = event_cost(event, record.key, limits.identities)
    kept = target.get(event.event_id)
    if kept is not None:
        # A copy. Copies that differ (a producer reusing an id) keep the one that precedes,
        # whatever the order they arrive in.
        new, old = precedence(event), precedence(kept)
        if not record.link:
            out.duplicates += new == old
            out.conflicts += new != old
        if new >= old:
            return
        state.size_bytes -= event_cost(kept, record.key, limits.identities)
    elif len(target) >= limits.events or state.size_bytes + size > limits.bytes:
        if not record.link:
            _reject(out, record, "key_overloaded",
                    f"journey key {record.key[:64]!r} holds {len(target)} events of "
                    f"{state.size_bytes} bytes; the limits are {limits.events} events and "
                    f"{limits.bytes} bytes: is a producer sending one customer or session id "
                    "for many people?")  # fmt: skip
        return
    if not record.link:  # the row first: nothing changes when it cannot be made
        out.raw_rows.append((record.key, raw_event_row(record.key, event, record)))
        out.accepted += kept is None
    target[event.event_id] = event
    state.size_bytes += size
    state.newest_ms = max(state.newest_ms, occurred_ms)
    out.changed.add(record.key)


def horizon_ms(now_ms: int) -> int:
    """Events before this can no longer interact with any event that may still be accepted:
    an event is at most 30 d old at ingest, may wait in the keyed topic up to its retention
    (7 d) before this stage sees it, and looks back at most 7 d."""
    return now_ms - MAX_EVENT_AGE_MS - KEYED_RETENTION_MS - RETENTION_MS


def expired_keys(states: dict[str, KeyState], now_ms: int) -> Iterator[str]:
    """Keys no valid future event can reach."""
    horizon = horizon_ms(now_ms)
    return (key for key, state in states.items() if state.newest_ms < horizon)
