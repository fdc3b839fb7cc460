"""The broker stops and starts again in the middle of a run: the same figures as without it.

Producers never give up on a message (`message.timeout.ms=0`), flushes wait, and both clients
(librdkafka in the ingest stage, producers and writer; aiokafka in faust) reconnect, so the
worker and the writer ride the outage out without a restart.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from cxpulse.deploy.kafka import KafkaBroker
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

DOWN_S = 5.0


@pytest.mark.timeout(180)
def test_the_pipeline_rides_out_a_broker_restart(
    broker: KafkaBroker,
    bootstrap: str,
    worker_env: dict[str, str],
    chdb_store: ChdbStore,
    tmp_path: Path,
) -> None:
    rng = random.Random(7101)
    now_ms = time.time_ns() // 1_000_000
    messages = history(now_ms - 8 * HOUR, 5000, seed=81)
    truth = ground_truth(messages, now_ms)
    migrate(chdb_store)
    with (
        writer_thread(chdb_store, bootstrap) as writer,
        worker_pool(worker_env, tmp_path) as pool,
    ):
        check = alive_check(pool, writer)
        worker = pool.start()
        traffic = TrafficThread(messages, bootstrap, seconds=15)
        traffic.start()
        pool.wait_handled(worker, int(rng.uniform(0.2, 0.5) * len(messages)))
        assert traffic.is_alive(), "the traffic should still be arriving when the broker stops"
        stored_before = sum(writer.writer.stats.rows_written.values())
        broker.stop()
        time.sleep(DOWN_S)
        check()
        broker.start(attached=True)
        traffic.finish()
        wait_drained(bootstrap, 120, check=check)
        stored_after = sum(writer.writer.stats.rows_written.values())
    # One worker process throughout: it was never restarted.
    assert [w.proc.pid for w in pool.all] == [worker.proc.pid]
    assert stored_after > stored_before
    assert assert_store_equals_truth(chdb_store, truth) > 200
    assert_each_message_counted_once(chdb_store, bootstrap, truth, messages, now_ms)
