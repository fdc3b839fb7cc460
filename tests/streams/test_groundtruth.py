"""The ground truth, pinned rule by rule on small fixtures whose numbers are worked out by hand.

Every expected number below is written out, not computed: if a test and the module disagree, one
of them misreads design section 4 / docs/decisions.md "Metric semantics", and that is the point.
"""

from __future__ import annotations

import copy
import json
import random
from calendar import timegm
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from cxpulse.streams.simulator.groundtruth import compute_ground_truth
from cxpulse.streams.simulator.truth_contacts import summarize_kpis
from cxpulse.streams.simulator.truth_events import GroundTruthConfig, epoch_ms
from cxpulse.streams.simulator.truth_funnels import (
    default_funnels_path,
    load_funnels,
    summarize_funnel,
)
from cxpulse.streams.simulator.truth_journeys import summarize_containment

SEC = 1_000
MIN = 60 * SEC
HOUR = 60 * MIN
DAY = 24 * HOUR

# 2026-03-02T08:00:00Z, computed without the module under test.
T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
T0_MS = timegm((2026, 3, 2, 8, 0, 0)) * 1000
CET = timezone(timedelta(hours=1))

FUNNELS = load_funnels()
DEFAULT = "self_service"
# Indexes of the default funnel's steps.
STARTED, IDENTIFY, DIAGNOSE, TROUBLESHOOT, CHECKED, ELIGIBLE, ORDERED = range(7)


def iso(at_ms: int) -> str:
    """T0 + at_ms written in +01:00, so every test also exercises the offset."""
    return (T0 + timedelta(milliseconds=at_ms)).astimezone(CET).isoformat(timespec="milliseconds")


def portal(
    event_id: str,
    kind: str,
    at_ms: int,
    *,
    customer: str | None = "c1",
    session: str = "s1",
    attrs: dict[str, str] | None = None,
    **data: Any,
) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "schema_version": 1,
        "type": f"portal.{kind}",
        "occurred_at": iso(at_ms),
        "customer_id": customer,
        "session_id": session,
        "contact_id": None,
        "attrs": attrs if attrs is not None else {"device": "mobile"},
        "data": data,
    }


def cc(
    event_id: str, kind: str, at_ms: int, *, contact: str, customer: str = "c1", **data: Any
) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "schema_version": 1,
        "type": f"cc.{kind}",
        "occurred_at": iso(at_ms),
        "customer_id": customer,
        "session_id": None,
        "contact_id": contact,
        "attrs": {"region": "emea"},
        "data": data,
    }


def started(
    event_id: str,
    at_ms: int,
    *,
    contact: str,
    customer: str = "c1",
    channel: str = "voice",
    linked: str | None = None,
) -> dict[str, Any]:
    return cc(
        event_id,
        "contact_started",
        at_ms,
        contact=contact,
        customer=customer,
        channel=channel,
        reason="part_failure",
        linked_session_id=linked,
    )


def ended(
    event_id: str, at_ms: int, *, contact: str, customer: str = "c1", resolved: bool
) -> dict[str, Any]:
    return cc(
        event_id,
        "contact_ended",
        at_ms,
        contact=contact,
        customer=customer,
        resolved=resolved,
        wrap_code="w",
        part_shipped=False,
    )


def full_order(prefix: str, at_ms: int, customer: str, step_ms: int = MIN) -> list[dict[str, Any]]:
    """A journey through every step of the default funnel, one step per `step_ms`."""
    t = at_ms
    events = [portal(f"{prefix}-0", "session_started", t, customer=customer, entry="web")]
    for n, step in enumerate(("identify_device", "diagnose", "troubleshoot"), start=1):
        t += step_ms
        events.append(
            portal(
                f"{prefix}-{n}", "step_completed", t, customer=customer, step=step, outcome="fail"
            )
        )
    t += step_ms
    events.append(
        portal(
            f"{prefix}-4", "eligibility_checked", t, customer=customer, eligible=True, reason="r"
        )
    )
    t += step_ms
    events.append(
        portal(f"{prefix}-5", "order_placed", t, customer=customer, order_id="o", sku="k")
    )
    return events


def journeys_of(result: dict[str, Any], key: str) -> list[dict[str, Any]]:
    return [j for j in result["journeys"] if j["key"] == key]


def one_journey(result: dict[str, Any], key: str) -> dict[str, Any]:
    (journey,) = journeys_of(result, key)
    return journey


def contact(result: dict[str, Any], contact_id: str) -> dict[str, Any]:
    (row,) = [c for c in result["contacts"] if c["contact_id"] == contact_id]
    return row


def steps_column(summary: dict[str, Any], column: str) -> list[Any]:
    return [step[column] for step in summary["steps"]]


# --------------------------------------------------------------------------- time and loading


