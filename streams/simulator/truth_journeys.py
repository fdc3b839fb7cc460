"""Portal journeys in the ground truth: splitting, escalation, outcome, TTR, funnel progress,
and self-service containment over the journey rows.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from cxpulse.streams.simulator.truth_contacts import ContactFacts
from cxpulse.streams.simulator.truth_events import (
    DEFAULT_CONFIG,
    OUTCOMES,
    GroundTruthConfig,
    ParsedEvent,
    first_of_type,
    ratio,
)
from cxpulse.streams.simulator.truth_funnels import reach_times


@dataclass(slots=True)
class _Journey:
    """A run of one key's portal events with gaps <= gap; next_start_ms bounds its escalation."""

    key: str
    anonymous: bool
    events: list[ParsedEvent]
    next_start_ms: int | None = None

    @property
    def start_ms(self) -> int:
        return self.events[0].ms

    @property
    def last_ms(self) -> int:
        return self.events[-1].ms


def _split_journeys(portal_events: Sequence[ParsedEvent], gap_ms: int) -> list[_Journey]:
    """Split each key's sorted portal events where consecutive events are more than gap apart."""
    by_key: dict[str, list[ParsedEvent]] = defaultdict(list)
    for event in portal_events:
        by_key[event.key].append(event)
    journeys: list[_Journey] = []
    for key, events in by_key.items():
        runs: list[_Journey] = []
        for event in events:
            if runs and event.ms - runs[-1].last_ms <= gap_ms:
                runs[-1].events.append(event)
            else:
                runs.append(_Journey(key=key, anonymous=event.customer_id is None, events=[event]))
        for current, following in pairwise(runs):
            current.next_start_ms = following.start_ms
        journeys.extend(runs)
    return journeys


@dataclass(frozen=True, slots=True)
class _ContactIndex:
    """What journeys look up about contacts, every list sorted by time: cc.contact_started times
    by customer key and by linked_session_id (escalation), and resolved contacts as
    (started_ms, contact_id, ended_ms) by customer key (TTR)."""

    starts_by_key: dict[str, list[int]]
    starts_by_session: dict[str, list[int]]
    resolved_by_key: dict[str, list[tuple[int, str, int]]]


def _contact_index(
    cc_events: Sequence[ParsedEvent], facts: Sequence[ContactFacts]
) -> _ContactIndex:
    starts_by_key: dict[str, list[int]] = defaultdict(list)
    starts_by_session: dict[str, list[int]] = defaultdict(list)
    for event in cc_events:  # already sorted by time
        if event.type != "cc.contact_started":
            continue
        starts_by_key[event.key].append(event.ms)
        linked = event.data.get("linked_session_id")
        if linked:
            starts_by_session[str(linked)].append(event.ms)
    resolved_by_key: dict[str, list[tuple[int, str, int]]] = defaultdict(list)
    for fact in facts:  # already sorted by (started_ms, contact_id)
        if not fact.row["resolved"] or fact.ended_ms is None:
            continue
        entry = (fact.row["started_ms"], fact.row["contact_id"], fact.ended_ms)
        resolved_by_key[fact.key].append(entry)
    return _ContactIndex(starts_by_key, starts_by_session, resolved_by_key)


def _first_after(times: Sequence[int], after_ms: int) -> int | None:
    """The earliest time strictly after `after_ms` in a sorted list."""
    index = bisect_right(times, after_ms)
    return times[index] if index < len(times) else None


def _first_from(rows: Sequence[tuple[int, str, int]], from_ms: int) -> tuple[int, str, int] | None:
    """The first (started_ms, contact_id, ended_ms) that started at or after `from_ms`."""
    index = bisect_left(rows, from_ms, key=lambda row: row[0])
    return rows[index] if index < len(rows) else None


def _escalation_ms(
    journey: _Journey, sessions: Sequence[str], index: _ContactIndex, config: GroundTruthConfig
) -> int | None:
    """Earliest of: a help request in the journey; a cc.contact_started of the same customer key
    (customer journeys) or, for anonymous journeys, linked to one of its sessions, at t with
    start < t <= last + window and t < the next journey's start."""
    candidates = [e.ms for e in journey.events if e.type == "portal.help_requested"][:1]
    if journey.anonymous:
        time_lists = [index.starts_by_session.get(session, []) for session in sessions]
    else:
        time_lists = [index.starts_by_key.get(journey.key, [])]
    for times in time_lists:
        found = _first_after(times, journey.start_ms)
        if found is None or found > journey.last_ms + config.escalation_window_ms:
            continue
        if journey.next_start_ms is not None and found >= journey.next_start_ms:
            continue
        candidates.append(found)
    return min(candidates) if candidates else None


