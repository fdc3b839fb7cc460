"""A worker frozen (SIGSTOP) past the session timeout while another takes its partitions over,
then resumed (SIGCONT) under load: the figures still equal the ground truth.

The frozen worker keeps its sockets and whatever transaction it had open. The survivor's
`init_transactions()` for each partition it takes over fences the frozen worker's producer and
aborts that transaction; the survivor then restores committed state only. Resumed, the frozen
worker finds its producer fenced at its next commit and exits (70) before acknowledging
anything, or finds out from the group that its partitions are gone: either way nothing it
writes for them becomes visible to a read_committed reader (the store writer, the restore).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from cxpulse.sinks.migrate import migrate
from cxpulse.sinks.store import ChdbStore
from cxpulse.streams import topics
from tests.support.kafka import JOURNEYS_GROUP, TrafficThread, assignments, wait_drained
from tests.support.truth import (
    HOUR,
    assert_each_message_counted_once,
    assert_store_equals_truth,
    ground_truth,
    history,
)
from tests.support.workers import alive_check, worker_pool, writer_thread

KEYED = {(topics.KEYED.name, p) for p in range(4)}


@pytest.mark.timeout(180)
def test_a_frozen_worker_resumed_after_a_takeover_changes_nothing(
    bootstrap: str, worker_env: dict[str, str], chdb_store: ChdbStore, tmp_path: Path
) -> None:
    now_ms = time.time_ns() // 1_000_000
    messages = history(now_ms - 8 * HOUR, 4000, seed=73)
    truth = ground_truth(messages, now_ms)
    migrate(chdb_store)
    started = time.monotonic()
    with (
        writer_thread(chdb_store, bootstrap) as writer,
        worker_pool(worker_env, tmp_path) as pool,
    ):
        check = alive_check(pool, writer)
        survivor, frozen = pool.start(), pool.start()
        owners = wait_owners(bootstrap, 2, check)
        traffic = TrafficThread(messages, bootstrap, seconds=25)
        traffic.start()
        pool.wait_handled(frozen, 400)
        before = transactions(frozen.port)
        pool.freeze(frozen)
        frozen_at = time.monotonic()
        # The frozen worker may exit 70 once resumed: fenced, it must not write again.
        frozen.may_exit = frozenset({70})
        owners = wait_owners(bootstrap, 1, check)
        takeover_s = time.monotonic() - frozen_at
        done = survivor.handled()
        pool.wait_handled(survivor, done + 200)  # the survivor works on the taken partitions
        pool.resume(frozen)
        traffic.finish()
        wait_drained(bootstrap, 90, check=check)
        fate = frozen.proc.poll()
        after = transactions(frozen.port) if fate is None else {}
    log = frozen.log.read_text()
    aborted = aborted_messages(bootstrap, topics.STATE.name)
    print(f"takeover after {takeover_s:.1f} s; frozen worker: exit {fate}, transactions "
          f"{before} -> {after or 'gone'}; {aborted} state messages in aborted transactions; "
          f"{time.monotonic() - started:.0f} s")  # fmt: skip
    assert len(owners) == 1
    assert set().union(*owners.values()) == KEYED
    if fate is not None:  # it found out by its commit failing as fenced, and wrote nothing
        assert fate == 70, log[-3000:]
        assert "fenced" in log, log[-3000:]
    assert assert_store_equals_truth(chdb_store, truth) > 100
    assert_each_message_counted_once(chdb_store, bootstrap, truth, messages, now_ms)


def transactions(port: int) -> dict[str, int]:
    """Committed journey transactions of one worker, by keyed partition."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return {
        s.labels["partition"]: int(s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "cxpulse_journey_transactions_total"
    }


def wait_owners(
    bootstrap: str, count: int, check: Callable[[], None], timeout_s: float = 60
) -> dict[str, set[tuple[str, int]]]:
    """Until `count` members of the journey group share every keyed partition."""
    deadline = time.monotonic() + timeout_s
    seen: dict[str, set[tuple[str, int]]] = {}
    while time.monotonic() < deadline:
        check()
        try:
            seen = {m: tps & KEYED for m, tps in assignments(bootstrap, JOURNEYS_GROUP).items()}
        except KafkaException:  # the coordinator is still loading the group
            seen = {}
        if len(seen) == count and all(seen.values()) and set().union(*seen.values()) == KEYED:
            return seen
        time.sleep(0.3)
    raise AssertionError(f"the journey group never settled on {count} member(s): {seen}")


def aborted_messages(bootstrap: str, topic: str) -> int:
    """Messages of `topic` only a read_uncommitted reader sees: writes of aborted (or fenced)
    transactions."""
    counts = []
    for isolation in ("read_uncommitted", "read_committed"):
        consumer = Consumer(
            {"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex,
             "enable.auto.commit": False, "isolation.level": isolation}
        )  # fmt: skip
        try:
            tps = [TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(4)]
            ends = [consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in tps]
            consumer.assign(tps)
            seen, deadline = 0, time.monotonic() + 30
            while time.monotonic() < deadline:
                seen += sum(1 for m in consumer.consume(1000, timeout=0.3) if m.error() is None)
                positions = consumer.position([TopicPartition(topic, p) for p in range(4)])
                if all(tp.offset >= end for tp, end in zip(positions, ends, strict=True)):
                    break
            counts.append(seen)
        finally:
            consumer.close()
    return counts[0] - counts[1]
