"""Accepting keyed events into journey-key state: duplicates, conflicting copies, bounds.

Every copy of an event reaches the same key (copies share their journey key), so checking the
key's own events is an exact duplicate test: no false positives, no window to size. The state
survives restarts because each changed unit of a key (`keystate.py`) is written to a compacted
topic before the input is acknowledged (`state_store.py`), so reprocessing after a crash finds
the events already present and changes nothing.

Retention: a key keeps every event that a future valid event could still interact with. A new
event is at most MAX_EVENT_AGE_MS [30 d] old (ingest rejects older ones), may wait in the keyed
topic up to its retention [7 d], and looks back at most the longest window (`Windows`; by default
the 7 d FCR window), so events older than `windows.lookback_ms` (by default 44 d) before now can
go (`horizon_ms`): the journey stage prunes old journeys whole (`stage.py`), and a key with
nothing newer is forgotten.
This keeps results independent of arrival order (docs/decisions.md). A key that would hold more
than its limits (`KeyLimits`: events, bytes, and bytes per unit so each record fits a Kafka
message; a producer sending one id for everyone) dead-letters the excess as `key_overloaded`
instead of growing without bound. Copies of an event_id with different content keep one copy by
an order-free rule (`precedence`) and are counted as conflicts.
"""

from __future__ import annotations

import functools
import heapq
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import msgspec
import orjson

from cxpulse.schemas.deadletters import Source, dead_letter
from cxpulse.schemas.events import Event
from cxpulse.schemas.times import ch_time
from cxpulse.schemas.validate import Rejection, decode_trusted, event_time_ms
from cxpulse.streams.ingest import KeyedRecord
from cxpulse.streams.keystate import KeyState
from cxpulse.streams.units import linked_session
from cxpulse.streams.windows import DEFAULT_WINDOWS, Windows, lookback_ms

MAX_EVENTS_PER_KEY = 20_000
#: Dead-letter reason of a message on an internal topic that cxpulse did not write: it cannot be
#: processed, and stopping on it would stall its partition for good.
CORRUPT_INTERNAL = "corrupt_internal"


_STATE_ENCODER = msgspec.json.Encoder()


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
    """Count a key's bytes afresh (restored, or pruned), its units' and its links' too."""
    for unit in (*state.runs, *state.contacts.values()):
        unit.bytes = sum(event_cost(e, key, identities) for _, e in unit.events)
    state.link_bytes = sum(event_cost(e, key, identities) for e in state.links.values())
    state.size_bytes = state.link_bytes + sum(
        unit.bytes for unit in (*state.runs, *state.contacts.values())
    )
    return state.size_bytes


def precedence(event: Event) -> tuple[int, bytes]:
    """Which of two copies of an event_id is kept: the earlier event time, then the smaller
    canonical form (decoded fields in contract order, unknown fields dropped, so copies that
    differ only in spacing, key order or unknown fields are equal: plain duplicates)."""
    return event_time_ms(event), _STATE_ENCODER.encode(event)


@dataclass(frozen=True, slots=True)
class KeyLimits:
    """What one journey key may hold (settings `CXPULSE_MAX_KEY_*`, `CXPULSE_MAX_UNIT_BYTES`).

    A key's state is written as one record per journey, contact and the key's links
    (`keystate.py`), so the bound that keeps a record under Kafka's default 1 MiB message limit
    is on each unit, as `event_cost` counts it (its events, and the row fingerprints they may
    add); every snapshot row is derived from one unit's events and is bounded by it too. The
    key's own bounds keep its memory in check."""

    events: int = MAX_EVENTS_PER_KEY
    bytes: int = 64 * 1024 * 1024
    unit_bytes: int = 512 * 1024
    #: Row identities one event may start: its journey's row and one per funnel (JourneyStage
    #: sets it from the funnels it computes).
    identities: int = 2
    #: A key untouched this long (wall clock) is held compressed until an event or a due time
    #: reaches it (`frozen.py`); 0: never.
    freeze_after_ms: int = 300_000


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
        "payload": _payload(bytes(record.event)),
        "source_topic": record.topic,
        "source_partition": record.partition,
        "source_offset": record.offset,
        "received_at": ch_time(record.received_ms),
    }


def _payload(raw: bytes) -> orjson.Fragment | str:
    """The event's bytes as they came, in the row as a JSON object that ClickHouse stores as its
    text (`input_format_json_read_objects_as_strings`): no decoding, no escaping. A newline in
    them (a pretty-printing producer) would split the row's line, so then as a string."""
    return orjson.Fragment(raw) if b"\n" not in raw else raw.decode()