def test_epoch_ms_is_exact_integer_arithmetic_and_honours_offsets() -> None:
    assert epoch_ms("2026-03-02T08:00:00Z") == T0_MS
    assert epoch_ms("2026-03-02T09:00:00.001+01:00") == T0_MS + 1
    assert epoch_ms("2026-03-02T08:00:00.001999+00:00") == T0_MS + 1  # sub-ms is floored
    assert epoch_ms(iso(30 * MIN + 1)) == T0_MS + 30 * MIN + 1
    with pytest.raises(ValueError, match="offset"):
        epoch_ms("2026-03-02T08:00:00")


def test_load_funnels_reads_the_default_yaml() -> None:
    assert default_funnels_path().name == "funnels.yaml"
    (funnel,) = FUNNELS
    assert funnel["name"] == DEFAULT
    assert funnel["conversion_window_seconds"] == 86400
    assert [s["name"] for s in funnel["steps"]] == [
        "session_started",
        "identify_device",
        "diagnose",
        "troubleshoot",
        "eligibility_checked",
        "eligible",
        "order_placed",
    ]
    assert funnel["steps"][ELIGIBLE]["data"] == {"eligible": True}


# --------------------------------------------------------------------------- journeys


def test_gap_of_exactly_30_minutes_keeps_one_journey() -> None:
    result = compute_ground_truth(
        [
            portal("p1", "session_started", 0, entry="web"),
            portal("p2", "step_viewed", 30 * MIN, step="diagnose"),
        ],
        FUNNELS,
    )
    journey = one_journey(result, "c1")
    assert journey["journey_id"] == "p1"
    assert journey["start_ms"] == T0_MS
    assert journey["last_activity_ms"] == T0_MS + 30 * MIN


def test_gap_of_30_minutes_and_1_ms_splits_the_journey() -> None:
    result = compute_ground_truth(
        [
            portal("p1", "session_started", 0, entry="web"),
            portal("p2", "step_viewed", 30 * MIN + 1, step="diagnose"),
        ],
        FUNNELS,
    )
    first, second = journeys_of(result, "c1")
    assert (first["journey_id"], first["start_ms"], first["last_activity_ms"]) == (
        "p1",
        T0_MS,
        T0_MS,
    )
    assert (second["journey_id"], second["start_ms"]) == ("p2", T0_MS + 30 * MIN + 1)
    assert first["funnels"][DEFAULT]["reach_ms"][STARTED] == T0_MS
    assert second["funnels"] == {}  # no session_started: not in the funnel
    assert result["containment"]["journeys"] == 2
    assert result["funnel_summary"][DEFAULT]["journeys"] == 1


def test_journey_key_is_decided_per_event_and_sessions_and_attrs_are_kept() -> None:
    result = compute_ground_truth(
        [
            portal("p1", "session_started", 0, customer=None, session="s1", entry="web"),
            portal("p2", "step_viewed", MIN, session="s1", step="x", attrs={"device": "desktop"}),
            portal("p3", "step_viewed", 2 * MIN, session="s2", step="y", attrs={"device": "tv"}),
        ],
        FUNNELS,
    )
    anonymous = one_journey(result, "s:s1")
    known = one_journey(result, "c1")
    assert anonymous["sessions"] == ["s1"]
    assert (known["journey_id"], known["sessions"]) == ("p2", ["s1", "s2"])
    assert known["attrs"] == {"device": "desktop"}  # the journey's first event's attrs


def test_conversion_window_edge() -> None:
    mini = {
        "name": "mini",
        "conversion_window_seconds": 600,
        "steps": [
            {"name": "start", "type": "portal.session_started"},
            {"name": "diag", "type": "portal.step_viewed", "data": {"step": "diagnose"}},
        ],
    }
    events = [
        portal("a0", "session_started", 0, customer="ca", entry="web"),
        portal("a1", "step_viewed", 10 * MIN, customer="ca", step="diagnose"),
        portal("b0", "session_started", 0, customer="cb", entry="web"),
        portal("b1", "step_viewed", 10 * MIN + 1, customer="cb", step="diagnose"),
    ]
    result = compute_ground_truth(events, [mini])
    assert one_journey(result, "ca")["funnels"]["mini"] == {
        "reach_ms": [T0_MS, T0_MS + 10 * MIN],
        "last_step": 1,
        "escalated_step": None,
    }
    assert one_journey(result, "cb")["funnels"]["mini"]["reach_ms"] == [T0_MS, None]
    assert one_journey(result, "cb")["funnels"]["mini"]["last_step"] == 0
    assert steps_column(result["funnel_summary"]["mini"], "reached") == [2, 1]


