"""A store writer or an ingest stage that SIGKILLs itself at an exact point of its work.

    python -m tests.support.kill_points writer --log FILE [--kill-after N] [--poll-messages M]
    python -m tests.support.kill_points ingest --log FILE [--kill-after N] [--poll-messages M]

Configured like `cxpulse writer` and `cxpulse worker` (CXPULSE_DATA_DIR, CXPULSE_KAFKA_BOOTSTRAP,
...). The production classes run unchanged; only what they are handed is wrapped, from outside:

- writer: the store's `insert`. After the N-th insert that returned, the process kills itself,
  so the rows are in the store and the offsets that consumed them are not committed.
- ingest: the output producer's `flush`. After the N-th flush returned (the keyed batches and
  dead letters are acknowledged by Kafka), the process kills itself before `consumer.commit`.

Without --kill-after the process runs until SIGTERM, finishing as the real one does.

Each step is appended to the log as one JSON line with the process id, written with one
unbuffered write so that a line is in the file before the kill that follows it: `insert`
(table, rows), `flush` (the batch's input messages, the valid events among them, the records
sent to cx.keyed.v1 (an event plus its link copies), dead letters), `commit`, and `kill`. The
fault tests compute from it what each kill left uncommitted.

Two settings of the consumer are changed, neither on the path being tested: a poll takes at
most --poll-messages messages (so a small backlog makes many insert/flush-and-commit points
to kill at), and the consumer is a static member of its group with a 6 s session, so a
restarted process takes its dead predecessor's place at once instead of waiting for the dead
member's session to expire.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

REPO = Path(__file__).resolve().parents[2]

STATIC_MEMBER = "kill-points-{role}"
SESSION_MS = 6000  # the broker's default group.min.session.timeout.ms


class Log:
    """Appends one JSON line per step; each line reaches the file in one write(2)."""

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def write(self, what: str, **fields: Any) -> None:
        os.write(self.fd, orjson.dumps({"pid": os.getpid(), "what": what, **fields}) + b"\n")


def start(
    role: str,
    env: dict[str, str],
    log: Path,
    kill_after: int | None = None,
    poll_messages: int = 10_000,
) -> subprocess.Popen[bytes]:
    """This module as a process of its own (output beside the log, as <log>.<role>.out)."""
    cmd = [sys.executable, "-m", "tests.support.kill_points", role, "--log", str(log),
           "--poll-messages", str(poll_messages)]  # fmt: skip
    if kill_after is not None:
        cmd += ["--kill-after", str(kill_after)]
    with log.with_suffix(f".{role}.out").open("ab") as out:
        return subprocess.Popen(cmd, env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)


def output_tail(log: Path, role: str, chars: int = 3000) -> str:
    out = log.with_suffix(f".{role}.out")
    return out.read_text(errors="replace")[-chars:] if out.exists() else "(no output)"


def wait_killed(proc: subprocess.Popen[bytes], log: Path, role: str, timeout_s: float = 60) -> None:
    """The process must end by its own SIGKILL (one that ran out of work before its kill point
    would wait for more instead: the timeout fails the test)."""
    try:
        code = proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=30)
        tail = output_tail(log, role)
        raise AssertionError(f"no kill within {timeout_s:.0f} s:\n{tail}") from None
    assert code == -signal.SIGKILL, f"exit {code}:\n{output_tail(log, role)}"


def topic_values(bootstrap: str, name: str, partitions: int = 4) -> list[bytes | None]:
    """Every committed message value of a topic up to its current end, as a read_committed
    reader sees it (the journey stage writes in transactions: no aborted message, no marker)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "kill-points-reader",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    values: list[bytes | None] = []
    try:
        ends = {}
        for p in range(partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(name, p), timeout=10)
            if high > low:
                ends[p] = high
        consumer.assign([TopicPartition(name, p, OFFSET_BEGINNING) for p in ends])
        deadline = time.monotonic() + 60
        while ends:
            assert time.monotonic() < deadline, f"{name}: partitions {ends} not read to the end"
            for message in consumer.consume(10_000, timeout=0.2):
                assert message.error() is None, message.error()
                values.append(message.value())
            for tp in consumer.position([TopicPartition(name, p) for p in ends]):
                if tp.offset >= ends[tp.partition]:
                    del ends[tp.partition]
    finally:
        consumer.close()
    return values


def read_log(path: Path) -> list[dict[str, Any]]:
    """The steps a log holds, in the order they were written."""
    if not path.exists():
        return []
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line]


