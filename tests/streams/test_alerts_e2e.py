"""Alerting end to end on a real broker: simulated traffic through the worker and the writer into
chdb, the evaluator judging every 30 s of event time as the data arrives.

- An incident that raises drop-off at one funnel step for one segment by 20 percentage points
  fires an alert for that step and segment within 10 minutes of event time, and the alert
  resolves after the incident ends; no alert fires before the incident.
- A day of steady traffic fires no alert at all.
- When traffic stops in the middle of an incident, evaluation goes on with the wall clock: the
  incident's drop-off alert and the no_data alert fire within 10 minutes of wall time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from cxpulse.sinks.alert_queries import alerts as stored_alerts
from cxpulse.sinks.migrate import migrate
from cxpulse.sinks.store import ChdbStore
from cxpulse.streams.evaluator import AlertConfig, AlertEvaluator
from cxpulse.streams.funnels import load_funnels
from cxpulse.streams.simulator.config import Incident, SimConfig
from cxpulse.streams.simulator.noise import Message
from cxpulse.streams.simulator.output import send_to_kafka
from cxpulse.streams.simulator.run import Plan
from tests.support.workers import store_writer, wait_handled, wait_quiet, workers

MINUTE = 60_000
HOUR = 60 * MINUTE


class Recorder:
    """An alert sink that keeps every change it is given."""

    def __init__(self) -> None:
        self.changes: list[tuple[str, dict[str, Any]]] = []

    def publish(self, change: str, alert: dict[str, Any], notify: bool) -> None:
        assert notify  # nothing is silenced here
        self.changes.append((change, alert))


def _chunks(messages: list[Message], edges: list[int]) -> Iterator[list[Message]]:
    """Messages split at event-time edges (each message goes where its event time falls)."""

    def at(message: Message) -> int:
        return int(datetime.fromisoformat(orjson.loads(message.value)["occurred_at"]).timestamp())

    pieces: list[list[Message]] = [[] for _ in range(len(edges) + 1)]
    for message in messages:
        t = at(message) * 1000
        pieces[sum(1 for edge in edges if t >= edge)].append(message)
    yield from pieces


def _run(
    config: SimConfig, hours: float, evaluate_from_ms: int, bootstrap: str, env: dict[str, str],
    store: ChdbStore, tmp_path: Path, alert_config: AlertConfig, slice_ms: int,
) -> tuple[Recorder, int]:  # fmt: skip
    """Send the traffic in slices of event time; after each slice is stored, let the evaluator
    catch up (it evaluates every 30 s grid point the stored data covers)."""
    messages = list(Plan(config, duration_ms=int(hours * HOUR)).messages())
    migrate(store)
    recorder = Recorder()
    evaluator = AlertEvaluator(store, load_funnels(), alert_config, [recorder])
    edges = list(range(evaluate_from_ms, config.start_ms + int(hours * HOUR), slice_ms))
    evaluations, evaluating_s, started, sent = 0, 0.0, time.monotonic(), 0
    with store_writer(store, bootstrap) as writer, workers(env, tmp_path, 1) as ports:
        for piece in [*_chunks(messages, edges), []]:
            for _ in send_to_kafka(piece, bootstrap):
                sent += 1
            wait_handled(ports, sent, tmp_path)
            wait_quiet(writer, quiet_s=1.0)
            began = time.monotonic()
            evaluations += evaluator.run_once()  # up to what the previous slice completed
            evaluating_s += time.monotonic() - began
    print(
        f"{len(messages):,} messages, {evaluations} evaluations in {evaluating_s:.1f} s, "
        f"{time.monotonic() - started:.0f} s in all"
    )
    return recorder, evaluations


def test_an_incident_fires_for_its_step_and_segment_within_10_minutes_and_resolves(
    fresh_env: dict[str, str], fresh_bootstrap: str, chdb_store: ChdbStore, tmp_path: Path
) -> None:
    now = time.time_ns() // 1_000_000
    start = now - now % MINUTE - 4 * HOUR
    begins, ends = start + 2 * HOUR, start + 3 * HOUR
    incident = Incident(step="identify_device", segment={"tier": "consumer"},
                        start_ms=begins, end_ms=ends, extra_dropoff=0.20)  # fmt: skip
    config = SimConfig(seed=21, start_ms=start, rate=15.0, incidents=(incident,))
    recorder, evaluations = _run(config, 4, begins - 30 * MINUTE, fresh_bootstrap, fresh_env,
                                 chdb_store, tmp_path, AlertConfig(), 10 * MINUTE)  # fmt: skip
    assert evaluations >= 275  # every 30 s from 30 min before the incident to the end
    fired = [a for change, a in recorder.changes if change == "firing"]
    assert all(a["started_ms"] >= begins for a in fired), "an alert fired before the incident"
    assert {a["step"] for a in fired} == {"identify_device"}
    target = "dropoff_rising/self_service/identify_device/tier=consumer"
    mine = [a for a in fired if a["id"] == target]
    assert mine, [a["id"] for a in fired]
    delay_min = (mine[0]["started_ms"] - begins) / MINUTE
    print(f"incident alert fired {delay_min:.1f} min of event time after the incident began; "
          f"z={mine[0]['z']:.2f}, {mine[0]['current_rate']:.3f} vs {mine[0]['baseline_rate']:.3f}"
          f" over {mine[0]['window_journeys']} journeys")  # fmt: skip
    assert delay_min <= 10
    resolved = [a for change, a in recorder.changes if change == "resolved" and a["id"] == target]
    assert resolved
    assert resolved[-1]["resolved_ms"] > ends
    print(f"resolved {(resolved[-1]['resolved_ms'] - ends) / MINUTE:.1f} min after it ended")
    # The table holds the same story: resolved, with both timestamps.
    row = next(r for r in stored_alerts(chdb_store) if r["id"] == target)
    assert (row["state"], row["started_ms"], row["resolved_ms"]) == (
        "resolved", mine[-1]["started_ms"], resolved[-1]["resolved_ms"])  # fmt: skip


def test_a_day_of_steady_traffic_fires_nothing(
    fresh_env: dict[str, str], fresh_bootstrap: str, chdb_store: ChdbStore, tmp_path: Path
) -> None:
    now = time.time_ns() // 1_000_000
    start = now - now % MINUTE - 26 * HOUR
    config = SimConfig(seed=22, start_ms=start, rate=1.0)
    # Slices of 100 min: 200 grid points a round, within the evaluator's catch-up of 240.
    recorder, evaluations = _run(config, 26, start + 2 * HOUR, fresh_bootstrap, fresh_env,
                                 chdb_store, tmp_path, AlertConfig(), 100 * MINUTE)  # fmt: skip
    assert evaluations >= 2 * 24 * 60  # every 30 s of 24 hours
    assert recorder.changes == []
    assert stored_alerts(chdb_store) == []


@pytest.mark.timeout(900)  # waits up to 10 min of wall time for the alerts (about 1 here)
def test_when_traffic_stops_mid_incident_its_alert_and_no_data_fire_within_10_minutes(
    fresh_env: dict[str, str], fresh_bootstrap: str, chdb_store: ChdbStore, tmp_path: Path
) -> None:
    """50 minutes of traffic, an incident in its last 30, sent at once and then nothing (a
    dead producer, a broken portal). The evaluator runs on the wall clock as in a live stack,
    with small settings (a 5 s grid, a 3 min window, tau capped at 2 min, no_data after 60 s).
    Once the partitions are quiet, the watermark is the wall clock minus the 2 min lateness; the
    traffic's event times end 150 s before it is sent (a producer that buffered, then died), so
    the test needs not wait out the lateness: from event time alone nothing past the last event
    minus 2 min would ever be evaluated, and neither alert could fire."""
    now = time.time_ns() // 1_000_000
    end = now - 150_000
    begins = end - 30 * MINUTE
    incident = Incident(step="identify_device", segment={"tier": "consumer"}, start_ms=begins,
                        extra_dropoff=0.20)  # fmt: skip
    config = SimConfig(seed=23, start_ms=end - 50 * MINUTE, rate=15.0, incidents=(incident,))
    messages = list(Plan(config, duration_ms=50 * MINUTE).messages())
    alert_config = AlertConfig(every_ms=5_000, window_ms=3 * MINUTE, baseline_ms=45 * MINUTE,
                               tau_cap_ms=2 * MINUTE, no_data_ms=MINUTE)  # fmt: skip
    migrate(chdb_store)
    recorder = Recorder()
    evaluator = AlertEvaluator(chdb_store, load_funnels(), alert_config, [recorder])
    target = "dropoff_rising/self_service/identify_device/tier=consumer"
    silence = "no_data/self_service/session_started"
    stop = threading.Event()
    thread = threading.Thread(target=evaluator.run, args=(stop, 1.0), name="alerts")
    with store_writer(chdb_store, fresh_bootstrap), workers(fresh_env, tmp_path, 1) as ports:
        thread.start()
        try:
            sent = sum(1 for _ in send_to_kafka(messages, fresh_bootstrap))
            stopped = time.monotonic()  # the last message is sent: traffic stops here
            fired_after: dict[str, float] = {}
            while len(fired_after) < 2 and time.monotonic() - stopped < 600:
                for change, alert in list(recorder.changes):
                    if change == "firing" and alert["id"] in (target, silence):
                        fired_after.setdefault(alert["id"], time.monotonic() - stopped)
                time.sleep(1)
            wait_handled(ports, sent, tmp_path)
        finally:
            stop.set()
            thread.join(60)
    delays = ", ".join(f"{alert} in {delay:.0f} s" for alert, delay in fired_after.items())
    print(f"{sent:,} messages; after traffic stopped, fired {delays} of wall time; evaluated up "
          f"to {((evaluator.last_at or end) - end) / 1000:.0f} s past the last event")  # fmt: skip
    assert set(fired_after) == {target, silence}, [a["id"] for _, a in recorder.changes]
    assert max(fired_after.values()) <= 600
    fired = [a for change, a in recorder.changes if change == "firing"]
    assert all(a["started_ms"] >= begins for a in fired), "an alert fired before the incident"
    silent = next(a for a in fired if a["id"] == silence)
    # None of the journeys the baseline rate expected in that minute (about 100) arrived.
    assert (silent["window_journeys"], silent["current_rate"], silent["baseline_rate"]) == (
        0, 0.0, 1.0)  # fmt: skip
    assert silent["z"] > 10
