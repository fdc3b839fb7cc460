"""Writes to the alerts table: the evaluator's alert versions, and silences from the API.

Both write whole rows (ReplacingMergeTree keeps the latest `updated_at`), each carrying the
other's fields forward: the evaluator keeps `silenced_until`, a silence keeps the figures.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from cxpulse.sinks.store import Store, ch_time, iso_time


def _row(alert: dict[str, Any], silenced_until_ms: int | None, updated_ms: int) -> dict[str, Any]:
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
        "silenced_until": None if silenced_until_ms is None else ch_time(silenced_until_ms),
        "updated_at": ch_time(updated_ms),
    }


def record(store: Store, alerts: Iterable[dict[str, Any]], now_ms: int) -> None:
    """New versions of alerts from the evaluator (`silenced_ms` carried by the caller)."""
    store.insert("alerts", [_row(a, a["silenced_ms"], now_ms) for a in alerts])


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
    }


def silence(store: Store, current: dict[str, Any], until_ms: int, now_ms: int) -> None:
    """A new version of the alert with `silenced_until`, every other field carried forward.

    The version (updated_at) is at least one millisecond past the current one, so the silence
    wins even when the evaluator wrote in the same millisecond.
    """
    updated = max(now_ms, int(current["updated_ms"]) + 1)
    store.insert("alerts", [_row(current, until_ms, updated)])
