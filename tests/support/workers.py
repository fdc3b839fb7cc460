"""Real `cxpulse worker` processes for end-to-end tests, and their Prometheus counters."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from cxpulse.deploy.kafka import free_port
from cxpulse.sinks.sink import StoreSink
from cxpulse.sinks.store import Store
from cxpulse.sinks.writer import StoreWriter
from cxpulse.streams import topics
from cxpulse.streams.producer import DeadLetterProducer


@contextmanager
def workers(env: dict[str, str], log_dir: Path, count: int = 1) -> Iterator[list[int]]:
    """`count` worker processes; yields their metrics ports; stops them with SIGTERM."""
    procs: list[tuple[subprocess.Popen[bytes], Path]] = []
    ports = []
    for n in range(count):
        port = free_port()
        log = log_dir / f"worker-{n}.log"
        with log.open("ab") as out:
            cmd = [
                sys.executable,
                "-m",
                "cxpulse.deploy.cli",
                "worker",
                "--metrics-port",
                str(port),
            ]
            procs.append(
                (subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT), log)
            )
        ports.append(port)
    try:
        yield ports
    finally:
        for proc, _ in procs:
            proc.terminate()
        for proc, log in procs:
            assert proc.wait(timeout=60) == 0, log.read_text()[-3000:]


def _worker_process(env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "cxpulse.deploy.cli", "worker", "--metrics-port", str(port)]
    with log.open("ab") as out:
        return subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)


@dataclass
class Worker:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path
    killed: bool = False  # gone on purpose (SIGKILL, SIGTERM, or an exit the test allowed)
    may_exit: frozenset[int] = frozenset()  # exit codes `check()` accepts from this worker

    def handled(self) -> int:
        """Messages this process accepted, dropped as copies or dead-lettered (0 until its
        metrics answer; a restarted process counts from 0 again)."""
        return handled(counters([self.port]))


class WorkerPool:
    """Worker processes a test may SIGKILL and replace; any other exit fails the test at the
    next `check()`, so a crash (or a crash loop) is never mistaken for slowness."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = env
        self.log_dir = log_dir
        self.all: list[Worker] = []

    def start(self) -> Worker:
        port = free_port()
        log = self.log_dir / f"worker-{len(self.all)}.log"
        worker = Worker(_worker_process(self.env, port, log), port, log)
        self.all.append(worker)
        return worker

    @property
    def alive(self) -> list[Worker]:
        return [w for w in self.all if not w.killed]

    def kill(self, worker: Worker) -> None:
        """SIGKILL: no flush, no commit, no leaving the consumer groups."""
        worker.proc.send_signal(signal.SIGKILL)
        assert worker.proc.wait(timeout=30) == -signal.SIGKILL
        worker.killed = True

    def terminate(self, worker: Worker, timeout_s: float = 60) -> None:
        """SIGTERM one worker: it finishes the group in hand, commits and exits 0."""
        worker.proc.terminate()
        code = worker.proc.wait(timeout=timeout_s)
        assert code == 0, f"{worker.log.name}: exit code {code}\n{worker.log.read_text()[-3000:]}"
        worker.killed = True

    def freeze(self, worker: Worker) -> None:
        """SIGSTOP: the process keeps its sockets but runs nothing, not even heartbeats."""
        worker.proc.send_signal(signal.SIGSTOP)

    def resume(self, worker: Worker) -> None:
        worker.proc.send_signal(signal.SIGCONT)

    def check(self) -> None:
        for worker in self.alive:
            code = worker.proc.poll()
            if code is not None and code in worker.may_exit:
                worker.killed = True
            elif code is not None:
                tail = worker.log.read_text()[-4000:]
                raise AssertionError(f"{worker.log.name} exited with {code} unasked:\n{tail}")

    def wait_handled(self, worker: Worker, count: int, timeout_s: float = 120) -> int:
        """Until `worker` has handled at least `count` messages; returns how many it has."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.check()
            if (done := worker.handled()) >= count:
                return done
            time.sleep(0.05)
        raise AssertionError(f"{worker.log.name} handled fewer than {count} in {timeout_s} s")

    def stop(self) -> None:
        """SIGTERM every live worker; each must exit cleanly (code 0)."""
        self.check()
        for worker in self.alive:
            worker.proc.terminate()
        codes = {w.log: w.proc.wait(timeout=60) for w in self.alive}
        for log, code in codes.items():
            assert code == 0, f"{log.name}: exit code {code}\n{log.read_text()[-3000:]}"

    def kill_all(self) -> None:
        """Cleanup after a failure: no worker outlives its test."""
        for worker in self.alive:
            if worker.proc.poll() is None:
                worker.proc.kill()
                worker.proc.wait(timeout=30)


@contextmanager
def worker_pool(env: dict[str, str], log_dir: Path) -> Iterator[WorkerPool]:
    """A pool stopped with SIGTERM (clean exits asserted) when the block succeeds."""
    pool = WorkerPool(env, log_dir)
    try:
        yield pool
    except BaseException:
        pool.kill_all()
        raise
    pool.stop()


def handled(c: Counter[str]) -> int:
    """Messages accepted, dropped as a copy, or dead-lettered, per the worker counters."""
    return (
        c["cxpulse_events_accepted_total"]
        + c["cxpulse_events_duplicate_total"]
        + c["cxpulse_dead_letters_total"]
    )


def counters(ports: list[int]) -> Counter[str]:
    """The *_total counters of the workers, summed."""
    totals: Counter[str] = Counter()
    for port in ports:
        try:
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
        except OSError:
            continue
        for family in text_string_to_metric_families(text.decode()):
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    totals[sample.name] += int(sample.value)
    return totals


def wait_handled(
    ports: list[int], produced: int, logs: Path, timeout_s: float = 240
) -> Counter[str]:
    """Until every produced message is accepted, dropped as a copy or dead-lettered."""
    deadline = time.monotonic() + timeout_s
    c: Counter[str] = Counter()
    while time.monotonic() < deadline:
        c = counters(ports)
        handled = (
            c["cxpulse_events_accepted_total"]
            + c["cxpulse_events_duplicate_total"]
            + c["cxpulse_dead_letters_total"]
        )
        if handled >= produced and c["cxpulse_ingest_messages_total"] >= produced:
            time.sleep(1)  # a count above `produced` arriving late would fail the caller's asserts
            return counters(ports)
        time.sleep(0.5)
    tails = "\n".join(p.read_text()[-2000:] for p in sorted(logs.glob("worker-*.log")))
    raise AssertionError(f"not all {produced} messages handled: {c}\n{tails}")


@dataclass
class WriterRun:
    """A store writer running in its thread."""

    writer: StoreWriter
    thread: threading.Thread

    def check(self) -> None:
        """Raise when the writer thread has died (its exception went to stderr)."""
        assert self.thread.is_alive(), "the store writer thread died"


@contextmanager
def writer_thread(store: Store, bootstrap: str) -> Iterator[WriterRun]:
    """A writer thread into `store` (its default group), stopped with a final flush on exit."""
    stop = threading.Event()
    dead_letters = DeadLetterProducer(bootstrap, "writer")
    writer = StoreWriter(
        StoreSink(store), bootstrap, topics.STORE_TABLES, dead_letters, flush_seconds=0.2
    )
    thread = threading.Thread(target=writer.run, args=(stop,), name="store-writer")
    thread.start()
    with ExitStack() as stack:
        stack.callback(thread.join, 30)
        stack.callback(stop.set)
        yield WriterRun(writer, thread)


def alive_check(pool: WorkerPool, writer: WriterRun) -> Callable[[], None]:
    """What a fault test calls while it waits: fail at once when a worker exits unasked or the
    writer thread dies, instead of waiting for a timeout."""

    def check() -> None:
        pool.check()
        writer.check()

    return check


@contextmanager
def store_writer(store: Store, bootstrap: str) -> Iterator[StoreWriter]:
    """A writer thread into `store`, stopped (with a final flush) on exit."""
    with writer_thread(store, bootstrap) as run:
        yield run.writer


def wait_quiet(writer: StoreWriter, quiet_s: float = 3.0, timeout_s: float = 120) -> None:
    """Until the writer has stored nothing new for `quiet_s` (everything produced is stored)."""
    deadline = time.monotonic() + timeout_s
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        total = sum(writer.stats.rows_written.values())
        if total != last:
            last, since = total, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return
        time.sleep(0.2)
    raise AssertionError("the store writer never went quiet")
