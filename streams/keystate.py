"""A journey key's state as units recomputed alone, so an event costs the same whatever the
key's history (issue 15).

A key's events fall into units (units.py): runs of portal events (one journey each, as
`sessionize` splits them), contacts (the events of one contact_id) and the key's links (contacts
of other keys that name one of its anonymous sessions). An event marks the units it can change
(keyevents.py); `refresh` recomputes them, plus the neighbours whose inputs moved, diffs only
their rows, and marks for writing only units whose events or rows changed (keyrows.py). The
pure functions of journeys.py and contacts.py do the computing; `build_journeys` and
`build_contacts` over the whole key are the reference a property test holds this to.

This module adds what outlives a worker: the key's records in the state topic, one per unit,
so what is written per change is the changed units, not the key's whole history; the key
restored from them; and retention.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Sequence

from cxpulse.schemas.events import ContactStarted
from cxpulse.schemas.validate import event_time_ms
from cxpulse.streams.contacts import contact_of, contact_start
from cxpulse.streams.funnels import FunnelSpec
from cxpulse.streams.keyrows import KeyRows
from cxpulse.streams.units import (
    CONTACT,
    LINKS,
    RUN,
    ContactUnit,
    Run,
    Unit,
    UnitRecord,
    encode_record,
    event_order,
    linked_session,
)
from cxpulse.streams.windows import Windows


class KeyState(KeyRows):
    """One journey key as the stage holds it: its units and rows, its records in the state
    topic, and its retention. Its layers (`KeyEvents` < `KeyRows` < `KeyState`) are subclasses,
    so the hot path keeps plain method calls; only `KeyEvents` declares slots."""

    __slots__ = ()

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
            value = encode_record(self._links_record()) if self.links else None
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
            timeline = sorted(((event_time_ms(e), e) for e in record.events), key=event_order)
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

    def prime(self, key: str, funnels: Sequence[FunnelSpec], windows: Windows) -> None:
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
                contact = contact_of(contact_id, unit.events, unit.start, self.start_times, windows)
                if contact.resolved and contact.ended_ms:
                    unit.resolved = (contact.started_ms, contact_id, contact.ended_ms)
                    self.resolved.append(unit.resolved)
        self.resolved.sort()
        for index in range(len(self.runs)):
            self._journey_at(key, index, funnels, windows.escalation_window_ms)
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
            self.remove_link(event, lambda _: 0)  # `keyed.count_bytes` counts afresh
        self._escalations.clear()  # nothing kept can reach back there
        self._summarize_pending()
        return dropped or bool(old_links)
