"""The alert evaluator: every 30 s of event time, query the store, judge, and publish changes.

It runs where the store is read (beside the store writer: in `cxpulse up`, or in `cxpulse
writer` with a ClickHouse server), because the rules need every partition's journeys at once.
Evaluation times follow event time, not the wall clock: the store's freshness (the stalest
partition's newest event, minus the allowed lateness) says up to when the data is complete, and
every 30 s grid point up to there is evaluated in order, so a replay or a backlog is judged
point by point exactly as live traffic would have been.

State (pending and firing alerts) lives in memory and is rebuilt from the alerts table on start
(firing alerts stay firing: no second notification after a restart; a pending count restarts).
Silences are read from the alerts table each round, since the API writes them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from cxpulse.sinks import alerts as alert_rows
from cxpulse.sinks import queries
from cxpulse.sinks.store import Store
from cxpulse.streams import alerting, metrics
from cxpulse.streams.alerting import AlertState, Observation, Outcome, Thresholds
from cxpulse.streams.funnels import FunnelSpec
from cxpulse.streams.notify import summary
from cxpulse.streams.stage import ALLOWED_LATENESS_MS

log = logging.getLogger(__name__)

#: Most evaluations one round catches up on (2 h of event time at 30 s); older gaps are skipped.
MAX_CATCH_UP = 240
#: A partition whose freshness is older than this (wall clock) is left out of `complete_until`.
IDLE_PARTITION_MS = 3_600_000
#: How long (event time) an estimate of tau is used before it is made again.
TAU_REFRESH_MS = 5 * 60_000


@dataclass(frozen=True)
class AlertConfig:
    every_ms: int = 30_000
    window_ms: int = 15 * 60_000
    baseline_ms: int = 24 * 3_600_000
    tau_cap_ms: int = 10 * 60_000
    segment_attrs: tuple[str, ...] = ("device", "product_line", "region", "tier", "entry")
    contact_segments: tuple[str, ...] = ("queue", "channel")
    contact_settle_ms: int = 5 * 60_000
    service_level_target: float = 0.8
    thresholds: Thresholds = field(default_factory=Thresholds)


class AlertSink(Protocol):
    """Where changes go: `notify` is False while the alert is silenced."""

    def publish(self, change: str, alert: dict[str, Any], notify: bool) -> None: ...


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


class AlertEvaluator:
    def __init__(
        self,
        store: Store,
        funnels: Sequence[FunnelSpec],
        config: AlertConfig,
        sinks: Sequence[AlertSink] = (),
        clock: Callable[[], int] = _wall_ms,
    ) -> None:
        self.store = store
        self.funnels = tuple(funnels)
        self.config = config
        self.sinks = tuple(sinks)
        self.clock = clock
        self.states: dict[str, AlertState] = {}
        self.last_at: int | None = None
        self.settled: int | None = None  # complete_until as the previous round saw it
        self._tau_cache: dict[str, tuple[int, dict[int, int]]] = {}
        self._restored = False

    # -- when ------------------------------------------------------------------------------------

    def complete_until(self) -> int | None:
        """Event time up to which every partition's data is in the store (None: no data yet)."""
        partitions = queries.freshness(self.store)
        if not partitions:
            return None
        # A partition not written for an hour while others are (no traffic, or gone after a
        # change of the partition count) must not hold every alert back.
        latest = max(p["updated_ms"] for p in partitions)
        live = [p for p in partitions if p["updated_ms"] >= latest - IDLE_PARTITION_MS]
        return min(p["newest_ms"] for p in live) - ALLOWED_LATENESS_MS

    def due(self) -> list[int]:
        """The grid points to evaluate now, oldest first: up to what the previous round found
        complete. The writer inserts each table on its own, so freshness may be stored a moment
        before the rows of the same events; one round later they are in (as long as the writer
        lags less than an evaluation interval). Live, this costs one interval of wall time, not
        of event time: alerts are stamped with the grid point they were evaluated at."""
        until, self.settled = self.settled, self.complete_until()
        if until is None:
            return []
        every = self.config.every_ms
        latest = until - until % every
        if self.last_at is None:
            return [latest]
        first = max(self.last_at + every, latest - (MAX_CATCH_UP - 1) * every)
        return list(range(first, latest + 1, every))

    # -- work ------------------------------------------------------------------------------------

    def run_once(self, stop: threading.Event | None = None) -> int:
        """Evaluate every due grid point (until `stop`); returns how many were evaluated.

        Each point is judged on a copy of the states, which replaces them only once its rows
        are stored: a failed insert leaves state and `last_at` as they were, so the point is
        judged again from the same state (no breach counted twice, no change lost).
        """
        if not self._restored:
            self._restore()
        points = self.due()
        current = {row["id"]: row for row in queries.alerts(self.store)} if points else {}
        wall = self.clock()
        silenced = {i for i, r in current.items() if (r["silenced_ms"] or 0) > wall}
        done = 0
        for at in points:
            if stop is not None and stop.is_set():
                break
            states = dict(self.states)
            outcomes = alerting.evaluate(self.observe(at), states, at,
                                         self.config.thresholds, silenced)  # fmt: skip
            changes = self._store(outcomes, current)
            self.states, self.last_at = states, at
            metrics.ALERT_EVALUATIONS.inc()
            done += 1
            for change, alert, notify in changes:
                self._publish(change, alert, notify)
        return done

    def observe(self, at_ms: int) -> list[Observation]:
        """Every rule's counts at `at_ms`: timely drop-off per funnel step, then contacts."""
        c = self.config
        observations = []
        for funnel in self.funnels:
            taus = self._taus(funnel, at_ms)
            rows = queries.timely_dropoff(
                self.store, funnel.name, taus, at_ms, window_ms=c.window_ms,
                baseline_ms=c.baseline_ms, span_ms=funnel.window_ms,
                segment_attrs=c.segment_attrs,
            )  # fmt: skip
            step_names = [s.name for s in funnel.steps]
            observations += alerting.dropoff_observations(funnel.name, step_names, rows)
        rows = queries.contact_alert_counts(
            self.store, at_ms, settle_ms=c.contact_settle_ms, window_ms=c.window_ms,
            baseline_ms=c.baseline_ms, segment_columns=c.contact_segments,
        )  # fmt: skip
        return observations + alerting.contact_observations(rows, c.service_level_target)

    def _taus(self, funnel: FunnelSpec, at_ms: int) -> dict[int, int]:
        """tau per step k >= 1, re-estimated every TAU_REFRESH_MS of event time: a p90 over a
        day moves slowly, and estimating it costs as much as the counts themselves."""
        cached = self._tau_cache.get(funnel.name)
        if cached is not None and 0 <= at_ms - cached[0] < TAU_REFRESH_MS:
            return cached[1]
        c = self.config
        # From the part of the baseline every journey has had `tau_cap` to complete.
        base_hi = at_ms - c.tau_cap_ms - c.window_ms
        steps = len(funnel.steps)
        p90 = queries.step_delay_p90(self.store, funnel.name, steps, base_hi - c.baseline_ms,
                                     base_hi, funnel.window_ms)  # fmt: skip
        taus = {k: alerting.tau_ms(p90.get(k), c.tau_cap_ms) for k in range(1, steps)}
        self._tau_cache[funnel.name] = (at_ms, taus)
        return taus

    def run(self, stop: threading.Event, interval_s: float) -> None:
        """Evaluate every `interval_s` until `stop`; a failed round is logged and retried."""
        while not stop.is_set():
            try:
                self.run_once(stop)
            except Exception:
                log.exception("alert evaluation failed; retrying in %.0f s", interval_s)
            stop.wait(interval_s)

    # -- internals -------------------------------------------------------------------------------

    def _restore(self) -> None:
        for row in queries.alerts(self.store, state="firing"):
            self.states[row["id"]] = AlertState(state="firing", started_ms=row["started_ms"])
        self._restored = True

    def _store(
        self, outcomes: list[Outcome], current: dict[str, dict[str, Any]]
    ) -> list[tuple[str, dict[str, Any], bool]]:
        """Store firing and just-resolved alerts; returns the changes to publish."""
        rows, changes = [], []
        for outcome in outcomes:
            if outcome.transition.state.state == "pending":
                continue
            alert = self._alert(outcome, current.get(outcome.id))
            rows.append(alert)
            if outcome.transition.changed is not None:
                notify = outcome.transition.notify is not None
                changes.append((outcome.transition.changed, alert, notify))
        if rows:
            alert_rows.record(self.store, rows, self.clock())
        current.update({alert["id"]: alert for alert in rows})
        return changes

    def _publish(self, change: str, alert: dict[str, Any], notify: bool) -> None:
        log.info("alert %s %s: %s", alert["id"], change, summary(alert))
        metrics.ALERT_CHANGES.labels(alert["rule"], change).inc()
        for sink in self.sinks:
            try:
                sink.publish(change, alert, notify)
            except Exception:  # a sink must not stop the evaluation of the others
                log.exception("publishing alert %s to %s failed", alert["id"], sink)

    def _alert(self, outcome: Outcome, stored: dict[str, Any] | None) -> dict[str, Any]:
        """The alert as the table, the API and the notifications show it."""
        obs, verdict, state = outcome.observation, outcome.verdict, outcome.transition.state
        if obs is None:  # no data this time: keep the figures last stored
            base = stored or {}
            rule = base.get("rule") or outcome.id.split("/", 1)[0]
            funnel, step = base.get("funnel"), base.get("step")
            segment = base.get("segment") or {}
            figures = (base.get("current_rate"), base.get("baseline_rate"),
                       base.get("window_journeys", 0), base.get("z"))  # fmt: skip
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
        }
