"""An alert as it is stored and shown, and what it says about its cause (design section 4b).

Every alert names the portal changes made shortly before it (`streams.change_alerts`); a drop-off
alert also names the top drivers of its step: the segment values and event facts whose journeys
dropped off there significantly more than the rest in the hours before it fired. Both are
snapshots kept with the alert until it fires again, so a notification, the API and the board show
the same thing and nothing is recomputed per evaluation.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from cxpulse.sinks.driver_queries import alert_drivers
from cxpulse.sinks.store import Store
from cxpulse.streams.alerting import DROPOFF, Outcome
from cxpulse.streams.change_alerts import recent_changes
from cxpulse.streams.funnels import FunnelSpec

log = logging.getLogger(__name__)

#: Alert fields that hold such a snapshot.
CONTEXT = ("recent_changes", "top_drivers")
#: How many drivers an alert names.
TOP_DRIVERS = 3
#: What the alert keeps of each driver (enough for `driver_queries.drivers_text`).
DRIVER_FIELDS = ("kind", "attr", "value", "rate", "rate_rest", "excess", "p_adjusted")


def carried(stored: Mapping[str, Any] | None) -> dict[str, Any]:
    """The context an alert keeps between firings (none before its first)."""
    return {name: [] if stored is None else stored[name] for name in CONTEXT}


def on_firing(
    store: Store,
    alert: Mapping[str, Any],
    funnels: Sequence[FunnelSpec],
    change_window_ms: int,
    drivers_lookback_ms: int,
) -> dict[str, Any]:
    """The context of an alert that just started firing; none when the lookup fails, since it
    only explains the alert and must not hold it back."""
    drivers: list[dict[str, Any]] = []
    steps = next((f.steps for f in funnels if f.name == alert["funnel"]), ())
    names = [s.name for s in steps]
    try:
        if alert["rule"] == DROPOFF and alert["step"] in names[1:]:
            top = alert_drivers(store, alert, names, drivers_lookback_ms, TOP_DRIVERS)
            drivers = [{k: d[k] for k in DRIVER_FIELDS} for d in top]
        return {
            "recent_changes": recent_changes(store, alert, change_window_ms),
            "top_drivers": drivers,
        }
    except Exception:
        log.exception("looking up the changes and drivers of alert %s failed", alert["id"])
        return carried(None)


def alert_of(outcome: Outcome, stored: Mapping[str, Any] | None) -> dict[str, Any]:
    """The alert as the table, the API and the notifications show it: this evaluation's
    outcome over what was stored before (figures kept when there was no data, context carried)."""
    obs, verdict, state = outcome.observation, outcome.verdict, outcome.transition.state
    if obs is None:  # no data this time: keep the figures last stored
        base = stored or {}
        rule = base.get("rule") or outcome.id.split("/", 1)[0]
        funnel, step = base.get("funnel"), base.get("step")
        segment = base.get("segment") or {}
        figures = (
            base.get("current_rate"),
            base.get("baseline_rate"),
            base.get("window_journeys", 0),
            base.get("z"),
        )
    else:
        rule, funnel, step, segment = obs.rule, obs.funnel, obs.step, obs.segment
        figures = (verdict.current_rate, verdict.baseline_rate, verdict.window, verdict.z)
    started = state.started_ms
    if started is None and stored is not None:
        started = stored["started_ms"]
    return {
        "id": outcome.id,
        "rule": rule,
        "state": state.state,
        "funnel": funnel or "",
        "step": step or "",
        "segment": segment,
        "current_rate": figures[0] or 0.0,
        "baseline_rate": figures[1] or 0.0,
        "window_journeys": int(figures[2] or 0),
        "z": figures[3] or 0.0,
        "started_ms": started,
        "resolved_ms": state.resolved_ms if state.state == "resolved" else None,
        "silenced_ms": None if stored is None else stored["silenced_ms"],
        **carried(stored),
    }