def test_one_event_reaches_eligibility_checked_and_eligible() -> None:
    events = full_order("y", 0, "cy")[:5] + full_order("n", 0, "cn")[:4]
    events.append(portal("n-4", "eligibility_checked", 4 * MIN, customer="cn", eligible=False))
    result = compute_ground_truth(events, FUNNELS)
    yes = one_journey(result, "cy")["funnels"][DEFAULT]
    no = one_journey(result, "cn")["funnels"][DEFAULT]
    assert yes["reach_ms"][CHECKED] == yes["reach_ms"][ELIGIBLE] == T0_MS + 4 * MIN
    assert yes["last_step"] == ELIGIBLE
    assert no["reach_ms"][CHECKED] == T0_MS + 4 * MIN
    assert no["reach_ms"][ELIGIBLE] is None
    assert no["last_step"] == CHECKED


def test_a_step_matched_before_the_previous_step_does_not_count() -> None:
    result = compute_ground_truth(
        [
            portal("p1", "step_completed", 0, step="identify_device", outcome="pass"),
            portal("p2", "session_started", MIN, entry="web"),
            portal("p3", "step_completed", 2 * MIN, step="diagnose", outcome="pass"),
        ],
        FUNNELS,
    )
    progress = one_journey(result, "c1")["funnels"][DEFAULT]
    assert progress["reach_ms"][:3] == [T0_MS + MIN, None, None]
    assert progress["last_step"] == STARTED


# --------------------------------------------------------------------------- escalation


def test_help_requested_escalates_at_the_last_step_reached_before_it() -> None:
    events = [
        *full_order("h", 0, "c1")[:2],  # session_started at 0, identify_device at 1 min
        portal("h-help", "help_requested", 2 * MIN, via="chat"),
        portal("h-2", "step_completed", 3 * MIN, step="diagnose", outcome="pass"),
    ]
    journey = one_journey(compute_ground_truth(events, FUNNELS), "c1")
    assert journey["outcome"] == "escalated"
    assert journey["escalated_at_ms"] == T0_MS + 2 * MIN
    assert journey["funnels"][DEFAULT]["escalated_step"] == IDENTIFY
    assert journey["funnels"][DEFAULT]["last_step"] == DIAGNOSE


def test_contact_of_the_same_customer_within_72_hours_after_last_activity() -> None:
    events = []
    for customer, contact_at in (("in", 5 * MIN + 72 * HOUR), ("out", 5 * MIN + 72 * HOUR + 1)):
        events += [
            portal(f"{customer}-0", "session_started", 0, customer=customer, entry="web"),
            portal(f"{customer}-1", "step_viewed", 5 * MIN, customer=customer, step="diagnose"),
            started(f"{customer}-k", contact_at, contact=f"k-{customer}", customer=customer),
        ]
    result = compute_ground_truth(events, FUNNELS)
    inside, outside = one_journey(result, "in"), one_journey(result, "out")
    assert (inside["outcome"], inside["escalated_at_ms"]) == (
        "escalated",
        T0_MS + 5 * MIN + 72 * HOUR,
    )
    assert (outside["outcome"], outside["escalated_at_ms"]) == ("abandoned", None)


def test_contact_at_the_journey_start_does_not_escalate_it() -> None:
    events = [
        portal("p1", "session_started", 0, entry="web"),
        started("k1", 0, contact="k1"),
    ]
    assert one_journey(compute_ground_truth(events, FUNNELS), "c1")["outcome"] == "abandoned"


def test_linked_session_escalates_an_anonymous_journey() -> None:
    events = [
        portal("a0", "session_started", 0, customer=None, session="anon1", entry="web"),
        portal("b0", "session_started", 0, customer=None, session="anon2", entry="web"),
        started("k1", 10 * MIN, contact="k1", customer="c9", linked="anon1"),
        started("k2", 10 * MIN, contact="k2", customer="c9"),
    ]
    result = compute_ground_truth(events, FUNNELS)
    linked = one_journey(result, "s:anon1")
    assert (linked["outcome"], linked["escalated_at_ms"]) == ("escalated", T0_MS + 10 * MIN)
    assert linked["funnels"][DEFAULT]["escalated_step"] == STARTED
    assert one_journey(result, "s:anon2")["outcome"] == "abandoned"


def test_contact_after_the_next_journey_start_escalates_only_the_next_journey() -> None:
    events = [
        portal("a0", "session_started", 0, entry="web"),
        portal("a1", "step_viewed", 10 * MIN, step="diagnose"),
        portal("b0", "session_started", 2 * HOUR, entry="web"),
        started("k1", 3 * HOUR, contact="k1"),
        # Customer c3: a contact exactly at the next journey's start escalates neither journey.
        portal("c0", "session_started", 0, customer="c3", entry="web"),
        portal("d0", "session_started", 2 * HOUR, customer="c3", entry="web"),
        started("k3", 2 * HOUR, contact="k3", customer="c3"),
    ]
    result = compute_ground_truth(events, FUNNELS)
    first, second = journeys_of(result, "c1")
    assert (first["outcome"], first["escalated_at_ms"]) == ("abandoned", None)
    assert (second["outcome"], second["escalated_at_ms"]) == ("escalated", T0_MS + 3 * HOUR)
    assert [j["outcome"] for j in journeys_of(result, "c3")] == ["abandoned", "abandoned"]


