"""The alert evaluator: every 30 s of event time, query the store, judge, and publish changes.

It runs where the store is read (beside the store writer: in `cxpulse up`, or in `cxpulse
writer` with a ClickHouse server), because the rules need every partition's journeys at once.
Evaluation times follow the workers' watermarks: the stalest partition's watermark in the
freshness table says up to when the data is complete, and every 30 s grid point up to there is
evaluated in order. A partition with input has its newest event time minus the allowed lateness
as watermark, so a replay or a backlog is judged point by point exactly as live traffic would
have been; a quiet partition (caught up, nothing new) has the wall clock minus the lateness
(design section 5), so when traffic stops evaluation goes on: journeys stalled mid-funnel count
as timely drop-off and the no_data rule sees the silence.

Consecutive grid points share all but the edges of their 24 h baselines, so the rules' counts
are read for batches of points at once (sinks/alert_batches.py): the windows of every point the
data is complete for, and the baselines of a few points ahead, whose windows are then read one
by one as they become due. A catch-up costs about one query per rule per TAU_REFRESH_MS of
event time instead of one baseline scan per point, with the same counts.

State (pending and firing alerts) lives in memory and is rebuilt from the alerts table on start
(firing alerts stay firing: no second notification after a restart; a pending count restarts).
Silences are read from the alerts table each round, since the API writes them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from cxpulse.schemas.times import now_ms
from cxpulse.schemas.vocabulary import ALERT_CONTACT_COLUMNS, ALERT_SEGMENT_ATTRS
from cxpulse.sinks import alert_batches, alert_queries, funnel_queries
from cxpulse.sinks import alerts as alert_rows
from cxpulse.sinks.store import Store
from cxpulse.streams import alerting, metrics
from cxpulse.streams.alert_context import alert_of, on_firing
from cxpulse.streams.alerting import AlertState, Observation, Outcome, Thresholds
from cxpulse.streams.funnels import FunnelSpec
from cxpulse.streams.notify import summary

log = logging.getLogger(__name__)

#: Most evaluations one round catches up on (2 h of event time at 30 s); older gaps are skipped.
MAX_CATCH_UP = 240
#: A partition whose freshness is older than this (wall clock) is left out of `complete_until`.
IDLE_PARTITION_MS = 3_600_000
#: How long (event time) an estimate of tau is used before it is made again; also the longest
#: batch of grid points whose counts are read at once.
TAU_REFRESH_MS = 5 * 60_000


@dataclass(frozen=True)
class AlertConfig:
    every_ms: int = 30_000
    window_ms: int = 15 * 60_000
    baseline_ms: int = 24 * 3_600_000
    tau_cap_ms: int = 10 * 60_000
    segment_attrs: tuple[str, ...] = ALERT_SEGMENT_ATTRS
    contact_segments: tuple[str, ...] = ALERT_CONTACT_COLUMNS
    contact_settle_ms: int = 5 * 60_000
    service_level_target: float = 0.8
    no_data_ms: int = 5 * 60_000  # the no_data rule's silence span; 0 turns the rule off
    change_window_ms: int = 2 * 3_600_000  # an alert names the changes made this long before
    drivers_lookback_ms: int = (
        2 * 3_600_000
    )  # a drop-off alert's drivers: journeys this long before
    thresholds: Thresholds = field(default_factory=Thresholds)


class AlertSink(Protocol):
    """Where changes go: `notify` is False while the alert is silenced."""

    def publish(self, change: str, alert: dict[str, Any], notify: bool) -> None: ...


#: Reads a rule's batch: (first point, points, points with a window, whether baselines too).
BatchReader = Callable[[int, int, int, bool], alert_batches.Batch]


class AlertEvaluator:
    def __init__(
        self,
        store: Store,
        funnels: Sequence[FunnelSpec],
        config: AlertConfig,
        sinks: Sequence[AlertSink] = (),
        clock: Callable[[], int] = now_ms,
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
        self._batches: dict[
            str, tuple[object, alert_batches.Batch]
        ] = {}  # rule -> (its taus, batch)
        self._complete_to: int | None = None  # the last grid point due this round
        self._restored = False

    # -- when ------------------------------------------------------------------------------------

    def complete_until(self) -> int | None:
        """Event time up to which every partition's data is in the store (None: no data yet):
        the stalest watermark. A worker writes its newest event time minus the allowed lateness
        while a partition has input, and the wall clock minus the lateness once it is quiet."""
        partitions = funnel_queries.freshness(self.store)
        if not partitions:
            return None
        # A partition not written for an hour while others are (its worker gone, or the
        # partition gone after a change of the partition count) must not hold every alert back.
        latest = max(p["updated_ms"] for p in partitions)
        live = [p for p in partitions if p["updated_ms"] >= latest - IDLE_PARTITION_MS]
        return min(p["watermark_ms"] for p in live)

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
        self._complete_to = points[-1] if points else None
        current = {row["id"]: row for row in alert_queries.alerts(self.store)} if points else {}
        wall = self.clock()
        silenced = {i for i, r in current.items() if (r["silenced_ms"] or 0) > wall}
        done = 0
        for at in points:
            if stop is not None and stop.is_set():
                break
            states = dict(self.states)
            outcomes = alerting.evaluate(
                self.observe(at), states, at, self.config.thresholds, silenced
            )
            changes = self._store(outcomes, current)
            self.states, self.last_at = states, at
            metrics.ALERT_EVALUATIONS.inc()
            done += 1
            for change, alert, notify in changes:
                self._publish(change, alert, notify)
        return done

    def observe(self, at_ms: int) -> list[Observation]:
        """Every rule's counts at `at_ms` (the data must be complete up to it): timely drop-off
        per funnel step and no_data per funnel, then contacts."""
        c = self.config
        observations = []
        for funnel in self.funnels:
            taus = self._taus(funnel, at_ms)
            steps = [s.name for s in funnel.steps]
            counts = self._counts(
                f"dropoff/{funnel.name}", at_ms, c.window_ms, taus, self._dropoff(funnel, taus)
            )
            rows = [
                {
                    "k": k,
                    "attr": attr,
                    "value": value,
                    "window_n": w[0],
                    "window_hits": w[1],
                    "base_n": b[0],
                    "base_hits": b[1],
                }
                for (k, attr, value), w, b in counts
            ]
            observations += alerting.dropoff_observations(funnel.name, steps, rows)
            if c.no_data_ms > 0:
                entries = self._counts(
                    f"no_data/{funnel.name}", at_ms, c.no_data_ms, None, self._entries(funnel)
                )
                seen, base = (entries[0][1][0], entries[0][2][0]) if entries else (0, 0)
                observations.append(
                    alerting.no_data_observation(
                        funnel.name, steps[0], seen, base, c.no_data_ms, c.baseline_ms
                    )
                )
        counts = self._counts("contacts", at_ms, c.window_ms, None, self._contacts)
        rows = [
            {
                "attr": attr,
                "value": value,
                "window_sl_n": w[1],
                "window_sl_misses": w[2],
                "window_queued": w[3],
                "window_abandoned": w[4],
                "base_sl_n": b[1],
                "base_sl_misses": b[2],
                "base_queued": b[3],
                "base_abandoned": b[4],
            }
            for (attr, value), w, b in counts
        ]
        return observations + alerting.contact_observations(rows, c.service_level_target)

    def _counts(
        self, rule: str, at_ms: int, lead_ms: int, taus: object, read: BatchReader
    ) -> list[tuple[tuple[Any, ...], tuple[int, ...], tuple[int, ...]]]:
        """A rule's (key, window counts, baseline counts) at `at_ms`, sorted by key, from the
        rule's batch holding `at_ms` (read anew when none does or tau changed); a window the
        batch lacks is read alone now.

        A batch reads the windows of the points due this round (their data is complete) and
        the baselines of up to `lead_ms` / every more points: a baseline's newest rows are
        `lead_ms` (the window, or the no_data span) older than its point, so those are complete
        at the batch's first point already."""
        cached = self._batches.get(rule)
        index = cached[1].index(at_ms) if cached is not None and cached[0] == taus else None
        if cached is None or index is None:
            every = self.config.every_ms
            cap = max(1, TAU_REFRESH_MS // every)
            due = 1 if self._complete_to is None else (self._complete_to - at_ms) // every + 1
            known = min(cap, max(1, due))
            batch = read(at_ms, min(cap, max(known, lead_ms // every + 1)), known, True)
            self._batches[rule], index = (taus, batch), 0
        else:
            batch = cached[1]
        if index < batch.known:
            window = batch.windows[index]
        else:
            window = read(at_ms, 1, 1, False).windows[0]
        base = batch.baselines[index]
        zero = (0,) * len(next(iter([*window.values(), *base.values()]), ()))
        return [
            (key, window.get(key, zero), base.get(key, zero))
            for key in sorted(window.keys() | base.keys())
        ]

    def _dropoff(self, funnel: FunnelSpec, taus: dict[int, int]) -> BatchReader:
        c = self.config

        def read(first_ms: int, points: int, known: int, baseline: bool) -> alert_batches.Batch:
            return alert_batches.timely_dropoff_batch(
                self.store,
                funnel.name,
                taus,
                first_ms,
                every_ms=c.every_ms,
                points=points,
                known=known,
                window_ms=c.window_ms,
                baseline_ms=c.baseline_ms if baseline else 0,
                span_ms=funnel.window_ms,
                segment_attrs=c.segment_attrs,
            )

        return read

    def _entries(self, funnel: FunnelSpec) -> BatchReader:
        c = self.config

        def read(first_ms: int, points: int, known: int, baseline: bool) -> alert_batches.Batch:
            return alert_batches.funnel_entries_batch(
                self.store,
                funnel.name,
                first_ms,
                every_ms=c.every_ms,
                points=points,
                known=known,
                span_ms=c.no_data_ms,
                baseline_ms=c.baseline_ms if baseline else 0,
            )

        return read

    def _contacts(
        self, first_ms: int, points: int, known: int, baseline: bool
    ) -> alert_batches.Batch:
        c = self.config
        return alert_batches.contact_alert_batch(
            self.store,
            first_ms,
            every_ms=c.every_ms,
            points=points,
            known=known,
            settle_ms=c.contact_settle_ms,
            window_ms=c.window_ms,
            baseline_ms=c.baseline_ms if baseline else 0,
            segment_columns=c.contact_segments,
        )

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
        p90 = alert_queries.step_delay_p90(
            self.store, funnel.name, steps, base_hi - c.baseline_ms, base_hi, funnel.window_ms
        )
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
        for row in alert_queries.alerts(self.store, state="firing"):
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
            alert = alert_of(outcome, current.get(outcome.id))
            if outcome.transition.changed == "firing":
                cfg = self.config
                alert |= on_firing(
                    self.store, alert, self.funnels, cfg.change_window_ms, cfg.drivers_lookback_ms
                )
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
