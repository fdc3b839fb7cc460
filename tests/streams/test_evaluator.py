"""The evaluator's bookkeeping on a real store: which grid points it evaluates, what it writes
to the alerts table, silences set through the table, and a restart that does not notify again.
The observations are scripted here (the queries have their own tests)."""

from __future__ import annotations

from typing import Any

from cxpulse.schemas.times import ch_time
from cxpulse.sinks import alert_queries
from cxpulse.sinks.alerts import silence
from cxpulse.sinks.migrate import migrate
from cxpulse.sinks.store import ChdbStore
from cxpulse.streams.alerting import DROPOFF, Observation, Thresholds
from cxpulse.streams.evaluator import AlertConfig, AlertEvaluator
from cxpulse.streams.funnels import load_funnels
from cxpulse.streams.stage import ALLOWED_LATENESS_MS

T0 = 1_790_000_010_000  # on the 30 s grid
RISING = Observation(DROPOFF, "self_service", "diagnose", {"device": "mobile"}, 200, 400, 30, 100)
CALM = Observation(DROPOFF, "self_service", "diagnose", {"device": "mobile"}, 120, 400, 30, 100)


class Scripted(AlertEvaluator):
    """Observations from a script per grid point instead of the queries."""

    script: dict[int, list[Observation]]

    def observe(self, at_ms: int) -> list[Observation]:
        return self.script.get(at_ms, [])


class Recorder:
    def __init__(self) -> None:
        self.changes: list[tuple[str, str, bool]] = []

    def publish(self, change: str, alert: dict[str, Any], notify: bool) -> None:
        self.changes.append((change, alert["id"], notify))


def _fresh_until(store: ChdbStore, until_ms: int) -> None:
    """Freshness rows saying every partition is complete up to `until_ms` (its watermark)."""
    newest = until_ms + ALLOWED_LATENESS_MS
    store.insert("freshness", [
        {"partition": p, "newest_event_at": ch_time(newest), "watermark_at": ch_time(until_ms),
         "updated_at": ch_time(newest)} for p in range(2)
    ])  # fmt: skip


def _evaluator(store: ChdbStore, recorder: Recorder, wall_ms: int) -> Scripted:
    config = AlertConfig(thresholds=Thresholds(fire_after=2, resolve_after=2))
    evaluator = Scripted(store, load_funnels(), config, [recorder], clock=lambda: wall_ms)
    evaluator.script = {T0 + i * 30_000: [RISING] for i in range(0, 4)}
    evaluator.script |= {T0 + i * 30_000: [CALM] for i in range(4, 8)}
    return evaluator


def test_grid_points_firing_resolving_and_the_table(chdb_store: ChdbStore) -> None:
    migrate(chdb_store)
    recorder = Recorder()
    evaluator = _evaluator(chdb_store, recorder, T0)
    assert evaluator.run_once() == 0  # no data yet
    _fresh_until(chdb_store, T0 + 5_000)
    assert evaluator.run_once() == 0  # the first sight of the data only settles it
    _fresh_until(chdb_store, T0 + 95_000)
    assert evaluator.run_once() == 1  # T0 (what the previous round saw complete)
    assert evaluator.run_once() == 3  # T0 + 30 s, + 60 s, + 90 s
    assert recorder.changes == [("firing", RISING.id, True)]  # at T0 + 30 s, once
    (row,) = alert_queries.alerts(chdb_store)
    assert (row["state"], row["started_ms"], row["resolved_ms"]) == ("firing", T0 + 30_000, None)
    assert row["window_journeys"] == 400
    assert row["current_rate"] == 0.5
    _fresh_until(chdb_store, T0 + 300_000)
    evaluator.run_once()
    evaluator.run_once()
    # Calm from T0 + 120 s: clean at +120 s and +150 s, resolved at +150 s.
    assert recorder.changes[1:] == [("resolved", RISING.id, True)]
    (row,) = alert_queries.alerts(chdb_store)
    assert (row["state"], row["resolved_ms"]) == ("resolved", T0 + 150_000)


def test_a_restart_keeps_firing_alerts_and_silences_mute_notifications(
    chdb_store: ChdbStore,
) -> None:
    migrate(chdb_store)
    first = Recorder()
    evaluator = _evaluator(chdb_store, first, T0)
    _fresh_until(chdb_store, T0)
    evaluator.run_once()
    _fresh_until(chdb_store, T0 + 60_000)
    evaluator.run_once()
    evaluator.run_once()
    assert first.changes == [("firing", RISING.id, True)]
    silence(chdb_store, RISING.id, T0 + 3_600_000, T0)
    # A new evaluator (a restarted process) neither fires again nor forgets the silence.
    again = Recorder()
    restarted = _evaluator(chdb_store, again, T0 + 1)
    restarted.last_at = T0 + 60_000
    _fresh_until(chdb_store, T0 + 300_000)
    restarted.run_once()
    restarted.run_once()
    assert again.changes == [("resolved", RISING.id, False)]  # silenced: recorded, not notified
    row = alert_queries.alert(chdb_store, RISING.id)
    assert row is not None
    assert (row["state"], row["silenced_ms"]) == ("resolved", T0 + 3_600_000)
    assert row["started_ms"] == T0 + 30_000  # carried from the stored alert