def test_escalation_at_the_order_time_is_self_served_one_ms_earlier_escalated() -> None:
    events = [
        *full_order("t", 0, "tie"),  # order at 5 min
        portal("t-help", "help_requested", 5 * MIN, customer="tie", via="call"),
        *full_order("e", 0, "early"),
        portal("e-help", "help_requested", 5 * MIN - 1, customer="early", via="call"),
    ]
    result = compute_ground_truth(events, FUNNELS)
    tie, early = one_journey(result, "tie"), one_journey(result, "early")
    assert (tie["outcome"], tie["ordered_at_ms"], tie["escalated_at_ms"]) == (
        "self_served",
        T0_MS + 5 * MIN,
        T0_MS + 5 * MIN,
    )
    assert tie["ttr_ms"] == 5 * MIN
    assert tie["funnels"][DEFAULT]["escalated_step"] is None
    assert early["outcome"] == "escalated"
    assert early["funnels"][DEFAULT]["escalated_step"] == ELIGIBLE
    assert early["ttr_ms"] is None  # no resolved contact


def test_ttr_of_an_escalated_journey_is_the_first_resolved_contact_after_escalation() -> None:
    events = [
        portal("p0", "session_started", 0, entry="web"),
        portal("p1", "help_requested", 5 * MIN, via="call"),
        started("x0", 10 * MIN, contact="x"),
        ended("x1", 15 * MIN, contact="x", resolved=False),
        started("y0", 20 * MIN, contact="y"),
        ended("y1", 50 * MIN, contact="y", resolved=True),
        # Anonymous journey, resolved through a contact linked to its session.
        portal("a0", "session_started", 0, customer=None, session="anon", entry="web"),
        started("z0", 2 * MIN, contact="z", customer="c7", linked="anon"),
        ended("z1", 32 * MIN, contact="z", customer="c7", resolved=True),
    ]
    result = compute_ground_truth(events, FUNNELS)
    journey = one_journey(result, "c1")
    assert (journey["outcome"], journey["escalated_at_ms"]) == ("escalated", T0_MS + 5 * MIN)
    assert journey["ttr_ms"] == 50 * MIN
    anonymous = one_journey(result, "s:anon")
    # Anonymous journeys escalate through the linked session but have no TTR (decisions.md).
    assert (anonymous["escalated_at_ms"], anonymous["ttr_ms"]) == (T0_MS + 2 * MIN, None)


# --------------------------------------------------------------------------- closing


def test_abandoned_or_in_progress_depends_on_the_watermark() -> None:
    events = [
        portal("a0", "session_started", 0, entry="web"),
        portal("a1", "step_viewed", 5 * MIN, step="diagnose"),
        *full_order("o", 0, "c2"),  # order at 5 min, last activity 5 min
    ]
    before = compute_ground_truth(events, FUNNELS, as_of_ms=T0_MS + 35 * MIN - 1)
    at = compute_ground_truth(events, FUNNELS, as_of_ms=T0_MS + 35 * MIN)
    assert (one_journey(before, "c1")["closed"], one_journey(before, "c1")["outcome"]) == (
        False,
        "in_progress",
    )
    assert (one_journey(at, "c1")["closed"], one_journey(at, "c1")["outcome"]) == (
        True,
        "abandoned",
    )
    # An open journey that already ordered shows self_served.
    assert (one_journey(before, "c2")["closed"], one_journey(before, "c2")["outcome"]) == (
        False,
        "self_served",
    )
    containment = before["containment"]
    assert (containment["journeys"], containment["closed"], containment["in_progress"]) == (2, 0, 1)
    assert containment["self_served"] == 1
    assert containment["containment_rate"] is None
    assert containment["cost_to_serve"] == 0
    assert before["funnel_summary"][DEFAULT]["outcomes"] == {
        "self_served": 1,
        "escalated": 0,
        "abandoned": 0,
        "in_progress": 1,
    }
    assert steps_column(before["funnel_summary"][DEFAULT], "dropped") == [0] * 7


# --------------------------------------------------------------------------- funnel summary


