"""Three workers join and leave repeatedly under load - started, stopped with SIGTERM, killed
with SIGKILL - and the figures still equal the ground truth.

Every join and every leave is a rebalance of the journey and ingest groups; a SIGKILL leaves a
dead member holding partitions until its session expires. Each taking-over worker fences the
partition's last producer before restoring committed state, so nothing is lost or doubled.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from cxpulse.sinks.migrate import migrate
from cxpulse.sinks.store import ChdbStore
from tests.support.kafka import TrafficThread, wait_drained
from tests.support.truth import (
    HOUR,
    assert_each_message_counted_once,
    assert_store_equals_truth,
    ground_truth,
    history,
)
from tests.support.workers import alive_check, worker_pool, writer_thread

# What happens every few seconds while the traffic arrives: the pool keeps 1 to 3 workers.
CHURN = ("start", "start", "term", "start", "kill", "start", "term", "kill", "start")


@pytest.mark.timeout(200)
def test_three_workers_joining_and_leaving_lose_and_double_nothing(
    bootstrap: str, worker_env: dict[str, str], chdb_store: ChdbStore, tmp_path: Path
) -> None:
    rng = random.Random(7301)
    now_ms = time.time_ns() // 1_000_000
    messages = history(now_ms - 8 * HOUR, 5000, seed=74)
    truth = ground_truth(messages, now_ms)
    migrate(chdb_store)
    started = time.monotonic()
    done: list[str] = []
    with (
        writer_thread(chdb_store, bootstrap) as writer,
        worker_pool(worker_env, tmp_path) as pool,
    ):
        check = alive_check(pool, writer)
        pool.start()
        traffic = TrafficThread(messages, bootstrap, seconds=30)
        traffic.start()
        for action in CHURN:
            _pause(check, rng.uniform(2.0, 4.0))
            victim = rng.choice(pool.alive)
            if action == "start" or len(pool.alive) == 1:
                pool.start()
                done.append("start")
            elif action == "term":
                pool.terminate(victim)
                done.append(f"term {victim.log.stem}")
            else:
                pool.kill(victim)
                done.append(f"kill {victim.log.stem}")
        traffic.finish()
        wait_drained(bootstrap, 90, check=check)
        survivors = len(pool.alive)
    print(f"churn: {done}; {survivors} workers at the end; {time.monotonic() - started:.0f} s")
    assert sum(1 for d in done if d.startswith("kill")) >= 1
    assert sum(1 for d in done if d.startswith("term")) >= 1
    assert assert_store_equals_truth(chdb_store, truth) > 100
    assert_each_message_counted_once(chdb_store, bootstrap, truth, messages, now_ms)


def _pause(check: Callable[[], None], seconds: float) -> None:
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        check()
        time.sleep(0.2)
