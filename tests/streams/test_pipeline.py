"""Against a real broker: every produced message is accepted, dead-lettered or dropped as a copy.

produced = accepted + dead-lettered + duplicates dropped, exactly, with every kind of noise on,
and the same after the worker restarts and everything is sent again.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from cxpulse.sinks.migrate import migrate
from cxpulse.sinks.store import ChdbStore
from cxpulse.streams.dlq import inspect, read_dead_letters, replay
from cxpulse.streams.simulator.config import SimConfig
from cxpulse.streams.simulator.noise import Message, NoiseConfig
from cxpulse.streams.simulator.output import send_to_kafka
from cxpulse.streams.simulator.run import GroundTruthCollector, Plan
from tests.support.workers import store_writer, wait_handled, wait_quiet, workers

NOISE = NoiseConfig(duplicates=0.03, out_of_order=0.03, late=0.02, malformed=0.03)


def _messages(count: int, seed: int) -> list[Message]:
    # An hour ago: in_future noise (+2 h) is then certainly in the future, too_old (-40 d) old.
    start_ms = time.time_ns() // 1_000_000 - 3_600_000
    return list(Plan(SimConfig(seed=seed, start_ms=start_ms, rate=20), NOISE, count).messages())


def test_every_message_is_accounted_for_exactly(
    fresh_env: dict[str, str], fresh_bootstrap: str, chdb_store: ChdbStore, tmp_path: Path
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
    with store_writer(chdb_store, fresh_bootstrap) as writer:
        with workers(fresh_env, tmp_path) as ports:
            c = wait_handled(ports, len(messages), tmp_path)
        wait_quiet(writer)

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
    with workers(fresh_env, tmp_path) as ports:
        wait_handled(ports, sum(sent.values()), tmp_path)
    again = inspect(read_dead_letters(fresh_bootstrap))
    assert again.by_reason["unknown_type"] == 2 * result.by_reason["unknown_type"]
    assert again.total == result.total + sum(sent.values())


def test_duplicates_are_dropped_across_a_restart(
    fresh_env: dict[str, str], fresh_bootstrap: str, tmp_path: Path
) -> None:
    """State comes back from the compacted topic: copies sent after a restart are still copies."""
    messages = [m for m in _messages(3000, seed=5) if m.kind == "event"]
    first, rest = messages[:2000], messages[2000:]
    for _ in send_to_kafka(first, fresh_bootstrap):
        pass
    with workers(fresh_env, tmp_path) as ports:
        c1 = wait_handled(ports, len(first), tmp_path)
    assert c1["cxpulse_events_accepted_total"] == 2000
    for _ in send_to_kafka(messages, fresh_bootstrap):  # everything again, plus the rest
        pass
    with workers(fresh_env, tmp_path) as ports:
        c2 = wait_handled(ports, len(messages), tmp_path)
    assert c2["cxpulse_events_accepted_total"] == len(rest)
    assert c2["cxpulse_events_duplicate_total"] == len(first)
    assert c2["cxpulse_dead_letters_total"] == 0
