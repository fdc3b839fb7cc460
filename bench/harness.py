"""What the Kafka benchmarks share: a throwaway broker, a real worker process, a store writer
thread, and the worker's Prometheus counters.

Each benchmark starts its own broker in a temporary directory (as the tests do), so topics hold
only what the benchmark produced and nothing is left behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from cxpulse.deploy.kafka import BrokerConfig, KafkaBroker, free_port
from cxpulse.sinks.sink import StoreSink
from cxpulse.sinks.store import Store
from cxpulse.sinks.writer import StoreWriter, WriterStats
from cxpulse.streams import topics
from cxpulse.streams.producer import DeadLetterProducer, JsonProducer
from cxpulse.streams.settings import Settings
from cxpulse.streams.simulator.noise import Message

REPO = Path(__file__).resolve().parents[1]
PARTITIONS = 4  # CXPULSE_TOPIC_PARTITIONS' default


def say(text: str) -> None:
    """Progress on stderr, so a long run shows where it is."""
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


@contextmanager
def broker(home: Path) -> Iterator[str]:
    """A broker of its own (jars fetched by `make setup`) with cxpulse's topics; yields its
    bootstrap address and stops it afterwards."""
    libs = KafkaBroker(BrokerConfig(home=Settings(data_dir=REPO / "var").kafka_home)).libs_dir
    config = BrokerConfig(home=home, port=free_port(), controller_port=free_port(), libs_dir=libs)
    kafka = KafkaBroker(config)
    say(f"starting Kafka {kafka.version} on {config.bootstrap}")
    kafka.start(attached=True)
    try:
        topics.ensure_topics(config.bootstrap, PARTITIONS)
        yield config.bootstrap
    finally:
        kafka.stop()


def produce(messages: Iterable[Message], bootstrap: str) -> int:
    """Send every message as the simulator does; returns how many once all are acknowledged."""
    producer = JsonProducer(bootstrap)
    count = 0
    for message in messages:
        producer.send(message.topic, message.key, message.value)
        count += 1
    producer.flush()
    return count


def worker_env(bootstrap: str, data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CXPULSE_")}
    return {**env, "CXPULSE_KAFKA_BOOTSTRAP": bootstrap, "CXPULSE_DATA_DIR": str(data_dir)}


@contextmanager
def worker_process(bootstrap: str, data_dir: Path) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """One `cxpulse worker` (its log under `data_dir`); yields it and its metrics port, and
    stops it with SIGTERM (SIGKILL if it does not stop within 30 s)."""
    port = free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "cxpulse.deploy.cli", "worker", "--metrics-port", str(port)]
    with (data_dir / "worker.log").open("ab") as log:
        proc = subprocess.Popen(command, env=worker_env(bootstrap, data_dir), stdout=log,
                                stderr=subprocess.STDOUT)  # fmt: skip
    try:
        yield proc, port
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def counters(port: int) -> dict[str, float]:
    """A worker's Prometheus counters and gauges, labels summed; empty until it answers."""
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
    except OSError:
        return {}
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
    return totals


def handled(c: dict[str, float]) -> int:
    """Input messages the journey stage is done with: accepted, dropped as copies, dead-lettered."""
    return int(
        c.get("cxpulse_events_accepted_total", 0)
        + c.get("cxpulse_events_duplicate_total", 0)
        + c.get("cxpulse_dead_letters_total", 0)
    )


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def writer_thread(
    store: Store,
    bootstrap: str,
    on_flush: Callable[[WriterStats], None] | None = None,
    flush_seconds: float | None = None,
) -> Iterator[StoreWriter]:
    """The store writer with `cxpulse up`'s settings (or another flush interval) in a thread of
    this process (chdb admits one process per database directory); stopped with a final
    flush."""
    settings = Settings()
    writer = StoreWriter(
        StoreSink(store),
        bootstrap,
        topics.STORE_TABLES,
        DeadLetterProducer(bootstrap, "writer"),
        batch_rows=settings.writer_batch_rows,
        flush_seconds=settings.writer_flush_seconds if flush_seconds is None else flush_seconds,
        on_flush=on_flush,
    )
    stop = threading.Event()
    thread = threading.Thread(target=writer.run, args=(stop,), name="store-writer")
    thread.start()
    try:
        yield writer
    finally:
        stop.set()
        thread.join(timeout=60)


def thread_cpu() -> dict[int, tuple[str, float]]:
    """CPU seconds (user + system) so far of each live thread of this process, with its name."""
    ticks = os.sysconf("SC_CLK_TCK")
    result = {}
    for entry in os.listdir("/proc/self/task"):
        task = Path("/proc/self/task") / entry
        try:
            name = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # it ended meanwhile
            continue
        result[int(entry)] = (name, (int(fields[11]) + int(fields[12])) / ticks)
    return result


def writer_tid() -> int:
    """The native id of the `writer_thread` running in this process."""
    (tid,) = (t.native_id for t in threading.enumerate() if t.name == "store-writer")
    assert tid is not None
    return tid


def writer_and_store_cpu(
    before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]], writer: int
) -> tuple[float, float]:
    """CPU seconds between two `thread_cpu` readings of the writer thread and of chdb's own
    threads (inserts' parsing, merges, queries): Python's threads carry the main thread's name
    and librdkafka's start with `rdk:`. Threads that ended meanwhile are not counted."""
    main = after[threading.main_thread().native_id][0]

    def spent(tid: int) -> float:
        return after[tid][1] - before.get(tid, ("", 0.0))[1]

    store = sum(spent(tid) for tid, (name, _) in after.items()
                if name != main and not name.startswith("rdk:"))  # fmt: skip
    return spent(writer), store
