"""Real `cxpulse worker` processes for end-to-end tests, and their Prometheus counters."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from cxpulse.deploy.kafka import free_port
from cxpulse.sinks.store import Store
from cxpulse.sinks.writer import StoreWriter
from cxpulse.streams import topics


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


@contextmanager
def store_writer(store: Store, bootstrap: str) -> Iterator[StoreWriter]:
    """A writer thread into `store`, stopped (with a final flush) on exit."""
    stop = threading.Event()
    writer = StoreWriter(store, bootstrap, topics.STORE_TABLES, flush_seconds=0.2)
    thread = threading.Thread(target=writer.run, args=(stop,))
    thread.start()
    with ExitStack() as stack:
        stack.callback(thread.join, 30)
        stack.callback(stop.set)
        yield writer


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
