"""Against a real broker: every produced message is accepted, dead-lettered or dropped as a copy.

produced = accepted + dead-lettered + duplicates dropped, exactly, with every kind of noise on,
and the same after the worker restarts and everything is sent again.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from cxpulse.deploy.kafka import free_port
from cxpulse.sinks.migrate import migrate
from cxpulse.sinks.store import ChdbStore
from cxpulse.sinks.writer import StoreWriter
from cxpulse.streams import topics
from cxpulse.streams.dlq import inspect, read_dead_letters, replay
from cxpulse.streams.simulator.model import SimConfig
from cxpulse.streams.simulator.noise import Message, NoiseConfig
from cxpulse.streams.simulator.output import send_to_kafka
from cxpulse.streams.simulator.run import GroundTruthCollector, Plan

NOISE = NoiseConfig(duplicates=0.03, out_of_order=0.03, late=0.02, malformed=0.03)


def _messages(count: int, seed: int) -> list[Message]:
    # An hour ago: in_future noise (+2 h) is then certainly in the future, too_old (-40 d) old.
    start_ms = time.time_ns() // 1_000_000 - 3_600_000
    return list(Plan(SimConfig(seed=seed, start_ms=start_ms, rate=20), NOISE, count).messages())


@contextmanager
def _worker(env: dict[str, str], log: Path) -> Iterator[int]:
    """A `cxpulse worker` process; yields its metrics port; stops it with SIGTERM."""
    port = free_port()
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cxpulse.deploy.cli", "worker", "--metrics-port", str(port)],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        yield port
    finally:
        proc.terminate()
        assert proc.wait(timeout=60) == 0, log.read_text()[-3000:]


def _counters(port: int) -> Counter[str]:
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
    except OSError:
        return Counter()
    totals: Counter[str] = Counter()
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            if sample.name.endswith("_total"):
                totals[sample.name] += int(sample.value)
    return totals


def _wait_for(port: int, produced: int, log: Path, timeout_s: float = 180) -> Counter[str]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        c = _counters(port)
        handled = (
            c["cxpulse_events_accepted_total"]
            + c["cxpulse_events_duplicate_total"]
            + c["cxpulse_dead_letters_total"]
        )
        if handled >= produced and c["cxpulse_ingest_messages_total"] >= produced:
            time.sleep(1)  # nothing more may arrive: a later count above produced would fail below
            return _counters(port)
        time.sleep(0.5)
    raise AssertionError(f"not all {produced} handled: {c}\n{log.read_text()[-3000:]}")


@pytest.fixture
def env(cli_env: dict[str, str], fresh_bootstrap: str) -> dict[str, str]:
    topics.ensure_topics(fresh_bootstrap, 4)
    return {**cli_env, "CXPULSE_KAFKA_BOOTSTRAP": fresh_bootstrap}


def test_every_message_is_accounted_for_exactly(
    env: dict[str, str], fresh_bootstrap: str, chdb_store: ChdbStore, tmp_path: Path
) -> None:
    messages = _messages(6000, seed=11)
    kinds = Counter(m.kind for m in messages)
    assert kinds["duplicate"] > 0
    assert kinds["malformed"] > 0
    collector = GroundTruthCollector()
    for message in messages:
        collector.observe(message)
    assert collector.counts["accepted"] == kinds["event"] == 6000
    for _ in send_to_kafka(messages, fresh_bootstrap):
        pass

    migrate(chdb_store)
    stop = threading.Event()
    writer = StoreWriter(chdb_store, fresh_bootstrap, topics.STORE_TABLES, flush_seconds=0.2)
    thread = threading.Thread(target=writer.run, args=(stop,))
    thread.start()
    log = tmp_path / "worker.log"
    try:
        with _worker(env, log) as port:
            c = _wait_for(port, len(messages), log)
        deadline = time.monotonic() + 60
        while writer.stats.rows_written.get("events_raw", 0) < 6000 and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        stop.set()
        thread.join(30)

    assert c["cxpulse_ingest_messages_total"] == len(messages)
    assert c["cxpulse_events_accepted_total"] == kinds["event"]
    assert c["cxpulse_events_duplicate_total"] == kinds["duplicate"]
    assert c["cxpulse_dead_letters_total"] == kinds["malformed"]
    stored = chdb_store.query("SELECT event_id FROM events_raw FINAL")
    assert sorted(r["event_id"] for r in stored) == sorted(collector.events)

    result = inspect(read_dead_letters(fresh_bootstrap))
    assert result.total == kinds["malformed"]
    assert Counter(result.by_reason) == Counter(
        m.expected_reason for m in messages if m.kind == "malformed"
    )
    originals = sorted(m.value for m in messages if m.kind == "malformed")
    assert sorted(d.original for d in read_dead_letters(fresh_bootstrap)) == originals

    # Replay after a "fix" that fixed nothing: the same bytes are dead-lettered again, exactly.
    sent = replay(read_dead_letters(fresh_bootstrap), fresh_bootstrap,
                  lambda d: d.reason == "unknown_type")  # fmt: skip
    with _worker(env, log) as port:
        _wait_for(port, sum(sent.values()), log)
    again = inspect(read_dead_letters(fresh_bootstrap))
    assert again.by_reason["unknown_type"] == 2 * result.by_reason["unknown_type"]
    assert again.total == result.total + sum(sent.values())


def test_duplicates_are_dropped_across_a_restart(
    env: dict[str, str], fresh_bootstrap: str, tmp_path: Path
) -> None:
    """State comes back from the compacted topic: copies sent after a restart are still copies."""
    messages = [m for m in _messages(3000, seed=5) if m.kind == "event"]
    first, rest = messages[:2000], messages[2000:]
    log = tmp_path / "worker.log"
    for _ in send_to_kafka(first, fresh_bootstrap):
        pass
    with _worker(env, log) as port:
        c1 = _wait_for(port, len(first), log)
    assert c1["cxpulse_events_accepted_total"] == 2000
    for _ in send_to_kafka(messages, fresh_bootstrap):  # everything again, plus the rest
        pass
    with _worker(env, log) as port:
        c2 = _wait_for(port, len(messages), log)
    assert c2["cxpulse_events_accepted_total"] == len(rest)
    assert c2["cxpulse_events_duplicate_total"] == len(first)
    assert c2["cxpulse_dead_letters_total"] == 0
