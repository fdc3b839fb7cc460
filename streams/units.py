"""The units a journey key's events fall into (a run of portal events, a contact, the key's
links) and their records in the state topic.

The state topic holds one record per unit (`UnitRecord`), keyed by (journey key, kind, id), so
what is written per change is the changed units, not the key's whole history.
"""

from __future__ import annotations

from bisect import bisect_left, insort

import msgspec

from cxpulse.schemas.events import ContactStarted, Event
from cxpulse.streams.journeys import Journey
from cxpulse.streams.snapshots import Emitted

RUN, CONTACT, LINKS = "j", "c", "l"


def event_order(item: tuple[int, Event]) -> tuple[int, str]:
    """The order of a unit's (time, event) pairs: `by_time`'s, time then event_id."""
    return item[0], item[1].event_id


class UnitRecord(msgspec.Struct, gc=False):
    """A unit in the state topic: its events, the rows last sent for it, the key's version,
    and when those rows change by time alone (so a restored unit is refreshed then)."""

    events: list[Event]
    emitted: dict[str, Emitted] = {}
    version: int = 0
    due: int = 0


_RECORD_ENCODER = msgspec.json.Encoder()
_RECORD_DECODER = msgspec.json.Decoder(UnitRecord)
_KEY_DECODER = msgspec.json.Decoder(tuple[str, str, str])


def record_key(key: str, kind: str, unit: str) -> bytes:
    """A unit's key in the state topic; any journey key, kind and id round-trip exactly."""
    return _RECORD_ENCODER.encode((key, kind, unit))


def parse_record_key(raw: bytes) -> tuple[str, str, str]:
    return _KEY_DECODER.decode(raw)


def decode_record(raw: bytes) -> UnitRecord:
    return _RECORD_DECODER.decode(raw)


def encode_record(record: UnitRecord) -> bytes:
    return _RECORD_ENCODER.encode(record)


class Unit:
    """Events in `by_time` order, the rows last sent for them, and bookkeeping."""

    __slots__ = ("bytes", "due", "emitted", "events")

    def __init__(self, events: list[tuple[int, Event]], emitted: dict[str, Emitted]) -> None:
        self.events = events
        self.emitted = emitted
        self.bytes = 0  # what `keyed.event_cost` counts for its events (its record's bound)
        self.due = 0  # when its rows change by time alone (0: never)

    def put(self, at: int, event: Event) -> None:
        insort(self.events, (at, event), key=event_order)

    def drop(self, at: int, event_id: str) -> None:
        del self.events[bisect_left(self.events, (at, event_id), key=event_order)]

    def unit_record(self, version: int) -> UnitRecord:
        return UnitRecord([e for _, e in self.events], self.emitted, version, self.due)

    def record(self, version: int) -> bytes:
        return _RECORD_ENCODER.encode(self.unit_record(version))


class Run(Unit):
    """A run of portal events: one journey."""

    __slots__ = ("journey", "stored_as")

    def __init__(self, events: list[tuple[int, Event]], emitted: dict[str, Emitted]) -> None:
        super().__init__(events, emitted)
        self.stored_as: str | None = None  # the journey id its record was written under
        self.journey: Journey | None = None

    @property
    def start(self) -> int:
        return self.events[0][0]

    @property
    def last(self) -> int:
        return self.events[-1][0]


class ContactUnit(Unit):
    __slots__ = ("contact_id", "resolved", "start")

    def __init__(
        self, contact_id: str, events: list[tuple[int, Event]], emitted: dict[str, Emitted]
    ) -> None:
        super().__init__(events, emitted)
        self.contact_id = contact_id
        self.start: tuple[int, ContactStarted] | None = None
        self.resolved: tuple[int, str, int] | None = None  # its entry in the TTR index


def linked_session(event: Event) -> str:
    if not isinstance(event, ContactStarted) or not event.data.linked_session_id:
        raise ValueError("a link is a cc.contact_started that names a session")
    return event.data.linked_session_id
