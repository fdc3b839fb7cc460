"""Which portal changes an alert names (design section 4b): those that may explain it.

A change is named by an alert that starts firing within the window after it (`at` in [started
- window, started]) when it concerns the alert's funnel (its own funnel, or every funnel; a
contact-center alert has no funnel, so only changes of every funnel) and its filters do not
contradict the alert's segment: no attribute both name with different values. The change's
step does not narrow it: a change at one step moves the steps after it too. Looked up once,
when the alert starts firing; the alert keeps the list until it fires again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from cxpulse.schemas.times import iso_time
from cxpulse.sinks.changes import Change, changes_near
from cxpulse.sinks.store import Store


def contradicts(filters: Mapping[str, str], segment: Mapping[str, str]) -> bool:
    """Whether a change's filters and an alert's segment name one attribute differently."""
    return any(name in segment and segment[name] != value for name, value in filters.items())


def named(changes: Sequence[Change], segment: Mapping[str, str]) -> list[dict[str, str]]:
    """The changes (already of the alert's funnel and window) an alert of `segment` names, as
    the alert shows them."""
    return [
        {"id": c.id, "title": c.title, "at": iso_time(c.at_ms)}
        for c in changes
        if not contradicts(c.filters, segment)
    ]


def recent_changes(store: Store, alert: Mapping[str, Any], window_ms: int) -> list[dict[str, str]]:
    """The changes `alert` (as the evaluator builds it) names when it starts firing."""
    started = int(alert["started_ms"])
    nearby = changes_near(store, alert["funnel"] or None, started - window_ms, started)
    return named(nearby, alert["segment"] or {})
