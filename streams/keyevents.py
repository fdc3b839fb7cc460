"""A journey key's events sorted into units as they come and go, so an event touches only the
units it joins (issue 15).

A portal event joins the runs it falls within the gap of, merging two that it bridges; taking
one out may split its run; a contact event joins its contact, a link the key's links. Each
change marks what `refresh` (keyrows.py) recomputes and what `records` (keystate.py) writes.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import Callable

from cxpulse.schemas.events import ContactEvent, ContactStarted, Event, PortalEvent
from cxpulse.schemas.validate import event_time_ms
from cxpulse.streams import metrics
from cxpulse.streams.journeys import sessionize
from cxpulse.streams.units import RUN, ContactUnit, Run, Unit, linked_session


class KeyEvents:
    """One journey key: its events by id (duplicates and precedence), its units and indexes,
    and what changed since the last `refresh`."""

    __slots__ = (
        "_contacts",
        "_escalations",
        "_gone",
        "_moved",
        "_orphans",
        "_runs",
        "_unsaved",
        "aging",
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
    )

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

    def unit_bytes(self, at: int, event: Event, link: bool, gap_ms: int) -> int:
        """The bytes of the unit the event would join (the runs it would join, together)."""
        if link:
            return self.link_bytes
        if isinstance(event, ContactEvent):
            unit = self.contacts.get(event.contact_id)
            return 0 if unit is None else unit.bytes
        left, right, _ = self._neighbours(at, gap_ms)
        return (left.bytes if left else 0) + (right.bytes if right else 0)

    def _neighbours(self, at: int, gap_ms: int) -> tuple[Run | None, Run | None, int]:
        """The runs a portal event at `at` joins: the one it follows within the gap, the one
        it precedes within the gap, and where a run of its own would go."""
        index = bisect_right(self.run_starts, at)
        runs = self.runs
        left = runs[index - 1] if index and at - runs[index - 1].last <= gap_ms else None
        right = runs[index] if index < len(runs) and runs[index].start - at <= gap_ms else None
        return left, right, index

    def add(self, at: int, event: Event, link: bool, cost: int, gap_ms: int) -> None:
        """Take an event (a new id, or a copy that replaces the one `remove` just took out);
        `cost` is its share of the key's bounds (`keyed.event_cost`), `gap_ms` the journey gap."""
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
            self._add_portal(at, event, cost, gap_ms)
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

    def remove(self, event: Event, link: bool, cost: Callable[[Event], int], gap_ms: int) -> None:
        """Take an event out (a copy that precedes it is about to be added)."""
        if link:
            self.remove_link(event, cost)
            return
        at = event_time_ms(event)
        self.size_bytes -= cost(event)
        del self.events[event.event_id]
        if isinstance(event, PortalEvent):
            self._remove_portal(at, event.event_id, cost, gap_ms)
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

    def remove_link(self, event: Event, cost: Callable[[Event], int]) -> None:
        """Take a link out (a copy that precedes it is about to be added, or it is pruned)."""
        at = event_time_ms(event)
        self.size_bytes -= cost(event)
        self.link_bytes -= cost(event)
        del self.links[event.event_id]
        del self.link_index[bisect_left(self.link_index, (at, linked_session(event)))]
        self._escalations.append(at)
        self.links_changed = True

    def _add_portal(self, at: int, event: Event, cost: int, gap_ms: int) -> None:
        left, right, index = self._neighbours(at, gap_ms)
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

    def _remove_portal(
        self, at: int, event_id: str, cost: Callable[[Event], int], gap_ms: int
    ) -> None:
        index = bisect_right(self.run_starts, at) - 1
        run = self.runs[index]
        run.drop(at, event_id)
        run.bytes = sum(cost(e) for _, e in run.events)
        self._unsaved.add(run)
        if not run.events:
            self._forget_run(index, run, at)
            self._orphans.append(run)
            return
        parts = sessionize(run.events, gap_ms)  # taking an event out may split the run
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
