"""End to end on a real broker: funnel, contact-center and containment figures in ClickHouse
equal the ground truth exactly.

Simulated history with every kind of noise goes through Kafka into one or two worker processes
(4 partitions) and the store writer into chdb; the query module's figures for the (closed)
journeys must equal the independent ground truth computed from what was sent. The same holds for
a history file of days-old events replayed with `cxpulse replay` into a fresh stack.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from cxpulse.sinks.migrate import migrate
from cxpulse.sinks.store import ChdbStore
from cxpulse.streams.simulator.output import read_jsonl, send_to_kafka
from tests.support.truth import HOUR, assert_store_equals_truth, ground_truth, history
from tests.support.workers import store_writer, wait_handled, wait_quiet, workers


@pytest.mark.parametrize("worker_count", [1, 2])
def test_funnel_figures_equal_the_ground_truth(
    worker_count: int, fresh_env: dict[str, str], fresh_bootstrap: str, chdb_store: ChdbStore,
    tmp_path: Path,
) -> None:  # fmt: skip
    now_ms = time.time_ns() // 1_000_000
    messages = history(now_ms - 8 * HOUR, 16_000, seed=100 + worker_count)
    truth = ground_truth(messages, now_ms)
    migrate(chdb_store)
    for _ in send_to_kafka(messages, fresh_bootstrap):
        pass
    with (
        store_writer(chdb_store, fresh_bootstrap) as writer,
        workers(fresh_env, tmp_path, worker_count) as ports,
    ):
        wait_handled(ports, len(messages), tmp_path)
        wait_quiet(writer)
    assert assert_store_equals_truth(chdb_store, truth) > 500


def test_replaying_days_old_history_gives_the_same_figures(
    fresh_env: dict[str, str], fresh_bootstrap: str, chdb_store: ChdbStore, tmp_path: Path
) -> None:
    """History written by `cxpulse simulate` three days ago, sent by `cxpulse replay`."""
    history_file = tmp_path / "history.jsonl"
    subprocess.run(
        [sys.executable, "-m", "cxpulse.deploy.cli", "simulate", "--output", str(history_file),
         "--fast", "--start", "-80h", "--count", "12000", "--rate", "2", "--seed", "9",
         "--duplicates", "0.03", "--out-of-order", "0.03", "--late", "0.02", "--malformed", "0.01"],
        env=fresh_env, check=True, capture_output=True,
    )  # fmt: skip
    messages = list(read_jsonl(history_file))
    truth = ground_truth(messages, time.time_ns() // 1_000_000)
    migrate(chdb_store)
    subprocess.run(
        [sys.executable, "-m", "cxpulse.deploy.cli", "replay", str(history_file)],
        env=fresh_env, check=True, capture_output=True,
    )  # fmt: skip
    with (
        store_writer(chdb_store, fresh_bootstrap) as writer,
        workers(fresh_env, tmp_path, 2) as ports,
    ):
        wait_handled(ports, len(messages), tmp_path)
        wait_quiet(writer)
    assert assert_store_equals_truth(chdb_store, truth) > 500
