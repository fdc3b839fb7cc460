"""Driver facts from real events: the pure function, and the drivers of journeys that went
through the worker's journey and snapshot code, against what the events were written to say."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from cxpulse.schemas.events import Event
from cxpulse.schemas.times import iso_time
from cxpulse.schemas.validate import by_time, decode_trusted
from cxpulse.sinks import driver_queries
from cxpulse.sinks.migrate import migrate
from cxpulse.sinks.store import ChdbStore
from cxpulse.streams.driver_facts import driver_facts
from cxpulse.streams.funnels import load_funnels
from cxpulse.streams.journeys import build_journeys
from cxpulse.streams.snapshots import JOURNEY_FUNNELS, journey_rows
from cxpulse.streams.windows import DEFAULT_WINDOWS
from tests.support.drivers import Journey, expected

T = 1_790_000_000_000
FUNNELS = load_funnels()
STEPS = [s.name for s in FUNNELS[0].steps]


def _event(n: int, customer: int, kind: str, data: dict[str, Any]) -> Event:
    raw = {
        "event_id": f"e{customer}-{n}", "schema_version": 1, "type": kind,
        "occurred_at": iso_time(T + customer * 60_000 + n * 1000),
        "session_id": f"s{customer}", "customer_id": f"c{customer}",
        "attrs": {"device": ("mobile", "desktop")[customer % 2]}, "data": data,
    }  # fmt: skip
    return decode_trusted(orjson.dumps(raw))


def test_facts_are_refusal_reasons_and_failed_tests_once_each_sorted() -> None:
    events = [
        _event(1, 0, "portal.step_completed", {"step": "troubleshoot", "outcome": "fail"}),
        _event(2, 0, "portal.step_completed", {"step": "troubleshoot", "outcome": "fail"}),
        _event(3, 0, "portal.step_completed", {"step": "diagnose", "outcome": "pass"}),
        _event(4, 0, "portal.eligibility_checked", {"eligible": False, "reason": "not_covered"}),
        _event(5, 0, "portal.eligibility_checked", {"eligible": True, "reason": "ok"}),
        _event(6, 0, "portal.eligibility_checked", {"eligible": False, "reason": None}),
        _event(7, 0, "portal.eligibility_checked", {"eligible": False, "reason": "expired"}),
    ]
    assert driver_facts(by_time(events)) == (
        ("eligibility_reason", "reason", "expired"),
        ("eligibility_reason", "reason", "not_covered"),
        ("test_failed", "step", "troubleshoot"),
    )
    assert driver_facts(by_time(events[2:3])) == ()


def _customer(i: int) -> tuple[list[Event], Journey]:
    """Customer i's journey: the test passes for every third (refused: issue_resolved), fails
    for the rest, of whom every fourth is refused (out_of_warranty); half the eligible order."""
    passed, refused_anyway = i % 3 == 0, i % 3 != 0 and i % 4 == 0
    eligible = not passed and not refused_anyway
    reason = "issue_resolved" if passed else "out_of_warranty" if refused_anyway else "shipment"
    events = [_event(0, i, "portal.session_started", {"entry": "web"})]
    for n, step in enumerate(("identify_device", "diagnose"), 1):
        events.append(_event(n, i, "portal.step_completed", {"step": step}))
    outcome = "pass" if passed else "fail"
    events.append(
        _event(3, i, "portal.step_completed", {"step": "troubleshoot", "outcome": outcome})
    )
    events.append(
        _event(4, i, "portal.eligibility_checked", {"eligible": eligible, "reason": reason})
    )
    if eligible and i % 2 == 0:
        events.append(_event(5, i, "portal.order_placed", {"order_id": f"o{i}", "sku": "P-1"}))
    facts = [("test_failed", "step", "troubleshoot")] if not passed else []
    if not eligible:
        facts.append(("eligibility_reason", "reason", reason))
    attrs = {"device": ("mobile", "desktop")[i % 2]}
    return events, Journey(attrs, not eligible, tuple(facts))


def test_drivers_of_journeys_built_by_the_worker_name_reasons_and_failed_tests(
    tmp_path: Path,
) -> None:
    customers = [_customer(i) for i in range(200)]
    watermark = T + 10 * 86_400_000  # every journey closed
    rows = []
    for i, (events, _) in enumerate(customers):
        for journey in build_journeys(f"c{i}", by_time(events), [], FUNNELS, [], DEFAULT_WINDOWS):
            rows += journey_rows(journey, FUNNELS, watermark, DEFAULT_WINDOWS.gap_ms)
    with ChdbStore(tmp_path / "chdb", "cxpulse_test") as store:
        migrate(store)
        store.insert(JOURNEY_FUNNELS, [r.columns for r in rows if r.table == JOURNEY_FUNNELS])
        end = T + 86_400_000
        got = driver_queries.drivers(store, "self_service", STEPS.index("eligible"), T, end)
        # Refused or not, every journey reached eligibility_checked: all 200 are the population.
        assert got == expected([j for _, j in customers])
        kinds = {(d["kind"], d["attr"], d["value"]) for d in got["drivers"]}
        assert kinds == {
            ("attr", "device", "desktop"), ("attr", "device", "mobile"),
            ("eligibility_reason", "reason", "issue_resolved"),
            ("eligibility_reason", "reason", "out_of_warranty"),
            ("test_failed", "step", "troubleshoot"),
        }  # fmt: skip
        top = driver_queries.top_drivers(store, "self_service", STEPS.index("eligible"), T, end, 1)
        assert [(d["kind"], d["value"], d["dropped"]) for d in top] == [
            ("eligibility_reason", "issue_resolved", 67)
        ]