def test_dropped_escalated_and_abandoned_at_step() -> None:
    events = [
        *full_order("a", 0, "ca")[:2],  # abandoned after identify_device
        *full_order("b", 0, "cb")[:3],  # help after diagnose
        portal("b-help", "help_requested", 3 * MIN, customer="cb", via="chat"),
        *full_order("c", 0, "cc"),  # self-served
        *full_order("d", 0, "cd")[:4],  # contact after diagnose, then troubleshoot
        started("d-k", 2 * MIN + 30 * SEC, contact="dk", customer="cd"),
        portal("e-help", "help_requested", 0, customer="ce", via="chat"),  # before step 1
        portal("e-0", "session_started", MIN, customer="ce", entry="web"),
    ]
    result = compute_ground_truth(events, FUNNELS)
    d = one_journey(result, "cd")
    assert (d["funnels"][DEFAULT]["escalated_step"], d["funnels"][DEFAULT]["last_step"]) == (
        DIAGNOSE,
        TROUBLESHOOT,
    )
    e = one_journey(result, "ce")
    assert (e["outcome"], e["funnels"][DEFAULT]["escalated_step"]) == ("escalated", None)

    summary = result["funnel_summary"][DEFAULT]
    assert summary["journeys"] == 5
    assert summary["outcomes"] == {
        "self_served": 1,
        "escalated": 3,
        "abandoned": 1,
        "in_progress": 0,
    }
    assert steps_column(summary, "step") == [s["name"] for s in FUNNELS[0]["steps"]]
    assert steps_column(summary, "reached") == [5, 4, 3, 2, 1, 1, 1]
    assert steps_column(summary, "dropped") == [1, 1, 1, 1, 0, 0, 0]
    assert steps_column(summary, "escalated") == [0, 0, 2, 0, 0, 0, 0]
    assert steps_column(summary, "abandoned") == [0, 1, 0, 0, 0, 0, 0]
    assert steps_column(summary, "conversion_from_previous") == pytest.approx(
        [1.0, 4 / 5, 3 / 4, 2 / 3, 1 / 2, 1.0, 1.0]
    )
    assert steps_column(summary, "conversion_from_start") == pytest.approx(
        [1.0, 0.8, 0.6, 0.4, 0.2, 0.2, 0.2]
    )


def test_median_time_to_reach_is_the_lower_median() -> None:
    events = []
    for n, (identify_s, diagnose_s) in enumerate(((10, 50), (20, 70), (30, None), (40, None))):
        customer = f"m{n}"
        events.append(portal(f"{customer}-0", "session_started", 0, customer=customer, entry="w"))
        events.append(
            portal(
                f"{customer}-1",
                "step_completed",
                identify_s * SEC,
                customer=customer,
                step="identify_device",
            )
        )
        if diagnose_s is not None:
            events.append(
                portal(
                    f"{customer}-2",
                    "step_completed",
                    diagnose_s * SEC,
                    customer=customer,
                    step="diagnose",
                )
            )
    summary = compute_ground_truth(events, FUNNELS)["funnel_summary"][DEFAULT]
    assert steps_column(summary, "median_ms_to_reach") == [0, 20_000, 50_000] + [None] * 4


def test_summarize_funnel_over_a_segment_of_rows() -> None:
    events = [
        portal("a0", "session_started", 0, customer="ca", attrs={"device": "mobile"}, entry="w"),
        portal("b0", "session_started", 0, customer="cb", attrs={"device": "desktop"}, entry="w"),
        *full_order("c", 0, "cc"),
    ]
    rows = compute_ground_truth(events, FUNNELS)["journeys"]
    mobile = [row for row in rows if row["attrs"]["device"] == "mobile"]
    summary = summarize_funnel(mobile, DEFAULT, [s["name"] for s in FUNNELS[0]["steps"]])
    assert summary["journeys"] == 2
    assert steps_column(summary, "reached") == [2, 1, 1, 1, 1, 1, 1]
    assert summarize_funnel([], DEFAULT, FUNNELS[0]["steps"])["steps"][0] == {
        "step": "session_started",
        "reached": 0,
        "conversion_from_previous": None,
        "conversion_from_start": None,
        "dropped": 0,
        "escalated": 0,
        "abandoned": 0,
        "median_ms_to_reach": None,
    }


# --------------------------------------------------------------------------- containment