def by_process(steps: list[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    """Each process's steps, processes in the order they first wrote."""
    out: dict[int, list[dict[str, Any]]] = {}
    for step in steps:
        out.setdefault(step["pid"], []).append(step)
    return out


def after_last_commit(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A process's steps since its last commit (what a kill left uncommitted)."""
    commits = [n for n, step in enumerate(steps) if step["what"] == "commit"]
    return steps[commits[-1] + 1 :] if commits else steps


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)
    raise AssertionError("SIGKILL returned")  # never reached


def consumer_class(role: str, log: Log, poll_messages: int) -> type[Consumer]:
    """A Consumer that polls at most `poll_messages`, joins as a static member with a short
    session, and logs each commit that returned."""

    class KillPointsConsumer(Consumer):
        def __init__(self, config: Mapping[str, Any]) -> None:
            super().__init__(
                {
                    **config,
                    "group.instance.id": STATIC_MEMBER.format(role=role),
                    "session.timeout.ms": SESSION_MS,
                }
            )

        def consume(self, num_messages: int = 1, timeout: float = -1) -> list[Any]:
            return super().consume(min(num_messages, poll_messages), timeout)

        def commit(self, *args: Any, **kwargs: Any) -> Any:
            result = super().commit(*args, **kwargs)
            log.write("commit")
            return result

    return KillPointsConsumer


def run_writer(log: Log, kill_after: int | None, poll_messages: int) -> None:
    from cxpulse.deploy.stack import store_for, writer_for
    from cxpulse.sinks import writer as writer_module
    from cxpulse.sinks.migrate import migrate
    from cxpulse.streams.settings import Settings

    settings = Settings()
    assert settings.kafka_bootstrap, "set CXPULSE_KAFKA_BOOTSTRAP"
    writer_module.Consumer = consumer_class("writer", log, poll_messages)  # type: ignore[misc]
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with store_for(settings) as store:
        migrate(store)
        real_insert = store.insert
        inserts = 0

        def insert(table: str, rows: Iterable[Any]) -> int:
            nonlocal inserts
            stored = real_insert(table, rows)
            inserts += 1
            log.write("insert", table=table, rows=stored)
            if inserts == kill_after:
                log.write("kill", after_inserts=inserts)
                die()
            return stored

        store.insert = insert  # type: ignore[method-assign]
        writer_for(store, settings.kafka_bootstrap, settings).run(stop)


def run_ingest(log: Log, kill_after: int | None, poll_messages: int) -> None:
    from cxpulse.streams import ingest_stage
    from cxpulse.streams.ingest import RoutedBatch
    from cxpulse.streams.settings import Settings

    settings = Settings()
    assert settings.kafka_bootstrap, "set CXPULSE_KAFKA_BOOTSTRAP"
    ingest_stage.Consumer = consumer_class("ingest", log, poll_messages)  # type: ignore[misc]
    real_route = ingest_stage.route
    batch: dict[str, int] = {}

    def route(messages: list[Any], *args: Any, **kwargs: Any) -> RoutedBatch:
        routed = real_route(messages, *args, **kwargs)
        records = sum(len(chunk) for chunks in routed.keyed.values() for chunk in chunks)
        batch.update(inputs=len(messages), events=routed.accepted, records=records,
                     dead_letters=len(routed.dead_letters))  # fmt: skip
        return routed

    ingest_stage.route = route  # type: ignore[assignment]
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    # Built as `cxpulse worker` builds it.
    stage = ingest_stage.IngestStage(settings.kafka_bootstrap, bounds=settings.bounds())
    real_flush = stage.output.flush
    flushes = 0

    def flush(*args: Any, **kwargs: Any) -> None:
        nonlocal flushes
        real_flush(*args, **kwargs)
        flushes += 1
        log.write("flush", **batch)
        batch.clear()
        if flushes == kill_after:
            log.write("kill", after_flushes=flushes)
            die()

    stage.output.flush = flush  # type: ignore[method-assign]
    stage.run(stop)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("role", choices=["writer", "ingest"])
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("--kill-after", type=int, default=None)
    parser.add_argument("--poll-messages", type=int, default=10_000)
    args = parser.parse_args()
    log = Log(args.log)
    log.write("start", role=args.role, kill_after=args.kill_after)
    run = run_writer if args.role == "writer" else run_ingest
    run(log, args.kill_after, args.poll_messages)
    log.write("exit")


if __name__ == "__main__":
    main()
