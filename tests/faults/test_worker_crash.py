"""Workers killed with SIGKILL mid-run: the figures in ClickHouse still equal the ground truth.

A killed worker flushes nothing, commits nothing and does not leave its consumer groups. What it
did not commit is redone by whoever owns its partitions next: state comes back from the
compacted state topic, copies are dropped by event_id, and snapshots are versioned, so nothing
is lost and nothing counts twice.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import KafkaException

from cxpulse.sinks.migrate import migrate
from cxpulse.sinks.store import ChdbStore
from cxpulse.streams import topics
from cxpulse.streams.ingest_stage import IngestStage
from cxpulse.streams.producer import JsonProducer
from cxpulse.streams.simulator.noise import Message
from tests.support.kafka import (
    INGEST_GROUP,
    JOURNEYS_GROUP,
    RowsProduced,
    TrafficThread,
    assignments,
    behind,
    produced,
    wait_drained,
)
from tests.support.truth import (
    HOUR,
    assert_each_message_counted_once,
    assert_store_equals_truth,
    ground_truth,
    history,
)
from tests.support.workers import alive_check, worker_pool, writer_thread

INPUT_TOPICS = tuple(t.name for t in topics.INPUT_TOPICS)


@pytest.mark.timeout(240)
def test_a_worker_killed_three_times_loses_and_doubles_nothing(
    bootstrap: str, worker_env: dict[str, str], chdb_store: ChdbStore, tmp_path: Path
) -> None:
    """The traffic is ingested first, in many small polls as live traffic would be (a burst
    sent before the workers start makes a handful of 1,000-event batches, all processed before
    faust's first commit). Kill points are then drawn as shares of the run's progress (accepted
    events whose rows are in Kafka, which survives the kills), so they spread over the run
    between commits; each lands a random fraction of a second after its share is reached, and
    only once the new process has worked. The agent takes 4 keyed messages at a time (50 by
    default), so the run has about 40 commit points for the kills to fall between."""
    worker_env = {**worker_env, "CXPULSE_WORKER_GROUP_MESSAGES": "4"}
    rng = random.Random(7001)
    now_ms = time.time_ns() // 1_000_000
    messages = history(now_ms - 8 * HOUR, 6000, seed=71)
    truth = ground_truth(messages, now_ms)
    accepted = truth["messages"]["accepted"]
    migrate(chdb_store)
    started = time.monotonic()
    batches = _ingest_in_small_polls(messages, bootstrap, polls=40)
    kills: list[dict[str, int]] = []
    with (
        writer_thread(chdb_store, bootstrap) as writer,
        worker_pool(worker_env, tmp_path) as pool,
        RowsProduced(bootstrap, topics.STORE_EVENTS_RAW.name) as raw_rows,
    ):
        check = alive_check(pool, writer)
        worker = pool.start()
        for share in sorted(rng.uniform(0.1, 0.9) for _ in range(3)):
            deadline = time.monotonic() + 120
            while raw_rows() < share * accepted or worker.handled() == 0:
                check()
                assert time.monotonic() < deadline, f"no progress to {share:.0%} in 120 s"
                time.sleep(0.05)
            time.sleep(rng.uniform(0.0, 0.3))
            handled = worker.handled()
            pool.kill(worker)
            left = sum(behind(bootstrap, JOURNEYS_GROUP, [topics.KEYED.name]).values())
            kills.append({"share": round(share * 100), "handled": handled, "keyed_left": left,
                          "t": round(time.monotonic() - started)})  # fmt: skip
            worker = pool.start()
        wait_drained(bootstrap, 150, check=check)
    print(f"{batches} keyed batches; kills: {kills}; done after {time.monotonic() - started:.0f} s")
    # Every kill hit the run in flight (keyed batches uncommitted), and not all at its start.
    assert all(kill["keyed_left"] > 0 for kill in kills), kills
    assert any(kill["keyed_left"] < batches for kill in kills), kills
    assert assert_store_equals_truth(chdb_store, truth) > 200
    assert_each_message_counted_once(chdb_store, bootstrap, truth, messages, now_ms)


def _ingest_in_small_polls(messages: list[Message], bootstrap: str, polls: int) -> int:
    """Send the traffic in `polls` parts and run the real ingest stage (in this process, in the
    workers' group, which it then leaves) over each part; returns the keyed batches written."""
    stage = IngestStage(bootstrap)
    producer = JsonProducer(bootstrap)
    step = -(-len(messages) // polls)
    try:
        for start in range(0, len(messages), step):
            part = messages[start : start + step]
            for message in part:
                producer.send(message.topic, message.key, message.value)
            producer.flush()
            consumed, deadline = 0, time.monotonic() + 60
            while consumed < len(part):
                assert time.monotonic() < deadline, "the ingest stage consumed too little"
                consumed += stage.poll_once(0.05)
    finally:
        stage.consumer.close()
    return produced(bootstrap, topics.KEYED.name)


@pytest.mark.timeout(240)
def test_the_survivor_takes_over_a_killed_workers_partitions(
    bootstrap: str, worker_env: dict[str, str], chdb_store: ChdbStore, tmp_path: Path
) -> None:
    """Two workers share the partitions while traffic arrives; one is killed; the other owns
    every input and keyed partition once the dead member's sessions expire, and finishes."""
    rng = random.Random(7002)
    now_ms = time.time_ns() // 1_000_000
    messages = history(now_ms - 8 * HOUR, 6000, seed=72)
    truth = ground_truth(messages, now_ms)
    migrate(chdb_store)
    with (
        writer_thread(chdb_store, bootstrap) as writer,
        worker_pool(worker_env, tmp_path) as pool,
    ):
        survivor, victim = pool.start(), pool.start()
        check = alive_check(pool, writer)
        _wait_members(bootstrap, 2, check)
        traffic = TrafficThread(messages, bootstrap, seconds=20)
        traffic.start()
        pool.wait_handled(victim, int(rng.uniform(0.1, 0.3) * len(messages) / 2))
        pool.kill(victim)
        killed_at = time.monotonic()
        owners = _wait_members(bootstrap, 1, check)
        takeover_s = time.monotonic() - killed_at
        traffic.finish()
        wait_drained(bootstrap, 120, check=check)
        assert survivor.proc.poll() is None
    print(f"takeover after {takeover_s:.1f} s; owners: {owners}")
    assert owners[JOURNEYS_GROUP] == {(topics.KEYED.name, p) for p in range(4)}
    assert owners[INGEST_GROUP] == {(t, p) for t in INPUT_TOPICS for p in range(4)}
    assert assert_store_equals_truth(chdb_store, truth) > 200
    assert_each_message_counted_once(chdb_store, bootstrap, truth, messages, now_ms)


def _wait_members(
    bootstrap: str, count: int, check: Callable[[], None], timeout_s: float = 90
) -> dict[str, set[tuple[str, int]]]:
    """Until the journey and ingest groups each have `count` members sharing all their
    partitions; returns each group's partitions when `count` is 1."""
    wanted = {
        JOURNEYS_GROUP: {(topics.KEYED.name, p) for p in range(4)},
        INGEST_GROUP: {(t, p) for t in INPUT_TOPICS for p in range(4)},
    }
    deadline = time.monotonic() + timeout_s
    seen: dict[str, dict[str, set[tuple[str, int]]]] = {}
    while time.monotonic() < deadline:
        check()
        try:
            seen = {group: assignments(bootstrap, group) for group in wanted}
        except KafkaException:  # the coordinator is still loading the group: ask again
            time.sleep(0.5)
            continue
        ok = True
        for group, partitions in wanted.items():
            members = {m: {tp for tp in tps if tp in partitions} for m, tps in seen[group].items()}
            owned = set().union(*members.values()) if members else set()
            if len(members) != count or owned != partitions or not all(members.values()):
                ok = False
        if ok:
            return {group: set().union(*seen[group].values()) & wanted[group] for group in wanted}
        time.sleep(0.5)
    raise AssertionError(f"groups never settled on {count} member(s): {seen}")