def test_containment_and_cost_over_closed_portal_journeys() -> None:
    as_of = 2 * HOUR
    events = [
        portal("s1-0", "session_started", 0, customer="ss1", entry="w"),
        portal("s1-1", "order_placed", MIN, customer="ss1", order_id="o", sku="k"),
        portal("s2-0", "session_started", 0, customer="ss2", entry="w"),
        portal("s2-1", "order_placed", 2 * MIN, customer="ss2", order_id="o", sku="k"),
        portal("e-0", "session_started", 0, customer="esc", entry="w"),
        portal("e-1", "help_requested", MIN, customer="esc", via="chat"),
        portal("a-0", "session_started", 0, customer="ab", entry="w"),
        portal("a-1", "step_viewed", MIN, customer="ab", step="diagnose"),
        portal("n-0", "step_viewed", 0, customer="nf", step="diagnose"),  # not in the funnel
        portal("o-0", "session_started", as_of - 10 * MIN, customer="oss", entry="w"),
        portal("o-1", "order_placed", as_of - 5 * MIN, customer="oss", order_id="o", sku="k"),
        portal("i-0", "session_started", as_of - MIN, customer="open", entry="w"),
    ]
    result = compute_ground_truth(events, FUNNELS, as_of_ms=T0_MS + as_of)
    containment = result["containment"]
    assert {k: containment[k] for k in ("journeys", "closed", "closed_self_served")} == {
        "journeys": 7,
        "closed": 5,
        "closed_self_served": 2,
    }
    assert (
        containment["self_served"],
        containment["escalated"],
        containment["abandoned"],
        containment["in_progress"],
    ) == (3, 1, 2, 1)
    assert containment["containment_rate"] == pytest.approx(2 / 5)
    assert containment["cost_to_serve"] == pytest.approx(1 * 7.00 + 2 * 0.10)
    assert containment["savings"] == pytest.approx(2 * 6.90)
    assert result["funnel_summary"][DEFAULT]["journeys"] == 6

    b2b = summarize_containment(
        result["journeys"], GroundTruthConfig(assisted_cost=13.0, self_service_cost=0.5)
    )
    assert b2b["cost_to_serve"] == pytest.approx(13.0 + 2 * 0.5)
    assert b2b["savings"] == pytest.approx(2 * 12.5)


# --------------------------------------------------------------------------- contact KPIs


def queued_contact(
    name: str,
    *,
    customer: str,
    queue: str = "parts",
    answer_after: int | None = None,
    abandon_after: int | None = None,
    handle: int | None = None,
    resolved: bool = True,
) -> list[dict[str, Any]]:
    """Started at 0, queued at 1 s, then answered / abandoned `*_after` ms after queueing."""
    events = [
        started(f"{name}-0", 0, contact=name, customer=customer),
        cc(f"{name}-q", "queued", SEC, contact=name, customer=customer, queue=queue),
    ]
    if answer_after is not None:
        answered_at = SEC + answer_after
        events.append(
            cc(
                f"{name}-a",
                "answered",
                answered_at,
                contact=name,
                customer=customer,
                agent_id="ag",
                team="t1",
            )
        )
        if handle is not None:
            events.append(
                ended(
                    f"{name}-e",
                    answered_at + handle,
                    contact=name,
                    customer=customer,
                    resolved=resolved,
                )
            )
    if abandon_after is not None:
        events.append(
            cc(f"{name}-x", "abandoned", SEC + abandon_after, contact=name, customer=customer)
        )
    return events


def survey(
    name: str, at_ms: int, customer: str, tag: str = "", **scores: int | None
) -> dict[str, Any]:
    values = {"csat": None, "nps": None, "ces": None, **scores}
    return cc(
        f"{name}-s{at_ms}{tag}",
        "survey_submitted",
        at_ms,
        contact=name,
        customer=customer,
        **values,
    )


