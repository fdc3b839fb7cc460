"""Contacts in the ground truth: one row of facts per contact, and the contact-center KPIs."""

from __future__ import annotations

from bisect import bisect_right
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cxpulse.streams.simulator.truth_events import (
    GroundTruthConfig,
    ParsedEvent,
    first_of_type,
    ratio,
)


@dataclass(frozen=True, slots=True)
class ContactFacts:
    """A contact row plus what journeys need to look it up (key, end)."""

    key: str
    ended_ms: int | None
    row: dict[str, Any]


def contact_facts(
    cc_events: Sequence[ParsedEvent], config: GroundTruthConfig, as_of_ms: int | None
) -> list[ContactFacts]:
    """One row per contact_id (under its customer's key) that has a cc.contact_started."""
    groups: dict[tuple[str, str], list[ParsedEvent]] = defaultdict(list)
    for event in cc_events:
        groups[(event.key, str(event.contact_id))].append(event)

    started_by_key: dict[str, list[int]] = defaultdict(list)
    contacts: list[tuple[str, str, list[ParsedEvent], ParsedEvent]] = []
    for (key, contact_id), events in groups.items():
        started = first_of_type(events, "cc.contact_started")
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
        queued = first_of_type(events, "cc.queued")
        answered_ev = first_of_type(events, "cc.answered")
        abandoned_ev = first_of_type(events, "cc.abandoned")
        ended = first_of_type(events, "cc.contact_ended")
        ivr = first_of_type(events, "cc.ivr_completed")
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
            ContactFacts(
                key=key,
                ended_ms=ended.ms if ended is not None else None,
                row=row,
            )
        )
    facts.sort(key=lambda f: (f.row["started_ms"], f.row["contact_id"], f.key))
    return facts


#: Contact rows' flags that count as they are, and every count the KPIs are ratios of.
FLAGS = ("queued", "answered", "abandoned", "short_abandoned", "answered_within_sl",
         "transferred", "ivr_contained", "resolved", "first_contact_resolved")  # fmt: skip
COUNTS = ("contacts", "queued", "answered", "abandoned", "short_abandoned", "answered_within_sl",
          "transferred", "handled", "ivr_contacts", "ivr_contained", "zero_out", "resolved",
          "first_contact_resolved", "csat_responses", "nps_responses", "ces_responses")  # fmt: skip


def summarize_kpis(contacts: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Contact-center KPIs over contact rows (filter them first for a range, queue, team...),
    as ratios of counts and sums, never averages of averages."""
    counts = dict.fromkeys(COUNTS, 0)
    wait_answered_ms = 0
    handle_ms = 0
    satisfied = promoters = detractors = ces_sum = 0
    fcr_final = ivr_final = True
    for contact in contacts:
        counts["contacts"] += 1
        for flag in FLAGS:
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
        "service_level": ratio(counts["answered_within_sl"], offered),
        "asa_seconds": ratio(wait_answered_ms, counts["answered"] * 1000),
        "abandonment_rate": ratio(counts["abandoned"], counts["queued"]),
        "aht_seconds": ratio(handle_ms, counts["handled"] * 1000),
        "transfer_rate": ratio(counts["transferred"], counts["answered"]),
        "ivr_containment_rate": ratio(counts["ivr_contained"], counts["ivr_contacts"]),
        "zero_out_rate": ratio(counts["zero_out"], counts["ivr_contacts"]),
        "fcr_rate": ratio(counts["first_contact_resolved"], counts["resolved"]),
        "fcr_final": fcr_final,
        "ivr_final": ivr_final,
        "csat": ratio(satisfied, counts["csat_responses"]),
        "nps": ratio(100 * (promoters - detractors), counts["nps_responses"]),
        "ces": ratio(ces_sum, counts["ces_responses"]),
        "counts": counts,
    }
