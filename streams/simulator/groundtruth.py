"""Exact final figures from a complete set of events: the independent reference implementation.

Why it exists: the streaming pipeline computes journeys, funnels, containment and contact-center
KPIs incrementally, per key, in Faust state and ClickHouse snapshots. To know that it is right we
need the same numbers computed a second, boring way: this module recomputes them in one batch pass
straight from design section 4 and "Metric semantics" in docs/decisions.md, and imports nothing
else from cxpulse, so a bug in shared code cannot hide in both. Clarity wins over speed: sort once,
group by key, bisect in sorted lists (a million events in about 20 s, nothing quadratic).

Rules that are easy to get wrong (all in docs/decisions.md, "Metric semantics"):
- "within W after t" is the half-open interval (t, t + W]; events are ordered by (time, event_id).
- Journey key = customer_id when non-empty ("~" + it when it starts "s:" or "~"), else "s:" +
  session_id, decided per event.
- A gap of exactly `gap` keeps portal events in one journey; gap + 1 ms splits it.
- Step k counts an event at the time step k-1 was reached (even the same event); window from step 1.
- Escalation = help request in the journey, or a contact start t with start < t <= last + 72 h and
  t < the key's next journey start; a contact start exactly at the next start escalates neither.
- Escalation at the same time as the order is self_served; an open journey shows a known outcome.
- Closed iff watermark >= last activity + gap; dropped = closed, not self_served, by last step.
- Escalated at step = last step reached at or before the escalation time.
- Medians are the lower median sorted[(n - 1) // 2] (ClickHouse quantileExactLow(0.5)).
- answered requires queued; abandoned requires abandoned_at >= queued_at; short = wait < 5 s;
  within service level = wait <= 20 s.
- IVR containment / FCR look for another contact of the same customer in (start, start + W].
- The last survey of a contact counts; each of csat / nps / ces counts only when present.
- A ratio with a zero denominator is None.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

OUTCOMES = ("self_served", "escalated", "abandoned", "in_progress")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)
_FRACTION = re.compile(r"[T ]\d\d:\d\d:\d\d\.(\d+)")
_DEFAULT_WINDOW_SECONDS = 24 * 3600


@dataclass(frozen=True)
class GroundTruthConfig:
    """The bracketed defaults of design section 4; tests shrink or move them to pin edges."""

    gap_ms: int = 30 * 60_000  # portal journey inactivity gap
    escalation_window_ms: int = 72 * 3_600_000
    ivr_followup_ms: int = 24 * 3_600_000
    fcr_window_ms: int = 7 * 24 * 3_600_000
    short_abandon_ms: int = 5_000
    service_level_ms: int = 20_000
    assisted_cost: float = 7.00
    self_service_cost: float = 0.10


# --------------------------------------------------------------------------- parsing


def epoch_ms(occurred_at: str) -> int:
    """RFC 3339 text to epoch milliseconds with integer arithmetic, so no float can round a
    boundary (a gap of exactly 30 min must stay exactly 1,800,000 ms).

    The contract's resolution (docs/decisions.md): read to the microsecond, a 7th fractional
    digit of 5 or more rounding up, then the milliseconds truncated."""
    # RFC 3339 allows a lower-case "t" and "z"; fromisoformat wants them upper case.
    text = occurred_at.upper()
    round_up = False
    fraction = _FRACTION.search(text)
    if fraction is not None and len(fraction.group(1)) > 6:
        round_up = fraction.group(1)[6] >= "5"
        text = text[: fraction.start(1) + 6] + text[fraction.end(1) :]
    stamp = datetime.fromisoformat(text)
    if stamp.tzinfo is None:
        raise ValueError(f"occurred_at has no UTC offset: {occurred_at!r}")
    if round_up:
        stamp += timedelta(microseconds=1)
    return (stamp - _EPOCH) // _ONE_MS


def journey_key(customer_id: str | None, session_id: str | None) -> str:
    """customer_id when known, else the session (decided per event, docs/decisions.md); a
    customer id starting "s:" or "~" is escaped with "~" so it never names a session."""
    if customer_id:
        escape = customer_id[:2] == "s:" or customer_id[:1] == "~"
        return "~" + customer_id if escape else customer_id
    return f"s:{session_id or ''}"


@dataclass(frozen=True, slots=True)
class _Event:
    """One accepted event with its time already in epoch ms."""

    ms: int
    event_id: str
    type: str
    key: str
    customer_id: str | None
    session_id: str | None
    contact_id: str | None
    attrs: Mapping[str, Any]
    data: Mapping[str, Any]


def _parse(events: Iterable[Mapping[str, Any]]) -> list[_Event]:
    """Drop duplicate event_ids (identical copies) and sort by (time, event_id), once."""
    unique: dict[str, Mapping[str, Any]] = {}
    for raw in events:
        unique.setdefault(str(raw["event_id"]), raw)
    parsed = [
        _Event(
            ms=epoch_ms(raw["occurred_at"]),
            event_id=event_id,
            type=str(raw["type"]),
            key=journey_key(raw.get("customer_id"), raw.get("session_id")),
            customer_id=raw.get("customer_id") or None,
            session_id=raw.get("session_id"),
            contact_id=raw.get("contact_id"),
            attrs=raw.get("attrs") or {},
            data=raw.get("data") or {},
        )
        for event_id, raw in unique.items()
    ]
    parsed.sort(key=lambda e: (e.ms, e.event_id))
    return parsed


def _first(events: Sequence[_Event], event_type: str) -> _Event | None:
    """The first event of a type in an already sorted list."""
    return next((e for e in events if e.type == event_type), None)


def _ratio(numerator: float, denominator: float) -> float | None:
    """A ratio whose denominator is 0 is null (design section 8)."""
    return None if denominator == 0 else numerator / denominator


def _lower_median(values: Sequence[int]) -> int | None:
    """sorted[(n - 1) // 2]: an actual observation, like ClickHouse quantileExactLow(0.5)."""
    if not values:
        return None
    return sorted(values)[(len(values) - 1) // 2]


# --------------------------------------------------------------------------- funnels


def _same_value(actual: Any, expected: Any) -> bool:
    """Exact equality, except that a bool never equals a number (True is not 1 in JSON)."""
    if isinstance(actual, bool) or isinstance(expected, bool):
        return type(actual) is type(expected) and actual == expected
    return bool(actual == expected)


def _fields_match(fields: Mapping[str, Any], wanted: Mapping[str, Any] | None) -> bool:
    """Every listed field present with exactly that value; a missing field never matches."""
    return all(
        name in fields and _same_value(fields[name], value)
        for name, value in (wanted or {}).items()
    )


def step_matches(
    event_type: str, data: Mapping[str, Any], attrs: Mapping[str, Any], step: Mapping[str, Any]
) -> bool:
    """Whether an event satisfies a funnel step's match on type, data and attrs fields."""
    return (
        event_type == step["type"]
        and _fields_match(data, step.get("data"))
        and _fields_match(attrs, step.get("attrs"))
    )


def _reach_times(events: Sequence[_Event], funnel: Mapping[str, Any]) -> list[int | None]:
    """Reach time of every step: step 1 at its first match, step k at the earliest match with
    time >= reach(k-1) and <= reach(1) + window. The same event may reach several steps."""
    steps = funnel["steps"]
    reach: list[int | None] = [None] * len(steps)
    window_ms = int(funnel.get("conversion_window_seconds", _DEFAULT_WINDOW_SECONDS)) * 1000
    previous: int | None = None
    limit = 0
    for index, step in enumerate(steps):
        found: int | None = None
        for event in events:
            if previous is not None and event.ms < previous:
                continue
            if previous is not None and event.ms > limit:
                break
            if step_matches(event.type, event.data, event.attrs, step):
                found = event.ms
                break
        if found is None:
            break
        reach[index] = found
        if index == 0:
            limit = found + window_ms
        previous = found
    return reach


def _step_name(step: Mapping[str, Any] | str) -> str:
    return step if isinstance(step, str) else str(step["name"])


# --------------------------------------------------------------------------- contacts


@dataclass(frozen=True, slots=True)
class _ContactFacts:
    """A contact row plus what journeys need to look it up (key, end)."""

    key: str
    ended_ms: int | None
    row: dict[str, Any]


def _contact_facts(
    cc_events: Sequence[_Event], config: GroundTruthConfig, as_of_ms: int | None
) -> list[_ContactFacts]:
    """One row per contact_id (under its customer's key) that has a cc.contact_started."""
    groups: dict[tuple[str, str], list[_Event]] = defaultdict(list)
    for event in cc_events:
        groups[(event.key, str(event.contact_id))].append(event)

    started_by_key: dict[str, list[int]] = defaultdict(list)
    contacts: list[tuple[str, str, list[_Event], _Event]] = []
    for (key, contact_id), events in groups.items():
        started = _first(events, "cc.contact_started")
        if started is None:
            continue  # not counted until its start arrives
        contacts.append((key, contact_id, events, started))
        started_by_key[key].append(started.ms)
    for starts in started_by_key.values():
        starts.sort()

    def repeated_within(key: str, start_ms: int, window_ms: int) -> bool:
        """Another contact of the same customer started in (start, start + window]."""
        starts = started_by_key[key]
        index = bisect_right(starts, start_ms)
        return index < len(starts) and starts[index] <= start_ms + window_ms

    facts = []
    for key, contact_id, events, started in contacts:
        queued = _first(events, "cc.queued")
        answered_ev = _first(events, "cc.answered")
        abandoned_ev = _first(events, "cc.abandoned")
        ended = _first(events, "cc.contact_ended")
        ivr = _first(events, "cc.ivr_completed")
        surveys = [e for e in events if e.type == "cc.survey_submitted"]
        survey = surveys[-1].data if surveys else {}

        is_queued = queued is not None
        answered = queued is not None and answered_ev is not None
        abandoned = (
            queued is not None
            and not answered
            and abandoned_ev is not None
            and abandoned_ev.ms >= queued.ms
        )
        wait_ms: int | None = None
        if queued is not None and answered and answered_ev is not None:
            wait_ms = answered_ev.ms - queued.ms
        elif queued is not None and abandoned and abandoned_ev is not None:
            wait_ms = abandoned_ev.ms - queued.ms
        handle_ms = (
            ended.ms - answered_ev.ms
            if answered and ended is not None and answered_ev is not None
            else None
        )
        ivr_outcome = ivr.data.get("outcome") if ivr is not None else None
        resolved = ended is not None and ended.data.get("resolved") is True
        start = started.ms
        row: dict[str, Any] = {
            "contact_id": contact_id,
            "customer_id": started.customer_id,
            "started_ms": start,
            "channel": started.data.get("channel"),
            "queue": queued.data.get("queue") if queued is not None else None,
            "team": answered_ev.data.get("team") if answered_ev is not None else None,
            "queued": is_queued,
            "answered": answered,
            "abandoned": abandoned,
            "short_abandoned": abandoned
            and wait_ms is not None
            and wait_ms < config.short_abandon_ms,
            "answered_within_sl": answered
            and wait_ms is not None
            and wait_ms <= config.service_level_ms,
            "wait_ms": wait_ms,
            "handle_ms": handle_ms,
            "transferred": answered and any(e.type == "cc.transferred" for e in events),
            "ivr_outcome": ivr_outcome,
            "ivr_contained": ivr_outcome == "contained"
            and not repeated_within(key, start, config.ivr_followup_ms),
            "ivr_final": as_of_ms is None or as_of_ms >= start + config.ivr_followup_ms,
            "resolved": resolved,
            "first_contact_resolved": resolved
            and not repeated_within(key, start, config.fcr_window_ms),
            "fcr_final": as_of_ms is None or as_of_ms >= start + config.fcr_window_ms,
            "csat": survey.get("csat"),
            "nps": survey.get("nps"),
            "ces": survey.get("ces"),
            "attrs": dict(started.attrs),
        }
        facts.append(
            _ContactFacts(
                key=key,
                ended_ms=ended.ms if ended is not None else None,
                row=row,
            )
        )
    facts.sort(key=lambda f: (f.row["started_ms"], f.row["contact_id"], f.key))
    return facts


# --------------------------------------------------------------------------- journeys


@dataclass(slots=True)
class _Journey:
    """A run of one key's portal events with gaps <= gap; next_start_ms bounds its escalation."""

    key: str
    anonymous: bool
    events: list[_Event]
    next_start_ms: int | None = None

    @property
    def start_ms(self) -> int:
        return self.events[0].ms

    @property
    def last_ms(self) -> int:
        return self.events[-1].ms


def _split_journeys(portal_events: Sequence[_Event], gap_ms: int) -> list[_Journey]:
    """Split each key's sorted portal events where consecutive events are more than gap apart."""
    by_key: dict[str, list[_Event]] = defaultdict(list)
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


def _contact_index(cc_events: Sequence[_Event], facts: Sequence[_ContactFacts]) -> _ContactIndex:
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
    order = _first(journey.events, "portal.order_placed")
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
        reach = _reach_times(journey.events, funnel)
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


# --------------------------------------------------------------------------- aggregation


def summarize_funnel(
    journeys: Iterable[Mapping[str, Any]],
    funnel_name: str,
    steps: Sequence[Mapping[str, Any] | str],
) -> dict[str, Any]:
    """Funnel summary over journey rows (filter them first for a time range or a segment): only
    rows that reached step 1 of the funnel count. `steps` are the funnel's steps or their names."""
    names = [_step_name(step) for step in steps]
    count = 0
    outcomes = dict.fromkeys(OUTCOMES, 0)
    reached = [0] * len(names)
    dropped = [0] * len(names)
    escalated = [0] * len(names)
    abandoned = [0] * len(names)
    to_reach: list[list[int]] = [[] for _ in names]
    for journey in journeys:
        progress = journey["funnels"].get(funnel_name)
        if progress is None:
            continue
        count += 1
        outcome = journey["outcome"]
        outcomes[outcome] += 1
        reach = progress["reach_ms"]
        for k, reached_at in enumerate(reach):
            if reached_at is not None:
                reached[k] += 1
                to_reach[k].append(reached_at - reach[0])
        last = progress["last_step"]
        if journey["closed"] and outcome != "self_served":
            dropped[last] += 1
        if outcome == "escalated" and progress["escalated_step"] is not None:
            escalated[progress["escalated_step"]] += 1
        if outcome == "abandoned":
            abandoned[last] += 1
    return {
        "journeys": count,
        "outcomes": outcomes,
        "steps": [
            {
                "step": name,
                "reached": reached[k],
                # Step 1 has no previous step: it is compared with itself (1.0, or None if 0).
                "conversion_from_previous": _ratio(reached[k], reached[max(k - 1, 0)]),
                "conversion_from_start": _ratio(reached[k], reached[0]),
                "dropped": dropped[k],
                "escalated": escalated[k],
                "abandoned": abandoned[k],
                "median_ms_to_reach": _lower_median(to_reach[k]),
            }
            for k, name in enumerate(names)
        ],
    }


def summarize_containment(
    journeys: Iterable[Mapping[str, Any]], config: GroundTruthConfig = GroundTruthConfig()
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
        "containment_rate": _ratio(self_served, closed),
        "cost_to_serve": escalated * config.assisted_cost + self_served * config.self_service_cost,
        "savings": self_served * (config.assisted_cost - config.self_service_cost),
    }


def summarize_kpis(contacts: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Contact-center KPIs over contact rows (filter them first for a range, queue, team...),
    as ratios of counts and sums, never averages of averages."""
    counts = dict.fromkeys(
        (
            "contacts",
            "queued",
            "answered",
            "abandoned",
            "short_abandoned",
            "answered_within_sl",
            "transferred",
            "handled",
            "ivr_contacts",
            "ivr_contained",
            "zero_out",
            "resolved",
            "first_contact_resolved",
            "csat_responses",
            "nps_responses",
            "ces_responses",
        ),
        0,
    )
    wait_answered_ms = 0
    handle_ms = 0
    satisfied = promoters = detractors = ces_sum = 0
    fcr_final = ivr_final = True
    for contact in contacts:
        counts["contacts"] += 1
        for flag in (
            "queued",
            "answered",
            "abandoned",
            "short_abandoned",
            "answered_within_sl",
            "transferred",
            "ivr_contained",
            "resolved",
            "first_contact_resolved",
        ):
            counts[flag] += bool(contact[flag])
        if contact["answered"]:
            wait_answered_ms += contact["wait_ms"]
            if contact["handle_ms"] is not None:
                counts["handled"] += 1
                handle_ms += contact["handle_ms"]
        if contact["ivr_outcome"] is not None:
            counts["ivr_contacts"] += 1
            counts["zero_out"] += contact["ivr_outcome"] == "zero_out"
            ivr_final = ivr_final and contact["ivr_final"]
        if contact["resolved"]:
            fcr_final = fcr_final and contact["fcr_final"]
        if contact["csat"] is not None:
            counts["csat_responses"] += 1
            satisfied += contact["csat"] >= 4
        if contact["nps"] is not None:
            counts["nps_responses"] += 1
            promoters += contact["nps"] >= 9
            detractors += contact["nps"] <= 6
        if contact["ces"] is not None:
            counts["ces_responses"] += 1
            ces_sum += contact["ces"]
    offered = counts["answered"] + counts["abandoned"] - counts["short_abandoned"]
    return {
        "service_level": _ratio(counts["answered_within_sl"], offered),
        "asa_seconds": _ratio(wait_answered_ms, counts["answered"] * 1000),
        "abandonment_rate": _ratio(counts["abandoned"], counts["queued"]),
        "aht_seconds": _ratio(handle_ms, counts["handled"] * 1000),
        "transfer_rate": _ratio(counts["transferred"], counts["answered"]),
        "ivr_containment_rate": _ratio(counts["ivr_contained"], counts["ivr_contacts"]),
        "zero_out_rate": _ratio(counts["zero_out"], counts["ivr_contacts"]),
        "fcr_rate": _ratio(counts["first_contact_resolved"], counts["resolved"]),
        "fcr_final": fcr_final,
        "ivr_final": ivr_final,
        "csat": _ratio(satisfied, counts["csat_responses"]),
        "nps": _ratio(100 * (promoters - detractors), counts["nps_responses"]),
        "ces": _ratio(ces_sum, counts["ces_responses"]),
        "counts": counts,
    }


# --------------------------------------------------------------------------- entry points


def compute_ground_truth(
    events: Iterable[Mapping[str, Any]],
    funnels: Sequence[Mapping[str, Any]],
    *,
    as_of_ms: int | None = None,
    config: GroundTruthConfig = GroundTruthConfig(),
) -> dict[str, Any]:
    """Every figure of design section 4 for a complete set of accepted events, as JSON-ready
    rows (journeys, contacts) and their aggregates. `as_of_ms` is the watermark (None: infinity);
    it decides closure and finality only, every given event is used."""
    parsed = _parse(events)
    portal = [e for e in parsed if e.type.startswith("portal.")]
    cc = [e for e in parsed if e.type.startswith("cc.")]

    facts = _contact_facts(cc, config, as_of_ms)
    index = _contact_index(cc, facts)
    journeys = [
        _journey_row(journey, funnels, index, config, as_of_ms)
        for journey in _split_journeys(portal, config.gap_ms)
    ]
    journeys.sort(key=lambda row: (row["key"], row["start_ms"]))
    contacts = [fact.row for fact in facts]
    return {
        "journeys": journeys,
        "contacts": contacts,
        "funnel_summary": {
            str(funnel["name"]): summarize_funnel(journeys, str(funnel["name"]), funnel["steps"])
            for funnel in funnels
        },
        "containment": summarize_containment(journeys, config),
        "kpis": summarize_kpis(contacts),
    }


def default_funnels_path() -> Path:
    """streams/funnels.yaml, next to the streams package."""
    return Path(__file__).resolve().parents[1] / "funnels.yaml"


def load_funnels(path: Path | str | None = None) -> list[dict[str, Any]]:
    """The `funnels` list of a funnels YAML file (default: streams/funnels.yaml). pyyaml is
    imported here so that the rest of the module works without it."""
    import yaml

    text = Path(path if path is not None else default_funnels_path()).read_text(encoding="utf-8")
    document = yaml.safe_load(text) or {}
    return list(document.get("funnels") or [])