def test_contact_kpis_pin_thresholds_transfers_and_surveys() -> None:
    events = [
        *queued_contact("k1", customer="u1", abandon_after=5_000),  # exactly 5 s: not short
        *queued_contact("k2", customer="u2", abandon_after=4_999),  # short abandon
        *queued_contact("k3", customer="u3", answer_after=20_000, handle=300_000),
        cc("k3-t1", "transferred", 100 * SEC, contact="k3", customer="u3", to_queue="b"),
        cc("k3-t2", "transferred", 200 * SEC, contact="k3", customer="u3", to_queue="c"),
        survey("k3", HOUR, "u3", csat=5, nps=10, ces=2),
        survey("k3", 2 * HOUR, "u3", nps=3),  # the last survey counts: no csat, no ces
        *queued_contact("k4", customer="u4", answer_after=20_001, handle=100_000, resolved=False),
        survey("k4", HOUR, "u4", csat=3, nps=8, ces=5),
        *queued_contact("k5", customer="u5", queue="billing", answer_after=10_000),  # not ended
        survey("k5", HOUR, "u5", nps=10),
        started("k6-0", 0, contact="k6", customer="u6", channel="email"),
        survey("k6", HOUR, "u6", csat=4, nps=10, ces=1),
        started("k7-0", 0, contact="k7", customer="u7", channel="chat"),  # answered, never queued
        cc("k7-a", "answered", SEC, contact="k7", customer="u7", agent_id="ag", team="t2"),
        cc("k8-q", "queued", 0, contact="k8", customer="u8", queue="parts"),  # never started
    ]
    result = compute_ground_truth(events, FUNNELS)
    assert [c["contact_id"] for c in result["contacts"]] == [f"k{n}" for n in range(1, 8)]

    k1, k2, k3, k7 = (contact(result, name) for name in ("k1", "k2", "k3", "k7"))
    assert (k1["abandoned"], k1["short_abandoned"], k1["wait_ms"]) == (True, False, 5_000)
    assert (k2["abandoned"], k2["short_abandoned"], k2["wait_ms"]) == (True, True, 4_999)
    assert (k3["answered_within_sl"], k3["wait_ms"], k3["handle_ms"]) == (True, 20_000, 300_000)
    assert (k3["transferred"], k3["queue"], k3["team"], k3["channel"]) == (
        True,
        "parts",
        "t1",
        "voice",
    )
    assert (k3["csat"], k3["nps"], k3["ces"]) == (None, 3, None)
    assert k3["attrs"] == {"region": "emea"}
    assert (k7["queued"], k7["answered"], k7["team"], k7["wait_ms"]) == (False, False, "t2", None)

    kpis = result["kpis"]
    assert kpis["counts"] == {
        "contacts": 7,
        "queued": 5,
        "answered": 3,
        "abandoned": 2,
        "short_abandoned": 1,
        "answered_within_sl": 2,
        "transferred": 1,
        "handled": 2,
        "ivr_contacts": 0,
        "ivr_contained": 0,
        "zero_out": 0,
        "resolved": 1,
        "first_contact_resolved": 1,
        "csat_responses": 2,
        "nps_responses": 4,
        "ces_responses": 2,
    }
    assert kpis["service_level"] == pytest.approx(2 / (3 + 2 - 1))
    assert kpis["asa_seconds"] == pytest.approx((20_000 + 20_001 + 10_000) / 3 / 1000)
    assert kpis["abandonment_rate"] == pytest.approx(2 / 5)
    assert kpis["aht_seconds"] == pytest.approx((300_000 + 100_000) / 2 / 1000)
    assert kpis["transfer_rate"] == pytest.approx(1 / 3)
    assert kpis["csat"] == pytest.approx(1 / 2)  # k4: 3, k6: 4
    assert kpis["nps"] == pytest.approx(100 * (2 - 1) / 4)  # 3, 8, 10, 10
    assert kpis["ces"] == pytest.approx((5 + 1) / 2)
    assert (kpis["ivr_containment_rate"], kpis["zero_out_rate"]) == (None, None)

    billing = summarize_kpis([c for c in result["contacts"] if c["queue"] == "billing"])
    assert (billing["counts"]["answered"], billing["asa_seconds"]) == (1, pytest.approx(10.0))


def test_every_ratio_is_none_without_denominators() -> None:
    events = [
        started("k-0", 0, contact="k", channel="email"),
        ended("k-1", HOUR, contact="k", resolved=False),
    ]
    kpis = compute_ground_truth(events, FUNNELS)["kpis"]
    assert kpis["counts"]["contacts"] == 1
    ratios = {k: v for k, v in kpis.items() if k not in ("counts", "fcr_final", "ivr_final")}
    assert ratios == dict.fromkeys(ratios, None)
    assert len(ratios) == 11

    empty = compute_ground_truth([], FUNNELS)
    assert empty["journeys"] == empty["contacts"] == []
    assert empty["containment"]["containment_rate"] is None
    assert empty["funnel_summary"][DEFAULT]["steps"][0]["conversion_from_start"] is None
    assert empty["kpis"]["counts"]["contacts"] == 0


def test_first_contact_resolution_window_of_7_days() -> None:
    events = [
        started("a0", 0, contact="a", customer="c1"),
        ended("a1", HOUR, contact="a", customer="c1", resolved=True),
        started("b0", 6 * DAY + 23 * HOUR, contact="b", customer="c1"),  # repeat inside 7 d
        ended("b1", 7 * DAY, contact="b", customer="c1", resolved=True),
        started("c0", 0, contact="c", customer="c2"),
        ended("c1", HOUR, contact="c", customer="c2", resolved=True),
        started("d0", 7 * DAY + HOUR, contact="d", customer="c2"),  # repeat after 7 d
        ended("d1", 7 * DAY + 2 * HOUR, contact="d", customer="c2", resolved=False),
        started("e0", 0, contact="e", customer="c3"),
        ended("e1", HOUR, contact="e", customer="c3", resolved=True),
        started("f0", 7 * DAY, contact="f", customer="c3"),  # exactly 7 d: inside (t, t + 7 d]
    ]
    result = compute_ground_truth(events, FUNNELS)
    fcr = {
        c["contact_id"]: (c["resolved"], c["first_contact_resolved"]) for c in result["contacts"]
    }
    assert fcr == {
        "a": (True, False),
        "b": (True, True),
        "c": (True, True),
        "d": (False, False),
        "e": (True, False),
        "f": (False, False),
    }
    assert result["kpis"]["fcr_rate"] == pytest.approx(2 / 4)
    assert result["kpis"]["fcr_final"] is True

    provisional = compute_ground_truth(events, FUNNELS, as_of_ms=T0_MS + 7 * DAY)
    assert contact(provisional, "a")["fcr_final"] is True  # start + 7 d <= watermark
    assert contact(provisional, "b")["fcr_final"] is False
    assert provisional["kpis"]["fcr_final"] is False
    assert provisional["kpis"]["fcr_rate"] == pytest.approx(2 / 4)  # same events, same flags