def _reject(out: Outcome, record: KeyedRecord, reason: str, detail: str) -> None:
    source = Source(record.topic, record.partition, record.offset)
    letter = dead_letter(Rejection(reason, detail), bytes(record.event), source, record.received_ms)
    out.dead_letters.append((reason, letter))


def apply(
    states: dict[str, KeyState],
    records: Iterable[KeyedRecord],
    limits: KeyLimits = DEFAULT_KEY_LIMITS,
    windows: Windows = DEFAULT_WINDOWS,
) -> Outcome:
    """Add a batch of keyed records to the states of their keys.

    Every record ends accepted, dropped as a copy, or dead-lettered with a reason: a record
    that fails in any way (it can only be one cxpulse did not write) is dead-lettered as
    `corrupt_internal` instead of stopping the partition.
    """
    out = Outcome()
    gap_ms = windows.gap_ms
    for record in records:
        try:
            _apply_one(states, record, limits, gap_ms, out)
        except Exception as exc:  # one bad record must not stop the partition
            _reject(out, record, CORRUPT_INTERNAL, f"keyed record: {type(exc).__name__}: {exc}")
    return out


def _apply_one(
    states: dict[str, KeyState], record: KeyedRecord, limits: KeyLimits, gap_ms: int, out: Outcome
) -> None:
    event = decode_trusted(bytes(record.event))
    occurred_ms = event_time_ms(event)
    if record.link:
        linked_session(event)  # a link names a session, or the record is not one cxpulse wrote
    # The row first: nothing changes when it cannot be made.
    row = None if record.link else raw_event_row(record.key, event, record)
    state = states.get(record.key)
    if state is None:
        state = states[record.key] = KeyState()
    target = state.links if record.link else state.events
    size = event_cost(event, record.key, limits.identities)
    kept = target.get(event.event_id)
    if kept is not None:
        # A copy. Copies that differ (a producer reusing an id) keep the one that precedes,
        # whatever the order they arrive in, as long as it fits the bounds.
        new, old = precedence(event), precedence(kept)
        if not record.link:
            out.duplicates += new == old
            out.conflicts += new != old
        if new >= old:
            return
        cost = functools.partial(event_cost, key=record.key, identities=limits.identities)
        state.remove(kept, record.link, cost, gap_ms)
        if not _fits(state, target, event, occurred_ms, size, record.link, limits, gap_ms):
            # Keep the old copy.
            state.add(event_time_ms(kept), kept, record.link, cost(kept), gap_ms)
            _overloaded(out, record, state, target, limits)
            out.changed.add(record.key)  # the same events; its units are refreshed, unchanged
            return
    elif not _fits(state, target, event, occurred_ms, size, record.link, limits, gap_ms):
        _overloaded(out, record, state, target, limits)
        if not (state.events or state.links):
            del states[record.key]  # its first event: no key is left behind empty
        return
    if row is not None:
        out.raw_rows.append((record.key, row))
        out.accepted += kept is None
    state.add(occurred_ms, event, record.link, size, gap_ms)
    out.changed.add(record.key)


def _fits(
    state: KeyState,
    target: dict[str, Event],
    event: Event,
    occurred_ms: int,
    size: int,
    link: bool,
    limits: KeyLimits,
    gap_ms: int,
) -> bool:
    return (
        len(target) < limits.events
        and state.size_bytes + size <= limits.bytes
        and state.unit_bytes(occurred_ms, event, link, gap_ms) + size <= limits.unit_bytes
    )


def _overloaded(
    out: Outcome, record: KeyedRecord, state: KeyState, target: dict[str, Event], limits: KeyLimits
) -> None:
    if not record.link:
        _reject(
            out,
            record,
            "key_overloaded",
            f"journey key {record.key[:64]!r} holds {len(target)} events of "
            f"{state.size_bytes} bytes; the limits are {limits.events} events, "
            f"{limits.bytes} bytes and {limits.unit_bytes} bytes per journey or "
            "contact: is a producer sending one customer or session id for many "
            "people?",
        )


def horizon_ms(now_ms: int, windows: Windows) -> int:
    """Events before this can no longer interact with any event that may still be accepted
    (`windows.lookback_ms`)."""
    return now_ms - lookback_ms(windows)


def expired_keys(
    aging: list[tuple[int, str]], states: dict[str, KeyState], horizon: int
) -> Iterator[str]:
    """Keys no valid future event can reach (nothing newer than `horizon_ms`), from `aging`: a
    heap of (newest event time when pushed, key) holding every key once. A key that has seen
    newer events since goes back in with its newest time, so a tick looks only at keys that may
    have expired, not at all."""
    while aging and aging[0][0] < horizon:
        _, key = heapq.heappop(aging)
        state = states.get(key)
        if state is not None and state.newest_ms < horizon:
            yield key
        elif state is not None:
            heapq.heappush(aging, (state.newest_ms, key))