def _escalated_ttr_ms(journey: _Journey, escalated_at: int, index: _ContactIndex) -> int | None:
    """End of the first resolved contact of the same customer that started at or after the
    escalation, minus the journey start (anonymous journeys have no TTR: docs/decisions.md)."""
    if journey.anonymous:
        return None
    hit = _first_from(index.resolved_by_key.get(journey.key, []), escalated_at)
    return hit[2] - journey.start_ms if hit is not None else None


def _journey_row(
    journey: _Journey,
    funnels: Sequence[Mapping[str, Any]],
    index: _ContactIndex,
    config: GroundTruthConfig,
    as_of_ms: int | None,
) -> dict[str, Any]:
    """Outcome, escalation, order, TTR and per-funnel progress of one journey."""
    sessions = sorted({e.session_id for e in journey.events if e.session_id is not None})
    escalated_at = _escalation_ms(journey, sessions, index, config)
    order = first_of_type(journey.events, "portal.order_placed")
    ordered_at = order.ms if order is not None else None
    closed = as_of_ms is None or as_of_ms >= journey.last_ms + config.gap_ms

    if escalated_at is not None and (ordered_at is None or escalated_at < ordered_at):
        outcome = "escalated"
    elif ordered_at is not None:
        outcome = "self_served"
    elif closed:
        outcome = "abandoned"
    else:
        outcome = "in_progress"

    ttr_ms: int | None = None
    if outcome == "self_served" and ordered_at is not None:
        ttr_ms = ordered_at - journey.start_ms
    elif outcome == "escalated" and escalated_at is not None:
        ttr_ms = _escalated_ttr_ms(journey, escalated_at, index)

    progress: dict[str, Any] = {}
    for funnel in funnels:
        reach = reach_times(journey.events, funnel)
        if reach[0] is None:
            continue
        reached = [k for k, t in enumerate(reach) if t is not None]
        escalated_step = None
        if outcome == "escalated" and escalated_at is not None:
            before = [k for k in reached if (reach[k] or 0) <= escalated_at]
            escalated_step = before[-1] if before else None
        progress[str(funnel["name"])] = {
            "reach_ms": reach,
            "last_step": reached[-1],
            "escalated_step": escalated_step,
        }

    return {
        "key": journey.key,
        "journey_id": journey.events[0].event_id,
        "start_ms": journey.start_ms,
        "last_activity_ms": journey.last_ms,
        "closed": closed,
        "outcome": outcome,
        "escalated_at_ms": escalated_at,
        "ordered_at_ms": ordered_at,
        "attrs": dict(journey.events[0].attrs),
        "sessions": sessions,
        "ttr_ms": ttr_ms,
        "funnels": progress,
    }


def journey_rows(
    portal_events: Sequence[ParsedEvent],
    cc_events: Sequence[ParsedEvent],
    contacts: Sequence[ContactFacts],
    funnels: Sequence[Mapping[str, Any]],
    config: GroundTruthConfig,
    as_of_ms: int | None,
) -> list[dict[str, Any]]:
    """One row per portal journey, sorted by (key, start); `contacts` as `contact_facts` gives."""
    index = _contact_index(cc_events, contacts)
    rows = [
        _journey_row(journey, funnels, index, config, as_of_ms)
        for journey in _split_journeys(portal_events, config.gap_ms)
    ]
    rows.sort(key=lambda row: (row["key"], row["start_ms"]))
    return rows


def summarize_containment(
    journeys: Iterable[Mapping[str, Any]], config: GroundTruthConfig = DEFAULT_CONFIG
) -> dict[str, Any]:
    """Containment over journey rows (every portal journey, in a funnel or not). Outcome counts
    cover all rows; the rate, cost and savings only closed ones (`closed_*` are their counts)."""
    count = 0
    closed = 0
    outcomes = dict.fromkeys(OUTCOMES, 0)
    closed_outcomes = dict.fromkeys(OUTCOMES, 0)
    for journey in journeys:
        count += 1
        outcomes[journey["outcome"]] += 1
        if journey["closed"]:
            closed += 1
            closed_outcomes[journey["outcome"]] += 1
    self_served = closed_outcomes["self_served"]
    escalated = closed_outcomes["escalated"]
    return {
        "journeys": count,
        "closed": closed,
        **outcomes,
        "closed_self_served": self_served,
        "closed_escalated": escalated,
        "containment_rate": ratio(self_served, closed),
        "cost_to_serve": escalated * config.assisted_cost + self_served * config.self_service_cost,
        "savings": self_served * (config.assisted_cost - config.self_service_cost),
    }
