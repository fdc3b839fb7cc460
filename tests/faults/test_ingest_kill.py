"""The ingest stage killed with SIGKILL between its output flush and its commit, again and again:
the figures in the store still equal the ground truth.

The ingest stage routes a poll's messages, sends the keyed batches and dead letters, flushes them
(Kafka has them all) and only then commits the input offsets. A kill in between leaves the output
in Kafka and the input uncommitted, so the next ingest stage reads the same messages again and
sends them a second time. The journey stage drops the copied events by event_id and dead
letters are counted by source position, so nothing counts twice. The kills are placed exactly by
tests/support/kill_points.py, which runs the production ingest stage with its producer's `flush`
wrapped to SIGKILL the process after the N-th flush returned.

`cxpulse worker` always runs an ingest stage beside the journey agent (no setting or option runs
the agent alone), so the killed stages ingest all the input first and the worker starts only
then: the killed processes are the only ingest consumers, and the worker's own ingest stage finds
every input offset committed and consumes nothing (asserted).
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from cxpulse.schemas.validate import Rejection, validate
from cxpulse.sinks.migrate import migrate
from cxpulse.sinks.store import ChdbStore
from cxpulse.streams import topics
from cxpulse.streams.dlq import read_dead_letters
from cxpulse.streams.ingest import decode_batch
from cxpulse.streams.simulator.output import send_to_kafka
from tests.support import kill_points
from tests.support.kafka import PIPELINE, wait_drained
from tests.support.truth import (
    HOUR,
    assert_each_message_counted_once,
    assert_store_equals_truth,
    ground_truth,
    history,
)
from tests.support.workers import alive_check, counters, worker_pool, writer_thread

POLL_MESSAGES = 200  # input messages an ingest stage takes per poll: many flush/commit points
INPUT_TOPICS = {t.name for t in topics.INPUT_TOPICS}


@pytest.mark.timeout(180)
def test_an_ingest_stage_killed_between_flush_and_commit_counts_every_event_once(
    bootstrap: str, worker_env: dict[str, str], chdb_store: ChdbStore, tmp_path: Path
) -> None:
    """Three ingest processes in turn kill themselves after their N-th flush (N from a seeded
    generator); a fourth ingests the rest and exits on SIGTERM. The flush log shows that each
    killed batch was read and sent again: every input message went through the ingest stages
    once, plus once more for each message of a killed batch, and cx.keyed.v1 and the
    dead-letter topic hold exactly what the flushes sent. A worker and a writer then finish
    the run: the journey stage accepts each distinct event once and drops every other copy
    (the producer's and the re-read ones), and the store holds the ground truth."""
    rng = random.Random(1409)
    started = time.monotonic()
    now_ms = time.time_ns() // 1_000_000
    messages = history(now_ms - 8 * HOUR, 3000, seed=149)
    truth = ground_truth(messages, now_ms)
    valid = sum(not isinstance(validate(m.value, now_ms), Rejection) for m in messages)
    for _ in send_to_kafka(messages, bootstrap):
        pass

    log = tmp_path / "ingest-kill-points.jsonl"
    # A killed stage commits at most N - 1 polls of 200 messages: far from the 3,100 sent, so
    # each of the three reaches its kill point.
    kill_after = [rng.randint(1, 5) for _ in range(3)]
    for n in kill_after:
        proc = kill_points.start("ingest", worker_env, log, n, POLL_MESSAGES)
        kill_points.wait_killed(proc, log, "ingest")
    last = kill_points.start("ingest", worker_env, log, poll_messages=POLL_MESSAGES)

    def ingest_alive() -> None:
        assert last.poll() is None, kill_points.output_tail(log, "ingest")

    wait_drained(bootstrap, 60, check=ingest_alive, groups=PIPELINE[:1])
    last.terminate()
    assert last.wait(timeout=60) == 0, kill_points.output_tail(log, "ingest")
    ingest_s = time.monotonic() - started

    processes = list(kill_points.by_process(kill_points.read_log(log)).values())
    assert len(processes) == len(kill_after) + 1
    assert processes[-1][-1]["what"] == "exit"
    killed_batches = []
    for n, steps in zip(kill_after, processes, strict=False):
        assert sum(s["what"] == "flush" for s in steps) == n, steps
        # Nothing between the last flush and the kill: that batch is in Kafka, uncommitted.
        since = [s["what"] for s in kill_points.after_last_commit(steps) if s["what"] != "start"]
        assert since == ["flush", "kill"], steps
        killed_batches.append(steps[-2])
    flushes = [s for steps in processes for s in steps if s["what"] == "flush"]
    sent = {f: sum(s[f] for s in flushes) for f in ("inputs", "events", "records", "dead_letters")}
    again = {f: sum(b[f] for b in killed_batches) for f in sent}
    records = [r for v in kill_points.topic_values(bootstrap, topics.KEYED.name)
               if v is not None for r in decode_batch(v)]  # fmt: skip
    events = sum(not r.link for r in records)  # a contact's link copies are not events
    letters = sum(d.source_topic in INPUT_TOPICS for d in read_dead_letters(bootstrap))
    print(f"ingest {ingest_s:.0f} s; kills after flushes {kill_after} left batches "
          f"{killed_batches} uncommitted; {len(messages)} messages, {valid} valid; sent {sent}, "
          f"of which again {again}")  # fmt: skip
    # Every killed batch was read and sent again: each message went through once, and each
    # message of a killed batch once more.
    assert all(batch["events"] > 0 for batch in killed_batches), killed_batches
    assert sent["inputs"] == len(messages) + again["inputs"]
    assert sent["events"] == valid + again["events"]
    assert sent["dead_letters"] == len(messages) - valid + again["dead_letters"]
    # What the flushes sent is what the topics hold, the copies of the killed batches included.
    assert (len(records), events, letters) == (
        sent["records"],
        sent["events"],
        sent["dead_letters"],
    )

    migrate(chdb_store)
    with (
        writer_thread(chdb_store, bootstrap) as writer,
        worker_pool(worker_env, tmp_path) as pool,
    ):
        worker = pool.start()
        wait_drained(bootstrap, 120, check=alive_check(pool, writer))
        got = counters([worker.port])
    print(f"worker counters {dict(got)}; done after {time.monotonic() - started:.0f} s")
    # The worker ingested nothing itself; its journey stage accepted each distinct event once
    # and dropped every other keyed copy (the producer's duplicates and the re-read ones).
    assert got["cxpulse_ingest_messages_total"] == 0
    accepted = truth["messages"]["accepted"]
    assert got["cxpulse_events_accepted_total"] == accepted
    assert got["cxpulse_events_duplicate_total"] == events - accepted
    assert got["cxpulse_events_conflict_total"] == 0
    assert assert_store_equals_truth(chdb_store, truth) > 100
    assert_each_message_counted_once(chdb_store, bootstrap, truth, messages, now_ms)
