"""The store writer killed with SIGKILL between an insert and its commit, again and again: the
figures in the store still equal the ground truth.

A writer inserts its buffered rows table by table and commits the offsets that consumed them
only when every table is inserted. A kill in between leaves rows in the store whose offsets are
not committed; the next writer reads them again and inserts them a second time, and the
ReplacingMergeTree tables (read with FINAL) collapse the copies. The kills are placed exactly
by tests/support/kill_points.py, which runs the production writer with its store's `insert`
wrapped to SIGKILL the process after the N-th insert returned.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from cxpulse.sinks.store import ChdbStore
from cxpulse.streams.simulator.output import send_to_kafka
from tests.support import kill_points
from tests.support.kafka import PIPELINE, STORE_TOPICS, WRITER_GROUP, wait_drained
from tests.support.rows import row_count
from tests.support.truth import (
    HOUR,
    assert_each_message_counted_once,
    assert_store_equals_truth,
    ground_truth,
    history,
)
from tests.support.workers import worker_pool

# A writer takes one message a poll (one row, or the hundreds the row batcher puts in one) and
# flushes once it holds 600 rows: flushes of one or several tables, about seven over the run's
# 3,900 rows. More messages a poll would make one flush of all of it once rows are batched.
POLL_MESSAGES = 1
BATCH_ROWS = 600


@pytest.mark.timeout(180)
def test_a_writer_killed_between_insert_and_commit_stores_every_row_once(
    bootstrap: str, worker_env: dict[str, str], tmp_path: Path
) -> None:
    """The journey side first fills the store topics (a worker, no writer), so the writers
    then face one fixed backlog. Four writer processes in turn kill themselves after their
    N-th insert (N from a seeded generator: a kill falls after a flush's first table, or
    after a later one, while other tables of the flush may still wait); a fifth finishes and
    exits on SIGTERM. The insert log shows that each killed writer had inserted rows it had
    not committed, and that exactly those rows were inserted a second time: all the inserts
    together are the rows on the store topics plus the killed writers' uncommitted ones. The
    store (opened once no writer runs: chdb admits one process) still holds the ground truth."""
    rng = random.Random(1408)
    started = time.monotonic()
    now_ms = time.time_ns() // 1_000_000
    messages = history(now_ms - 8 * HOUR, 3000, seed=148)
    truth = ground_truth(messages, now_ms)
    for _ in send_to_kafka(messages, bootstrap):
        pass
    with worker_pool(worker_env, tmp_path) as pool:
        pool.start()
        wait_drained(bootstrap, 120, check=pool.check, groups=PIPELINE[:2])
    rows = {t: sum(row_count(v) for v in kill_points.topic_values(bootstrap, t))
            for t in STORE_TOPICS}  # fmt: skip
    journey_side_s = time.monotonic() - started

    env = {**worker_env, "CXPULSE_WRITER_BATCH_ROWS": str(BATCH_ROWS)}
    log = tmp_path / "writer-kill-points.jsonl"
    # A killed writer commits at most N - 1 flushes of about BATCH_ROWS rows (plus one
    # message's), so the four cannot finish the backlog before their kill points: each must die.
    kill_after = [rng.randint(1, 6) for _ in range(4)]
    for n in kill_after:
        proc = kill_points.start("writer", env, log, kill_after=n, poll_messages=POLL_MESSAGES)
        kill_points.wait_killed(proc, log, "writer")
    last = kill_points.start("writer", env, log, poll_messages=POLL_MESSAGES)

    def check() -> None:
        assert last.poll() is None, kill_points.output_tail(log, "writer")

    wait_drained(bootstrap, 60, check=check, groups=[(WRITER_GROUP, STORE_TOPICS)])
    last.terminate()
    assert last.wait(timeout=60) == 0, kill_points.output_tail(log, "writer")

    processes = list(kill_points.by_process(kill_points.read_log(log)).values())
    assert len(processes) == len(kill_after) + 1
    uncommitted = []
    for n, steps in zip(kill_after, processes, strict=False):
        inserts = [s for s in steps if s["what"] == "insert"]
        assert len(inserts) == n, steps
        assert steps[-1]["what"] == "kill", steps
        assert steps[-2]["what"] == "insert", "the kill must follow an insert, not a commit"
        left = [s for s in kill_points.after_last_commit(steps) if s["what"] == "insert"]
        uncommitted.append(sum(s["rows"] for s in left))
    inserted = sum(s["rows"] for steps in processes for s in steps if s["what"] == "insert")
    print(f"journey side {journey_side_s:.0f} s; store rows {rows}; kills after inserts "
          f"{kill_after} left {uncommitted} rows uncommitted; {inserted} rows inserted; "
          f"done after {time.monotonic() - started:.0f} s")  # fmt: skip
    # Every kill left inserted rows uncommitted, and exactly those were inserted again.
    assert all(left > 0 for left in uncommitted), uncommitted
    assert inserted == sum(rows.values()) + sum(uncommitted)
    assert processes[-1][-1]["what"] == "exit"

    with ChdbStore(Path(env["CXPULSE_DATA_DIR"]) / "chdb", "cxpulse") as store:
        assert assert_store_equals_truth(store, truth) > 100
        assert_each_message_counted_once(store, bootstrap, truth, messages, now_ms)
