"""One valid example of every event type (contract version 1), for tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

NOW = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)
NOW_MS = int(NOW.timestamp()) * 1000


def _portal(event_type: str, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "event_id": f"ev-{event_type}",
        "schema_version": 1,
        "type": event_type,
        "occurred_at": (NOW - timedelta(minutes=1)).isoformat(),
        "customer_id": "cust-1",
        "session_id": "sess-1",
        "attrs": {"product_line": "printers", "device": "mobile"},
        "data": data,
    }


def _contact(event_type: str, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "event_id": f"ev-{event_type}",
        "schema_version": 1,
        "type": event_type,
        "occurred_at": (NOW - timedelta(minutes=1)).isoformat(),
        "customer_id": "cust-1",
        "contact_id": "contact-1",
        "attrs": {"tier": "business"},
        "data": data,
    }


EXAMPLES: dict[str, dict[str, Any]] = {
    "portal.session_started": _portal("portal.session_started", {"entry": "support_home"}),
    "portal.step_viewed": _portal("portal.step_viewed", {"step": "diagnose"}),
    "portal.step_completed": _portal(
        "portal.step_completed", {"step": "troubleshoot", "outcome": "fail"}
    ),
    "portal.eligibility_checked": _portal(
        "portal.eligibility_checked", {"eligible": True, "reason": "test_failed"}
    ),
    "portal.order_placed": _portal("portal.order_placed", {"order_id": "o-1", "sku": "ink-9"}),
    "portal.help_requested": _portal("portal.help_requested", {"via": "chat"}),
    "portal.session_ended": _portal("portal.session_ended", {}),
    "cc.contact_started": _contact(
        "cc.contact_started", {"channel": "voice", "reason": "no_print", "linked_session_id": None}
    ),
    "cc.ivr_completed": _contact("cc.ivr_completed", {"outcome": "zero_out"}),
    "cc.queued": _contact("cc.queued", {"queue": "printers_l1"}),
    "cc.answered": _contact("cc.answered", {"agent_id": "a-7", "team": "blue"}),
    "cc.transferred": _contact("cc.transferred", {"to_queue": "printers_l2"}),
    "cc.abandoned": _contact("cc.abandoned", {}),
    "cc.contact_ended": _contact(
        "cc.contact_ended", {"resolved": True, "wrap_code": "fixed", "part_shipped": False}
    ),
    "cc.survey_submitted": _contact("cc.survey_submitted", {"csat": 5, "nps": None, "ces": 2}),
}
