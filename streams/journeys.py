"""Journeys of one key, computed from the key's distinct events: pure functions, no Kafka.

Everything here is a function of the *set* of events (sorted by time, then event_id, before
use), so arrival order and duplicates cannot change a result, and a late event simply means
computing again. The rules are those of docs/decisions.md, "Metric semantics".
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from operator import itemgetter

from cxpulse.schemas.events import (
    ContactStarted,
    Event,
    HelpRequested,
    OrderPlaced,
    PortalEvent,
    type_name,
)
from cxpulse.schemas.validate import event_time_ms
from cxpulse.streams.contacts import Contact
from cxpulse.streams.driver_facts import Fact, driver_facts
from cxpulse.streams.funnels import FunnelSpec, StepSpec
from cxpulse.streams.windows import Windows


@dataclass(frozen=True, slots=True)
class FunnelProgress:
    reach_ms: tuple[int | None, ...]  # epoch ms each step was reached, None if not
    last_step: int  # index of the last reached step (step 0 is always reached)
    escalated_step: int | None  # last step reached at or before the escalation, if escalated


@dataclass(frozen=True, slots=True)
class Journey:
    key: str
    journey_id: str  # event_id of its first event: the identity
    start_ms: int
    last_activity_ms: int
    attrs: dict[str, str]
    sessions: tuple[str, ...]
    escalated_at_ms: int | None
    ordered_at_ms: int | None
    funnels: dict[str, FunnelProgress]
    anonymous: bool
    ttr_ms: int | None  # time to resolution: order, or first resolved contact after escalation
    facts: tuple[Fact, ...]  # what its events say about why it stopped (driver_facts.py)

    def closed(self, watermark_ms: int, gap_ms: int) -> bool:
        return watermark_ms >= self.last_activity_ms + gap_ms

    def outcome(self, watermark_ms: int, gap_ms: int) -> str:
        esc, order = self.escalated_at_ms, self.ordered_at_ms
        if order is not None and (esc is None or esc >= order):
            return "self_served"
        if esc is not None:
            return "escalated"
        return "abandoned" if self.closed(watermark_ms, gap_ms) else "in_progress"


def sessionize(timeline: Sequence[tuple[int, Event]], gap_ms: int) -> list[list[tuple[int, Event]]]:
    """Split the portal events of a `by_time` timeline into runs whose consecutive gaps are at
    most `gap_ms`."""
    runs: list[list[tuple[int, Event]]] = []
    for at, event in timeline:
        if not isinstance(event, PortalEvent):
            continue
        if runs and at - runs[-1][-1][0] <= gap_ms:
            runs[-1].append((at, event))
        else:
            runs.append([(at, event)])
    return runs


def funnel_progress(
    run: Sequence[tuple[int, Event]], funnel: FunnelSpec, escalated_at_ms: int | None
) -> FunnelProgress | None:
    """Reach times of each step, or None when step 1 is never reached."""
    first = _first_match(run, funnel.steps[0], None, None)
    if first is None:
        return None
    reach: list[int | None] = [first]
    deadline = first + funnel.window_ms
    for step in funnel.steps[1:]:
        previous = reach[-1]
        reach.append(None if previous is None else _first_match(run, step, previous, deadline))
    last = max(i for i, at in enumerate(reach) if at is not None)
    escalated_step = None
    if escalated_at_ms is not None:
        before = [i for i, at in enumerate(reach) if at is not None and at <= escalated_at_ms]
        escalated_step = max(before) if before else None
    return FunnelProgress(tuple(reach), last, escalated_step)


def _ttr(
    start: int,
    escalated_at: int | None,
    ordered_at: int | None,
    resolved: Sequence[tuple[int, str, int | None]],
) -> int | None:
    if ordered_at is not None and (escalated_at is None or escalated_at >= ordered_at):
        return ordered_at - start
    if escalated_at is None:
        return None
    index = bisect_left(resolved, escalated_at, key=itemgetter(0))
    return None if index == len(resolved) else resolved[index][2] - start  # type: ignore[operator]


def _first_match(
    run: Sequence[tuple[int, Event]], step: StepSpec, not_before: int | None, deadline: int | None
) -> int | None:
    for at, event in run:
        if not_before is not None and at < not_before:
            continue
        if deadline is not None and at > deadline:
            return None
        name = type_name(type(event))
        # Build the data dict only for events of the step's type (most events are not).
        if name == step.type and step.matches(name, _data(event), event.attrs):
            return at
    return None


def _data(event: Event) -> dict[str, object]:
    data = event.data
    return {field: getattr(data, field) for field in data.__struct_fields__}


def escalation_at(
    run: Sequence[tuple[int, Event]],
    sessions: tuple[str, ...],
    next_start: int | None,
    contact_starts: Sequence[int],
    links: Sequence[tuple[int, str]],
    escalation_window_ms: int,
) -> int | None:
    """When a run escalated: its first help request, or the first contact start of the key
    (sorted `contact_starts`) or linked to one of its sessions (sorted (time, session) `links`)
    after its start, within the window after its last event and before the next run starts."""
    start, last = run[0][0], run[-1][0]
    bound = last + escalation_window_ms
    if next_start is not None:
        bound = min(bound, next_start - 1)
    found = [at for at, e in run if isinstance(e, HelpRequested)][:1]
    index = bisect_right(contact_starts, start)
    if index < len(contact_starts) and contact_starts[index] <= bound:
        found.append(contact_starts[index])
    for at, session in links[bisect_right(links, start, key=itemgetter(0)) :]:
        if at > bound:
            break
        if session in sessions:
            found.append(at)
            break
    return min(found, default=None)


def journey_of(
    key: str,
    run: Sequence[tuple[int, Event]],
    next_start: int | None,
    contact_starts: Sequence[int],
    links: Sequence[tuple[int, str]],
    resolved: Sequence[tuple[int, str, int | None]],
    funnels: Sequence[FunnelSpec],
    escalation_window_ms: int,
) -> Journey:
    """One run's journey. Its neighbours enter only through `next_start` (the next run's start)
    and the key's sorted indexes: the times of its contacts' `cc.contact_started` events,
    (time, linked session) of the contacts linked to it, and (start, contact_id, end) of its
    resolved contacts (for TTR), so a run can be recomputed alone."""
    start, last = run[0][0], run[-1][0]
    sessions = tuple(sorted({e.session_id for _, e in run}))  # runs hold portal events
    escalated_at = escalation_at(
        run, sessions, next_start, contact_starts, links, escalation_window_ms
    )
    ordered_at = next((at for at, e in run if isinstance(e, OrderPlaced)), None)
    progress = {}
    for funnel in funnels:
        result = funnel_progress(run, funnel, escalated_at)
        if result is not None:
            progress[funnel.name] = result
    first = run[0][1]
    anonymous = isinstance(first, PortalEvent) and first.customer_id is None
    return Journey(
        key,
        first.event_id,
        start,
        last,
        dict(first.attrs),
        sessions,
        escalated_at,
        ordered_at,
        progress,
        anonymous,
        _ttr(start, escalated_at, ordered_at, () if anonymous else resolved),
        driver_facts(run),
    )


def resolved_index(contacts: Iterable[Contact]) -> list[tuple[int, str, int | None]]:
    """(start, contact_id, end) of the resolved, ended contacts, sorted: what TTR looks up."""
    return sorted(
        (c.started_ms, c.contact_id, c.ended_ms) for c in contacts if c.resolved and c.ended_ms
    )


def build_journeys(
    key: str,
    timeline: Sequence[tuple[int, Event]],
    links: Iterable[Event],
    funnels: Sequence[FunnelSpec],
    contacts: Sequence[Contact],
    windows: Windows,
) -> list[Journey]:
    """Every portal journey of a key, with escalation, order, TTR and funnel progress: the
    reference the journey stage's incremental state (`keystate.py`) is tested against.

    `timeline` is the key's events as `by_time` orders them; `contacts` are the key's assembled
    contacts (for TTR); anonymous journeys, whose contacts live under the customer's key, have
    no TTR (docs/decisions.md).
    """
    runs = sessionize(timeline, windows.gap_ms)
    starts = [at for at, e in timeline if isinstance(e, ContactStarted)]
    linked = sorted(
        (event_time_ms(e), e.data.linked_session_id)
        for e in links
        if isinstance(e, ContactStarted) and e.data.linked_session_id
    )
    resolved = resolved_index(contacts)
    return [
        journey_of(
            key,
            run,
            runs[i + 1][0][0] if i + 1 < len(runs) else None,
            starts,
            linked,
            resolved,
            funnels,
            windows.escalation_window_ms,
        )
        for i, run in enumerate(runs)
    ]
