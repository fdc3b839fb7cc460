"""What a journey's own events say about why it stopped: the driver facts of design section 4b.

Segment attributes say who a customer is; these say what happened to them, so the drop-off
drivers can name a cause rather than a segment: the `reason` the portal gave for refusing
eligibility, and a step whose test failed. A fact is (kind, attr, value): `kind` is the driver
kind of the API's response, `attr` the event field the value comes from. A pure function of the
journey's events, like everything in journeys.py, so arrival order and copies cannot change it.
"""

from __future__ import annotations

from collections.abc import Iterable

from cxpulse.schemas.events import EligibilityChecked, Event, StepCompleted

#: The reason of an eligibility check that refused the customer.
ELIGIBILITY_REASON = "eligibility_reason"
#: A step completed with outcome `fail` (a failed troubleshooting test).
TEST_FAILED = "test_failed"

Fact = tuple[str, str, str]


def driver_facts(run: Iterable[tuple[int, Event]]) -> tuple[Fact, ...]:
    """Sorted distinct facts of a run of (time, event): a journey has each fact once, so the
    drivers count journeys, not events."""
    facts: set[Fact] = set()
    for _, event in run:
        if isinstance(event, EligibilityChecked):
            if not event.data.eligible and event.data.reason is not None:
                facts.add((ELIGIBILITY_REASON, "reason", event.data.reason))
        elif isinstance(event, StepCompleted) and event.data.outcome == "fail":
            facts.add((TEST_FAILED, "step", event.data.step))
    return tuple(sorted(facts))
