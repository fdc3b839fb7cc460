"""Contacts of one customer key, assembled from its `cc.*` events: pure functions, no Kafka.

A contact is the events of one contact_id; it counts once its `cc.contact_started` is known, in
the bucket of that start. Whatever the arrival order, the first event of each kind (by time,
then event_id) decides; follow-up flags (IVR containment, FCR: `Windows`, by default 24 h and
7 d) look at the other contacts of the same customer and turn final when the watermark passes
their window. The rules are those of docs/decisions.md, "Metric semantics".
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, tzinfo
from typing import Any

from cxpulse.schemas.events import (
    Abandoned,
    Answered,
    ContactEnded,
    ContactEvent,
    ContactStarted,
    Event,
    IvrCompleted,
    Queued,
    SurveySubmitted,
    Transferred,
)
from cxpulse.streams.windows import Windows


@dataclass(frozen=True)
class Shift:
    name: str
    start: time
    end: time  # exclusive; 00:00 means midnight at the end of the day

    def contains(self, at: time) -> bool:
        if self.start < self.end:
            return self.start <= at < self.end
        return at >= self.start or at < self.end  # wraps past midnight


@dataclass(frozen=True)
class ShiftTable:
    """Named local-time ranges of one time zone; the first that contains a time wins."""

    shifts: tuple[Shift, ...]
    zone: tzinfo = UTC

    def name_at(self, epoch_ms: int) -> str:
        local = datetime.fromtimestamp(epoch_ms / 1000, self.zone).time()
        return next((s.name for s in self.shifts if s.contains(local)), "")

    @classmethod
    def parse(cls, text: str, zone: tzinfo = UTC) -> ShiftTable:
        """'day=08:00-16:00,evening=16:00-00:00,night=00:00-08:00'."""
        shifts = []
        for part in filter(None, (p.strip() for p in text.split(","))):
            name, sep, span = part.partition("=")
            start, dash, end = span.partition("-")
            if not sep or not dash:
                raise ValueError(f"shift {part!r} is not name=HH:MM-HH:MM")
            shifts.append(Shift(name.strip(), time.fromisoformat(start), time.fromisoformat(end)))
        return cls(tuple(shifts), zone)


@dataclass(frozen=True, slots=True)
class Contact:
    contact_id: str
    customer_id: str
    started_ms: int
    channel: str
    linked_session_id: str | None
    queue: str | None
    team: str | None
    queued_ms: int | None
    answered_ms: int | None
    abandoned_ms: int | None
    ended_ms: int | None
    transfers: int
    ivr_outcome: str | None
    resolved: bool
    part_shipped: bool
    csat: int | None
    nps: int | None
    ces: int | None
    repeat_in_ivr_followup: bool  # another contact of the customer within the IVR follow-up
    repeat_in_fcr_window: bool  # another contact of the customer within the FCR window
    attrs: dict[str, str]

    @property
    def queued(self) -> bool:
        return self.queued_ms is not None

    @property
    def answered(self) -> bool:
        return self.queued_ms is not None and self.answered_ms is not None

    @property
    def abandoned(self) -> bool:
        return (
            self.queued_ms is not None
            and not self.answered
            and self.abandoned_ms is not None
            and self.abandoned_ms >= self.queued_ms
        )

    @property
    def wait_ms(self) -> int | None:
        if self.queued_ms is None:
            return None
        if self.answered:
            return self.answered_ms - self.queued_ms  # type: ignore[operator]
        if self.abandoned:
            return self.abandoned_ms - self.queued_ms  # type: ignore[operator]
        return None

    @property
    def handle_ms(self) -> int | None:
        if not self.answered or self.ended_ms is None:
            return None
        return self.ended_ms - self.answered_ms  # type: ignore[operator]

    def row(self, watermark_ms: int, shifts: ShiftTable, windows: Windows) -> dict[str, Any]:
        """The measurable facts of the contact, as the `contacts` table stores them."""
        wait = self.wait_ms
        short = self.abandoned and wait is not None and wait < windows.short_abandon_ms
        return {
            "contact_id": self.contact_id,
            "customer_id": self.customer_id,
            "channel": self.channel,
            "queue": self.queue or "",
            "team": self.team or "",
            "shift": shifts.name_at(self.started_ms),
            "queued": int(self.queued),
            "answered": int(self.answered),
            "abandoned": int(self.abandoned),
            "short_abandoned": int(short),
            "answered_within_sl": int(
                self.answered and wait is not None and wait <= windows.service_level_ms
            ),
            "wait_ms": wait,
            "handle_ms": self.handle_ms,
            "transferred": int(self.answered and self.transfers > 0),
            "transfers": self.transfers,
            "ivr_outcome": self.ivr_outcome or "",
            "ivr_contained": int(
                self.ivr_outcome == "contained" and not self.repeat_in_ivr_followup
            ),
            "ivr_final": int(watermark_ms >= self.started_ms + windows.ivr_followup_ms),
            "resolved": int(self.resolved),
            "first_contact_resolved": int(self.resolved and not self.repeat_in_fcr_window),
            "fcr_final": int(watermark_ms >= self.started_ms + windows.fcr_window_ms),
            "part_shipped": int(self.part_shipped),
            "csat": self.csat,
            "nps": self.nps,
            "ces": self.ces,
            "linked_session_id": self.linked_session_id or "",
            "attrs": self.attrs,
        }

    def next_due_ms(self, watermark_ms: int, windows: Windows) -> int | None:
        """When this contact's row next changes by time alone (a follow-up window ends)."""
        pending = [
            self.started_ms + window
            for window in (windows.ivr_followup_ms, windows.fcr_window_ms)
            if watermark_ms < self.started_ms + window
        ]
        return min(pending, default=None)


