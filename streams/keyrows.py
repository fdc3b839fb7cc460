"""A journey key's rows recomputed unit by unit (issue 15): the units an event marked, plus the
neighbours whose inputs moved, and only their rows diffed.

A unit's rows depend on its neighbours only through a few sorted indexes of the key: the next
run's start, the times of contact starts and links (escalation), the start times of contacts
(follow-up flags) and the resolved contacts (TTR). Contacts are recomputed first (runs read
their starts and resolutions), then runs.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import Sequence
from operator import itemgetter
from typing import Any

from cxpulse.streams import metrics
from cxpulse.streams.contacts import ShiftTable, contact_of, contact_start
from cxpulse.streams.funnels import FunnelSpec
from cxpulse.streams.journeys import Journey, journey_of
from cxpulse.streams.keyevents import KeyEvents
from cxpulse.streams.snapshots import contact_row, diff, journey_rows
from cxpulse.streams.units import CONTACT, ContactUnit, Run, Unit
from cxpulse.streams.windows import Windows

_TIME = itemgetter(0)


class KeyRows(KeyEvents):
    """A key that turns what changed in its units into the rows to send."""

    __slots__ = ()

    def refresh(
        self,
        key: str,
        watermark: int,
        version: int,
        funnels: Sequence[FunnelSpec],
        shifts: ShiftTable,
        windows: Windows,
    ) -> list[tuple[str, dict[str, Any]]]:
        """The rows to send for what changed since the last refresh and for units whose time
        has come (`next_due_ms`); `version` is that of the rows (see `diff`)."""
        due: set[Unit] = set()
        if self.next_due_ms and self.next_due_ms <= watermark:
            due = {u for u, at in self.pending.items() if at <= watermark}
        contacts = self._contacts | {u.contact_id for u in due if isinstance(u, ContactUnit)}
        changes: list[tuple[str, dict[str, Any]]] = []
        resolved_moved = self._contacts_refresh(
            key, contacts, watermark, version, shifts, windows, changes
        )
        runs = self._runs | {u for u in due if isinstance(u, Run)}
        for at in self._moved + self._escalations:
            self._add_run_before(runs, at, "neighbour")
        for at in resolved_moved:
            self._add_resolution_runs(runs, at, windows.escalation_window_ms)
        gap = windows.gap_ms
        for run in runs:
            index = bisect_left(self.run_starts, run.start)
            if index == len(self.runs) or self.runs[index] is not run:
                continue  # merged into another run since it was marked
            journey = self._journey_at(key, index, funnels, windows.escalation_window_ms)
            self._emit(run, journey_rows(journey, funnels, watermark, gap), version, changes)
            self._set_due(run, 0 if journey.closed(watermark, gap) else run.last + gap)
        for orphan in self._orphans:
            changes += diff([], orphan.emitted, version)
        for scratch in (self._runs, self._contacts, self._moved, self._escalations, self._orphans):
            scratch.clear()  # kept, not replaced: fewer allocations, fewer collections
        self._summarize_pending()
        if changes:
            self.last_version = version + 1  # live rows carry version + 1 (see diff)
        return changes

    def _journey_at(
        self, key: str, index: int, funnels: Sequence[FunnelSpec], escalation_window_ms: int
    ) -> Journey:
        """Recompute the journey of the run at `index` from its events and the key's indexes."""
        run = self.runs[index]
        following = self.run_starts[index + 1] if index + 1 < len(self.runs) else None
        run.journey = journey_of(
            key,
            run.events,
            following,
            self.contact_starts,
            self.link_index,
            self.resolved,
            funnels,
            escalation_window_ms,
        )
        return run.journey

    def _contacts_refresh(
        self,
        key: str,
        ids: set[str],
        watermark: int,
        version: int,
        shifts: ShiftTable,
        windows: Windows,
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
                contact_of(contact_id, unit.events, unit.start, self.start_times, windows)
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
            rows = [contact_row(key, contact, watermark, shifts, windows)] if contact else []
            self._emit(unit, rows, version, changes)
            self._set_due(unit, (contact and contact.next_due_ms(watermark, windows)) or 0)
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

    def _add_resolution_runs(self, runs: set[Run], at: int, escalation_window_ms: int) -> None:
        """Runs whose TTR a resolved contact starting at `at` (added or gone) can change: those
        escalated after the resolved contact before it and by `at`."""
        index = bisect_left(self.resolved, at, key=_TIME)
        before = self.resolved[index - 1][0] if index else None
        position = bisect_right(self.run_starts, at) - 1
        while position >= 0:
            run = self.runs[position]
            if before is not None and run.last + escalation_window_ms <= before:
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
