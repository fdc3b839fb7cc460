"""Writes of alerts: the evaluator's alert versions (alerts), and silences from the API
(alert_silences). Two tables, so neither writer can undo the other's latest write."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from cxpulse.schemas.times import ch_time, iso_time
from cxpulse.sinks.store import Store


def _row(alert: dict[str, Any], updated_ms: int) -> dict[str, Any]:
    return {
        "id": alert["id"],
        "rule": alert["rule"],
        "state": alert["state"],
        "funnel": alert["funnel"],
        "step": alert["step"],
        "segment": alert["segment"],
        "current_rate": alert["current_rate"],
        "baseline_rate": alert["baseline_rate"],
        "window_journeys": alert["window_journeys"],
        "z": alert["z"],
        "started_at": ch_time(int(alert["started_ms"])),
        "resolved_at": None if alert["resolved_ms"] is None else ch_time(int(alert["resolved_ms"])),
        "recent_changes": orjson.dumps(alert["recent_changes"]).decode(),
        "top_drivers": orjson.dumps(alert["top_drivers"]).decode(),
        "updated_at": ch_time(updated_ms),
    }


def record(store: Store, alerts: Iterable[dict[str, Any]], now_ms: int) -> None:
    """New versions of alerts from the evaluator."""
    store.insert("alerts", [_row(a, now_ms) for a in alerts])


def document(alert: dict[str, Any]) -> dict[str, Any]:
    """An alert (a row of queries.alerts, or the evaluator's) as the API and the alerts topic
    show it (design section 8)."""

    def iso(ms: int | None) -> str | None:
        return None if ms is None else iso_time(int(ms))

    return {
        "id": alert["id"],
        "rule": alert["rule"],
        "state": alert["state"],
        "funnel": alert["funnel"] or None,
        "step": alert["step"] or None,
        "segment": alert["segment"] or None,
        "current_rate": alert["current_rate"],
        "baseline_rate": alert["baseline_rate"],
        "window_journeys": alert["window_journeys"],
        "z": alert["z"],
        "started_at": iso(alert["started_ms"]),
        "resolved_at": iso(alert["resolved_ms"]),
        "silenced_until": iso(alert["silenced_ms"]),
        "recent_changes": alert["recent_changes"],
        "top_drivers": alert["top_drivers"],
    }


def silence(store: Store, alert_id: str, until_ms: int, now_ms: int) -> None:
    """Silence an alert's notifications until `until_ms` (the latest silence wins)."""
    store.insert(
        "alert_silences",
        [{"id": alert_id, "silenced_until": ch_time(until_ms), "updated_at": ch_time(now_ms)}],
    )