def _first(events: Sequence[tuple[int, Event]], kind: type) -> tuple[int, Any] | None:
    return next(((at, e) for at, e in events if isinstance(e, kind)), None)


def contact_start(items: Sequence[tuple[int, Event]]) -> tuple[int, ContactStarted] | None:
    """A contact's start: its first `cc.contact_started` (items sorted as `by_time` does)."""
    return _first(items, ContactStarted)


def contact_of(
    contact_id: str,
    items: Sequence[tuple[int, Event]],
    started: tuple[int, ContactStarted],
    start_times: Sequence[int],
    windows: Windows,
) -> Contact:
    """One contact from its events (sorted as `by_time` does) and its start. The other
    contacts of the customer enter only through the sorted start times of all of them (the
    follow-up flags), so a contact can be recomputed alone."""
    start_ms, first = started

    def repeated_within(window_ms: int) -> bool:
        """Another contact of the customer started in (start, start + window]."""
        index = bisect_right(start_times, start_ms)
        return index < len(start_times) and start_times[index] <= start_ms + window_ms

    queued = _first(items, Queued)
    answered = _first(items, Answered)
    abandoned = _first(items, Abandoned)
    ended = _first(items, ContactEnded)
    ivr = _first(items, IvrCompleted)
    surveys = [e for _, e in items if isinstance(e, SurveySubmitted)]
    survey = surveys[-1].data if surveys else None
    return Contact(
        contact_id=contact_id,
        customer_id=first.customer_id,
        started_ms=start_ms,
        channel=first.data.channel,
        linked_session_id=first.data.linked_session_id,
        queue=queued[1].data.queue if queued else None,
        team=answered[1].data.team if answered else None,
        queued_ms=queued[0] if queued else None,
        answered_ms=answered[0] if answered else None,
        abandoned_ms=abandoned[0] if abandoned else None,
        ended_ms=ended[0] if ended else None,
        transfers=sum(1 for _, e in items if isinstance(e, Transferred)),
        ivr_outcome=ivr[1].data.outcome if ivr else None,
        resolved=bool(ended and ended[1].data.resolved),
        part_shipped=bool(ended and ended[1].data.part_shipped),
        csat=survey.csat if survey else None,
        nps=survey.nps if survey else None,
        ces=survey.ces if survey else None,
        repeat_in_ivr_followup=repeated_within(windows.ivr_followup_ms),
        repeat_in_fcr_window=repeated_within(windows.fcr_window_ms),
        attrs=dict(first.attrs),
    )


def build_contacts(timeline: Sequence[tuple[int, Event]], windows: Windows) -> list[Contact]:
    """Every contact of a customer key that has a `cc.contact_started`, in start order: the
    reference the journey stage's incremental state (`keystate.py`) is tested against.

    `timeline` is the key's events as `by_time` orders them.
    """
    by_contact: dict[str, list[tuple[int, Event]]] = {}
    for at, event in timeline:
        if isinstance(event, ContactEvent):
            by_contact.setdefault(event.contact_id, []).append((at, event))
    starts = sorted(
        (started[0], contact_id, items, started)
        for contact_id, items in by_contact.items()
        if (started := contact_start(items)) is not None
    )
    start_times = [s[0] for s in starts]
    return [
        contact_of(cid, items, started, start_times, windows) for _, cid, items, started in starts
    ]


DEFAULT_SHIFTS = "day=08:00-16:00,evening=16:00-00:00,night=00:00-08:00"


def default_shifts() -> ShiftTable:
    return ShiftTable.parse(DEFAULT_SHIFTS)
