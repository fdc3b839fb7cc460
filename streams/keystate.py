"""A journey key's state as units recomputed alone, so an event costs the same whatever the
key's history (issue 15).

A key's events fall into units: runs of portal events (one journey each, as `sessionize` splits
them), contacts (the events of one contact_id) and the key's links (contacts of other keys that
name one of its anonymous sessions). A unit's rows depend on its own events and on its
neighbours only through a few sorted indexes of the key: the next run's start, the times of
contact starts and links (escalation), the start times of contacts (follow-up flags) and the
resolved contacts (TTR). An event marks the units it can change; `refresh` recomputes them
(contacts first: runs read their starts and resolutions), plus the neighbours whose inputs
moved, diffs only their rows, and marks for writing only units whose events or rows changed.
The pure functions of journeys.py and contacts.py do the computing; `build_journeys` and
`build_contacts` over the whole key are the reference a property test holds this to.

The state topic holds one record per unit (`UnitRecord`), keyed by (journey key, kind, id), so
what is written per change is the changed units, not the key's whole history.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import Callable, Iterator, Sequence
from operator import itemgetter
from typing import Any

import msgspec

from cxpulse.schemas.events import ContactEvent, ContactStarted, Event, PortalEvent
from cxpulse.schemas.validate import event_time_ms
from cxpulse.streams import metrics
from cxpulse.streams.contacts import ShiftTable, contact_of, contact_start
from cxpulse.streams.funnels import FunnelSpec
from cxpulse.streams.journeys import ESCALATION_WINDOW_MS, GAP_MS, Journey, journey_of, sessionize
from cxpulse.streams.snapshots import Emitted, contact_row, diff, journey_rows

RUN, CONTACT, LINKS = "j", "c", "l"
_TIME = itemgetter(0)


def _order(item: tuple[int, Event]) -> tuple[int, str]:
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


class Unit:
    """Events in `by_time` order, the rows last sent for them, and bookkeeping."""

    __slots__ = ("bytes", "due", "emitted", "events")

    def __init__(self, events: list[tuple[int, Event]], emitted: dict[str, Emitted]) -> None:
        self.events = events
        self.emitted = emitted
        self.bytes = 0  # what `keyed.event_cost` counts for its events (its record's bound)
        self.due = 0  # when its rows change by time alone (0: never)

    def put(self, at: int, event: Event) -> None:
        insort(self.events, (at, event), key=_order)

    def drop(self, at: int, event_id: str) -> None:
        del self.events[bisect_left(self.events, (at, event_id), key=_order)]

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


class KeyState:
    """One journey key: its events by id (duplicates and precedence), its units and indexes,
    and what changed since the last `refresh`."""

    __slots__ = (
        "_contacts",
        "_escalations",
        "_gone",
        "_moved",
        "_orphans",
        "_runs",
        "_unsaved", "aging",
        "contact_starts",
        "contacts",
        "events",
        "last_version",
        "link_bytes",
        "link_index",
        "links",
        "links_changed",
        "newest_ms",
        "next_due_ms",
        "open_runs",
        "pending",
        "resolved",
        "run_starts",
        "runs",
        "size_bytes",
        "start_ids",
        "start_times",
    )  # fmt: skip

    def __init__(self) -> None:
        self.events: dict[str, Event] = {}
        self.links: dict[str, Event] = {}
        self.newest_ms = 0
        self.last_version = 0
        self.size_bytes = 0  # what `keyed.event_cost` counts for its events and links
        self.link_bytes = 0  # the same for its links alone (one record)
        self.next_due_ms = 0  # when a unit's rows next change by time alone (0: none)
        self.open_runs = 0  # journeys not closed at the last refresh
        self.runs: list[Run] = []  # by start; runs never overlap
        self.run_starts: list[int] = []
        self.contacts: dict[str, ContactUnit] = {}
        self.contact_starts: list[int] = []  # times of its cc.contact_started events
        self.link_index: list[tuple[int, str]] = []  # (time, linked session) of its links
        self.start_times: list[int] = []  # contacts' starts, sorted, and whose each is
        self.start_ids: list[str] = []
        self.resolved: list[tuple[int, str, int]] = []  # (start, contact_id, end), sorted
        self.pending: dict[Unit, int] = {}  # units with a due time
        self.links_changed = False
        self.aging = False  # whether the stage's expiry heap holds it
        # What changed since the last refresh.
        self._runs: set[Run] = set()
        self._contacts: set[str] = set()
        self._moved: list[int] = []  # where a run started or vanished: its predecessor's next
        self._escalations: list[int] = []  # contact starts and links added or removed
        self._orphans: list[Unit] = []  # units gone whose rows need tombstones
        self._gone: list[tuple[str, str]] = []  # records to delete
        self._unsaved: set[Unit] = set()  # units whose record is behind

    # -- events ---------------------------------------------------------------------------------

    def unit_bytes(self, at: int, event: Event, link: bool) -> int:
        """The bytes of the unit the event would join (the runs it would join, together)."""
        if link:
            return self.link_bytes
        if isinstance(event, ContactEvent):
            unit = self.contacts.get(event.contact_id)
            return 0 if unit is None else unit.bytes
        left, right, _ = self._neighbours(at)
        return (left.bytes if left else 0) + (right.bytes if right else 0)

    def _neighbours(self, at: int) -> tuple[Run | None, Run | None, int]:
        """The runs a portal event at `at` joins: the one it follows within the gap, the one
        it precedes within the gap, and where a run of its own would go."""
        index = bisect_right(self.run_starts, at)
        runs = self.runs
        left = runs[index - 1] if index and at - runs[index - 1].last <= GAP_MS else None
        right = runs[index] if index < len(runs) and runs[index].start - at <= GAP_MS else None
        return left, right, index

    def add(self, at: int, event: Event, link: bool, cost: int) -> None:
        """Take an event (a new id, or a copy that replaces the one `remove` just took out);
        `cost` is its share of the key's bounds (`keyed.event_cost`)."""
        session = linked_session(event) if link else ""  # before anything changes
        self.newest_ms = max(self.newest_ms, at)
        self.size_bytes += cost
        if link:
            self.link_bytes += cost
            self.links[event.event_id] = event
            insort(self.link_index, (at, session))
            self._escalations.append(at)
            self.links_changed = True
            return
        self.events[event.event_id] = event
        if isinstance(event, PortalEvent):
            self._add_portal(at, event, cost)
            return
        assert isinstance(event, ContactEvent)
        unit = self.contacts.get(event.contact_id)
        if unit is None:
            unit = self.contacts[event.contact_id] = ContactUnit(event.contact_id, [], {})
        unit.put(at, event)
        unit.bytes += cost
        self._unsaved.add(unit)
        self._contacts.add(event.contact_id)
        if isinstance(event, ContactStarted):
            insort(self.contact_starts, at)
            self._escalations.append(at)

    def remove(self, event: Event, link: bool, cost: Callable[[Event], int]) -> None:
        """Take an event out (a copy that precedes it is about to be added)."""
        at = event_time_ms(event)
        self.size_bytes -= cost(event)
        if link:
            self.link_bytes -= cost(event)
            del self.links[event.event_id]
            del self.link_index[bisect_left(self.link_index, (at, linked_session(event)))]
            self._escalations.append(at)
            self.links_changed = True
            return
        del self.events[event.event_id]
        if isinstance(event, PortalEvent):
            self._remove_portal(at, event.event_id, cost)
            return
        assert isinstance(event, ContactEvent)
        unit = self.contacts[event.contact_id]
        unit.drop(at, event.event_id)
        unit.bytes -= cost(event)
        self._unsaved.add(unit)
        self._contacts.add(event.contact_id)  # `refresh` deletes it if it is empty now
        if isinstance(event, ContactStarted):
            del self.contact_starts[bisect_left(self.contact_starts, at)]
            self._escalations.append(at)

    def _add_portal(self, at: int, event: Event, cost: int) -> None:
        left, right, index = self._neighbours(at)
        runs = self.runs
        if left is not None and right is not None:  # the event bridges two runs: one journey
            left.events += right.events
            left.emitted.update(right.emitted)
            left.bytes += right.bytes
            self._forget_run(index, right, right.start)
            metrics.RECOMPUTES.labels("merge").inc()
        target = left or right
        if target is None:
            target = Run([], {})
            runs.insert(index, target)
            self.run_starts.insert(index, at)
            self._moved.append(at)
        elif target is right and at < right.start:
            self.run_starts[index] = at
            self._moved.append(at)
        target.put(at, event)
        target.bytes += cost
        self._runs.add(target)
        self._unsaved.add(target)

    def _remove_portal(self, at: int, event_id: str, cost: Callable[[Event], int]) -> None:
        index = bisect_right(self.run_starts, at) - 1
        run = self.runs[index]
        run.drop(at, event_id)
        run.bytes = sum(cost(e) for _, e in run.events)
        self._unsaved.add(run)
        if not run.events:
            self._forget_run(index, run, at)
            self._orphans.append(run)
            return
        parts = sessionize(run.events)  # taking an event out may split the run
        run.events = parts[0]
        self.run_starts[index] = run.start
        self._runs.add(run)
        self._moved.append(run.start)
        for offset, part in enumerate(parts[1:], 1):
            split = Run(part, {})
            split.bytes = sum(cost(e) for _, e in part)
            run.bytes -= split.bytes
            self.runs.insert(index + offset, split)
            self.run_starts.insert(index + offset, split.start)
            self._runs.add(split)
            self._unsaved.add(split)
            metrics.RECOMPUTES.labels("split").inc()

    def _forget_run(self, index: int, run: Run, start: int) -> None:
        del self.runs[index]
        del self.run_starts[index]
        self._moved.append(start)
        self.pending.pop(run, None)
        self._runs.discard(run)
        if run.stored_as is not None:
            self._gone.append((RUN, run.stored_as))

    # -- rows -----------------------------------------------------------------------------------

    def refresh(
        self,
        key: str,
        watermark: int,
        version: int,
        funnels: Sequence[FunnelSpec],
        shifts: ShiftTable,
    ) -> list[tuple[str, dict[str, Any]]]:
        """The rows to send for what changed since the last refresh and for units whose time
        has come (`next_due_ms`); `version` is that of the rows (see `diff`)."""
        due: set[Unit] = set()
        if self.next_due_ms and self.next_due_ms <= watermark:
            due = {u for u, at in self.pending.items() if at <= watermark}
        contacts = self._contacts | {u.contact_id for u in due if isinstance(u, ContactUnit)}
        changes: list[tuple[str, dict[str, Any]]] = []
        resolved_moved = self._contacts_refresh(key, contacts, watermark, version, shifts,
                                                changes)  # fmt: skip
        runs = self._runs | {u for u in due if isinstance(u, Run)}
        for at in self._moved + self._escalations:
            self._add_run_before(runs, at, "neighbour")
        for at in resolved_moved:
            self._add_resolution_runs(runs, at)
        for run in runs:
            index = bisect_left(self.run_starts, run.start)
            if index == len(self.runs) or self.runs[index] is not run:
                continue  # merged into another run since it was marked
            following = self.run_starts[index + 1] if index + 1 < len(self.runs) else None
            run.journey = journey_of(key, run.events, following, self.contact_starts,
                                     self.link_index, self.resolved, funnels)  # fmt: skip
            self._emit(run, journey_rows(run.journey, funnels, watermark), version, changes)
            closes = run.last + GAP_MS
            self._set_due(run, 0 if run.journey.closed(watermark) else closes)
        for orphan in self._orphans:
            changes += diff([], orphan.emitted, version)
        for scratch in (self._runs, self._contacts, self._moved, self._escalations, self._orphans):
            scratch.clear()  # kept, not replaced: fewer allocations, fewer collections
        self._summarize_pending()
        if changes:
            self.last_version = version + 1  # live rows carry version + 1 (see diff)
        return changes

    def _contacts_refresh(
        self,
        key: str,
        ids: set[str],
        watermark: int,
        version: int,
        shifts: ShiftTable,
        changes: list[tuple[str, dict[str, Any]]],
    ) -> list[int]:
        """Recompute contacts; returns the start times of TTR entries that moved."""
        moved = []
        for contact_id in ids:
            unit = self.contacts[contact_id]
            start = contact_start(unit.events) if unit.events else None
            old = unit.start[0] if unit.start else None
            new = start[0] if start else None
            unit.start = start
            if old != new:
                if old is not None:
                    self._unindex_start(old, contact_id)
                    moved.append(old)
                if new is not None:
                    position = bisect_right(self.start_times, new)
                    self.start_times.insert(position, new)
                    self.start_ids.insert(position, contact_id)
                    moved.append(new)
        for at in moved:  # the contacts just before a start that moved see a new next one
            index = bisect_left(self.start_times, at) - 1
            previous = self.start_times[index] if index >= 0 else None
            while index >= 0 and self.start_times[index] == previous:
                if self.start_ids[index] not in ids:
                    ids.add(self.start_ids[index])
                    metrics.RECOMPUTES.labels("neighbour").inc()
                index -= 1
        resolved_moved = []
        for contact_id in ids:
            unit = self.contacts[contact_id]
            contact = (
                contact_of(contact_id, unit.events, unit.start, self.start_times)
                if unit.start
                else None
            )
            entry = None
            if contact is not None and contact.resolved and contact.ended_ms:
                entry = (contact.started_ms, contact_id, contact.ended_ms)
            if entry != unit.resolved:
                if unit.resolved is not None:
                    self.resolved.remove(unit.resolved)
                    resolved_moved.append(unit.resolved[0])
                if entry is not None:
                    insort(self.resolved, entry)
                    resolved_moved.append(entry[0])
                unit.resolved = entry
            rows = [] if contact is None else [contact_row(key, contact, watermark, shifts)]
            self._emit(unit, rows, version, changes)
            self._set_due(unit, (contact and contact.next_due_ms(watermark)) or 0)
            if not unit.events:
                del self.contacts[contact_id]
                self.pending.pop(unit, None)
                self._gone.append((CONTACT, contact_id))
        return resolved_moved

    def _unindex_start(self, at: int, contact_id: str) -> None:
        index = bisect_left(self.start_times, at)
        while self.start_ids[index] != contact_id:
            index += 1
        del self.start_times[index]
        del self.start_ids[index]

    def _add_run_before(self, runs: set[Run], at: int, cause: str) -> None:
        """The last run that starts before `at`: the one whose next start, escalation
        candidates (contact starts and links after its start, before the next run) or TTR a
        change at `at` can reach."""
        index = bisect_left(self.run_starts, at) - 1
        if index >= 0 and self.runs[index] not in runs:
            runs.add(self.runs[index])
            metrics.RECOMPUTES.labels(cause).inc()

    def _add_resolution_runs(self, runs: set[Run], at: int) -> None:
        """Runs whose TTR a resolved contact starting at `at` (added or gone) can change: those
        escalated after the resolved contact before it and by `at`."""
        index = bisect_left(self.resolved, at, key=_TIME)
        before = self.resolved[index - 1][0] if index else None
        position = bisect_right(self.run_starts, at) - 1
        while position >= 0:
            run = self.runs[position]
            if before is not None and run.last + ESCALATION_WINDOW_MS <= before:
                break  # this and every earlier run escalated (if at all) by `before`
            journey = run.journey
            escalated = journey.escalated_at_ms if journey is not None else None
            reached = journey is None or (
                escalated is not None
                and not journey.anonymous
                and escalated <= at
                and (before is None or escalated > before)
            )
            if reached and run not in runs:
                runs.add(run)
                metrics.RECOMPUTES.labels("resolution").inc()
            position -= 1

    def _emit(
        self, unit: Unit, rows: list[Any], version: int, changes: list[tuple[str, dict[str, Any]]]
    ) -> None:
        sent = diff(rows, unit.emitted, version)
        if sent:
            self._unsaved.add(unit)
            changes += sent

    def _summarize_pending(self) -> None:
        """What the stage reads of `pending`: open journeys, and when the next unit is due."""
        self.open_runs = sum(1 for unit in self.pending if isinstance(unit, Run))
        self.next_due_ms = min(self.pending.values(), default=0)

    def _set_due(self, unit: Unit, due: int) -> None:
        unit.due = due
        if due:
            self.pending[unit] = due
        else:
            self.pending.pop(unit, None)

    # -- state topic ----------------------------------------------------------------------------

    def records(self) -> Iterator[tuple[str, str, bytes | None]]:
        """(kind, id, record or None to delete) of every unit whose record is behind; deletions
        first, so a record id that moved from one unit to another ends up live."""
        writes = []
        gone = self._gone
        for unit in self._unsaved:
            if isinstance(unit, Run):
                if not unit.events:
                    continue  # emptied: its record is in `_gone`
                journey_id = unit.events[0][1].event_id
                if unit.stored_as is not None and unit.stored_as != journey_id:
                    gone.append((RUN, unit.stored_as))
                index = bisect_left(self.run_starts, unit.start)
                if index < len(self.runs) and self.runs[index] is unit:  # not merged away
                    writes.append((RUN, journey_id, unit))
                    unit.stored_as = journey_id
            elif self.contacts.get(unit.contact_id) is unit:  # type: ignore[attr-defined]
                writes.append((CONTACT, unit.contact_id, unit))  # type: ignore[attr-defined]
        written = {(kind, unit_id) for kind, unit_id, _ in writes}
        for kind, unit_id in dict.fromkeys(gone):
            if (kind, unit_id) not in written:
                yield kind, unit_id, None
        for kind, unit_id, unit in writes:
            yield kind, unit_id, unit.record(self.last_version)
        self._gone.clear()
        self._unsaved.clear()
        if self.links_changed:
            value = _RECORD_ENCODER.encode(self._links_record()) if self.links else None
            yield LINKS, "", value
            self.links_changed = False

    def record_ids(self) -> Iterator[tuple[str, str]]:
        """Every record the key has in the state topic (to delete the key), those of units just
        pruned included."""
        yield from dict.fromkeys(self._gone)
        self._gone.clear()
        for run in self.runs:
            if run.stored_as is not None:
                yield RUN, run.stored_as
        for contact_id in self.contacts:
            yield CONTACT, contact_id
        if self.links:
            yield LINKS, ""

    def unit_records(self) -> dict[tuple[str, str], UnitRecord]:
        """Every unit's record, as `restore` takes them. Only for a key whose records are all
        written (no refresh or `records` pending): a run's id is then the one it is stored as."""
        version = self.last_version
        units = {(RUN, run.stored_as or ""): run.unit_record(version) for run in self.runs}
        for contact_id, unit in self.contacts.items():
            units[CONTACT, contact_id] = unit.unit_record(version)
        if self.links:
            units[LINKS, ""] = self._links_record()
        return units

    def _links_record(self) -> UnitRecord:
        return UnitRecord(list(self.links.values()), {}, self.last_version)

    @classmethod
    def restore(cls, units: dict[tuple[str, str], UnitRecord]) -> KeyState:
        """A key from its records; `prime` then computes what was derived from them."""
        state = cls()
        runs = []
        for (kind, unit_id), record in units.items():
            state.last_version = max(state.last_version, record.version)
            timeline = sorted(((event_time_ms(e), e) for e in record.events), key=_order)
            for at, event in timeline:
                state.newest_ms = max(state.newest_ms, at)
                if kind == LINKS:
                    state.links[event.event_id] = event
                    state.link_index.append((at, linked_session(event)))
                else:
                    state.events[event.event_id] = event
                    if isinstance(event, ContactStarted):
                        state.contact_starts.append(at)
            unit: Unit
            if kind == RUN and timeline:
                unit = Run(timeline, record.emitted)
                unit.stored_as = unit_id
                runs.append(unit)
            elif kind == CONTACT:
                unit = state.contacts[unit_id] = ContactUnit(unit_id, timeline, record.emitted)
            else:
                continue
            state._set_due(unit, record.due)
        state.runs = sorted(runs, key=lambda run: run.start)
        state.run_starts = [run.start for run in state.runs]
        state.contact_starts.sort()
        state.link_index.sort()
        return state

    def prime(self, key: str, funnels: Sequence[FunnelSpec]) -> None:
        """Compute a restored key's contacts and journeys, sending nothing: its rows are those
        its records say were sent, and each unit is due when its record says."""
        for contact_id, unit in self.contacts.items():
            unit.start = contact_start(unit.events)
            if unit.start is not None:
                self.start_times.append(unit.start[0])
                self.start_ids.append(contact_id)
        order = sorted(range(len(self.start_times)), key=self.start_times.__getitem__)
        self.start_times = [self.start_times[i] for i in order]
        self.start_ids = [self.start_ids[i] for i in order]
        for contact_id, unit in self.contacts.items():
            if unit.start is not None:
                contact = contact_of(contact_id, unit.events, unit.start, self.start_times)
                if contact.resolved and contact.ended_ms:
                    unit.resolved = (contact.started_ms, contact_id, contact.ended_ms)
                    self.resolved.append(unit.resolved)
        self.resolved.sort()
        for index, run in enumerate(self.runs):
            following = self.run_starts[index + 1] if index + 1 < len(self.runs) else None
            run.journey = journey_of(key, run.events, following, self.contact_starts,
                                     self.link_index, self.resolved, funnels)  # fmt: skip
        self._summarize_pending()

    # -- retention ------------------------------------------------------------------------------

    def oldest_ms(self) -> int:
        """The start of its oldest journey, contact or link (what pruning looks at first)."""
        firsts = (self.run_starts[:1], self.start_times[:1], [at for at, _ in self.link_index[:1]])
        return min((at for first in firsts for at in first), default=self.newest_ms)

    def prune(self, horizon: int) -> bool:
        """Drop whole journeys and contacts past the horizon, and what no kept one can use;
        returns whether anything went.

        Whole journeys and contacts go, never part of one, so every row that stays keeps its
        identity and figures; the stored rows of what is pruned are final and stay (their
        records are deleted, their rows are not tombstoned).
        """
        kept = [run for run in self.runs if run.last >= horizon]
        limit = min(horizon, kept[0].start if kept else horizon)
        dropped = False
        for run in self.runs[: len(self.runs) - len(kept)]:
            for _, event in run.events:
                del self.events[event.event_id]
            self.pending.pop(run, None)
            if run.stored_as is not None:
                self._gone.append((RUN, run.stored_as))
            dropped = True
        self.runs = kept
        self.run_starts = [run.start for run in kept]
        for contact_id, unit in list(self.contacts.items()):
            start = unit.start[0] if unit.start else unit.events[-1][0]
            if start < limit:
                for at, event in unit.events:
                    del self.events[event.event_id]
                    if isinstance(event, ContactStarted):
                        del self.contact_starts[bisect_left(self.contact_starts, at)]
                if unit.start is not None:
                    self._unindex_start(unit.start[0], contact_id)
                if unit.resolved is not None:
                    self.resolved.remove(unit.resolved)
                del self.contacts[contact_id]
                self.pending.pop(unit, None)
                self._gone.append((CONTACT, contact_id))
                dropped = True
        old_links = [e for e in self.links.values() if event_time_ms(e) < limit]
        for event in old_links:
            self.remove(event, True, lambda _: 0)  # `keyed.count_bytes` counts afresh
        self._escalations.clear()  # nothing kept can reach back there
        self._summarize_pending()
        return dropped or bool(old_links)


def linked_session(event: Event) -> str:
    if not isinstance(event, ContactStarted) or not event.data.linked_session_id:
        raise ValueError("a link is a cc.contact_started that names a session")
    return event.data.linked_session_id