def test_ivr_containment_needs_no_repeat_contact_within_24_hours() -> None:
    def ivr(name: str, at_ms: int, customer: str, outcome: str) -> list[dict[str, Any]]:
        return [
            started(f"{name}-0", at_ms, contact=name, customer=customer),
            cc(
                f"{name}-i",
                "ivr_completed",
                at_ms + MIN,
                contact=name,
                customer=customer,
                outcome=outcome,
            ),
        ]

    events = [
        *ivr("a", 0, "c1", "contained"),
        *ivr("b", 23 * HOUR, "c1", "zero_out"),  # repeat inside 24 h
        *ivr("c", 0, "c2", "contained"),
        *ivr("d", 24 * HOUR + 1, "c2", "to_queue"),  # repeat 1 ms after the window
        *ivr("e", 0, "c3", "contained"),
        started("f-0", 24 * HOUR, contact="f", customer="c3"),  # exactly 24 h, no IVR
    ]
    result = compute_ground_truth(events, FUNNELS, as_of_ms=T0_MS + 24 * HOUR)
    contained = {c["contact_id"]: c["ivr_contained"] for c in result["contacts"]}
    assert contained == dict(a=False, b=False, c=True, d=False, e=False, f=False)
    assert contact(result, "a")["ivr_final"] is True
    assert contact(result, "b")["ivr_final"] is False
    assert contact(result, "f")["ivr_outcome"] is None
    kpis = result["kpis"]
    assert (kpis["counts"]["ivr_contacts"], kpis["counts"]["zero_out"]) == (5, 1)
    assert kpis["ivr_containment_rate"] == pytest.approx(1 / 5)
    assert kpis["zero_out_rate"] == pytest.approx(1 / 5)
    assert kpis["ivr_final"] is False


# --------------------------------------------------------------------------- order independence


def mixed_events() -> list[dict[str, Any]]:
    """Journeys and contacts from several fixtures above, with ties in time."""
    events = [
        *full_order("c", 0, "cc"),
        *full_order("d", 0, "cd")[:4],
        started("d-k", 2 * MIN, contact="dk", customer="cd"),
        ended("d-e", 30 * MIN, contact="dk", customer="cd", resolved=True),
        portal("a0", "session_started", 0, customer=None, session="anon1", entry="web"),
        portal("a1", "help_requested", 0, customer=None, session="anon1", via="chat"),
        started("k1", 10 * MIN, contact="k1", customer="c9", linked="anon1"),
        portal("g0", "session_started", 0, customer="cg", entry="web"),
        portal("g1", "step_viewed", 30 * MIN, customer="cg", step="x"),
        portal("g2", "step_viewed", 60 * MIN + 1, customer="cg", step="y"),
        *queued_contact("q1", customer="u1", abandon_after=5_000),
        *queued_contact("q3", customer="u3", answer_after=20_000, handle=300_000),
        survey("q3", HOUR, "u3", "b", csat=5, nps=10, ces=2),
        survey("q3", HOUR, "u3", "a", csat=1, nps=0, ces=7),  # same time: event_id "…b" wins
        started("r0", DAY, contact="r", customer="u3"),
    ]
    return events


def test_shuffled_and_duplicated_events_give_the_identical_result() -> None:
    events = mixed_events()
    reference = compute_ground_truth(events, FUNNELS, as_of_ms=T0_MS + 2 * HOUR)
    json.dumps(reference)  # JSON-serialisable as is
    rng = random.Random(20260302)
    for _ in range(5):
        noisy = events + [copy.deepcopy(e) for e in rng.sample(events, k=len(events) // 3)]
        rng.shuffle(noisy)
        assert compute_ground_truth(noisy, FUNNELS, as_of_ms=T0_MS + 2 * HOUR) == reference
    assert len(reference["journeys"]) == 5
    assert (contact(reference, "q3")["csat"], reference["kpis"]["counts"]["contacts"]) == (5, 5)
