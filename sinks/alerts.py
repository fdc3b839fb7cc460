"""Writes to the alerts table that do not come from the evaluator: silences."""

from __future__ import annotations

from typing import Any

from cxpulse.sinks.store import Store, ch_time


def silence(store: Store, current: dict[str, Any], until_ms: int, now_ms: int) -> None:
    """A new version of the alert with `silenced_until`, every other field carried forward.

    The version (updated_at) is at least one millisecond past the current one, so the silence
    wins even when the evaluator wrote in the same millisecond.
    """
    updated = max(now_ms, int(current["updated_ms"]) + 1)
    store.insert(
        "alerts",
        [
            {
                "id": current["id"],
                "rule": current["rule"],
                "state": current["state"],
                "funnel": current["funnel"],
                "step": current["step"],
                "segment": current["segment"],
                "current_rate": current["current_rate"],
                "baseline_rate": current["baseline_rate"],
                "window_journeys": current["window_journeys"],
                "z": current["z"],
                "started_at": ch_time(int(current["started_ms"])),
                "resolved_at": None
                if current["resolved_ms"] is None
                else ch_time(int(current["resolved_ms"])),
                "silenced_until": ch_time(until_ms),
                "updated_at": ch_time(updated),
            }
        ],
    )
