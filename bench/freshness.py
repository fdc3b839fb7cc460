"""End-to-end freshness: events produced at fixed rates with event time = now, how old the
newest event visible in the API is (target p99 <= 2 s), and which stage of the path that age
comes from.

The stack is `cxpulse up`'s in embedded mode: one `cxpulse worker` process, and the store
writer and the API (uvicorn) as threads of this process, which owns the chdb store. The
producer is a process of its own, as real producers are: it sends simulated traffic (its mix of
event types and keys), each event stamped with the wall clock when it is sent. GET
/v1/freshness is sampled every 100 ms; its `freshness_seconds` (wall clock minus the newest
visible event time of the stalest partition) is the event -> visible delay. Samples count from
WARMUP_S after the producer starts until it stops. The phases run one after another against
one stack, each with a store writer of its own: 2,000 and 3,000 events/s, which one worker
keeps up with here with room to spare (so the fixed delays are the budget; at 4,000 the two
cores are saturated and the worker's own tail varies from run to run); 3,000 again with the
writer's flush interval and the API's cache period as they were before the latency budget (1 s
each, an API of its own); and 10,000 events/s. Baseline in the same run: the broker alone, the
same producer into a plain topic and a plain consumer, delay = receipt - send time.

Attribution, measured: the same age (wall clock minus the newest event time that has passed a
point of the path, stalest partition) is taken at each sample's time at every point, from
timestamps the pipeline records anyway: the keyed batches' `received_ms` and message time (read
back after the run), the freshness rows' `updated_at` and when a read_committed consumer here
sees them, and when the writer's insert of them returns (a wrapper around the store). The ages
of consecutive points split each sample into stages that add up to it.
"""

from __future__ import annotations

import bisect
import itertools
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from bench.common import write_result
from bench.harness import (
    PARTITIONS,
    broker,
    counters,
    cpu_seconds,
    handled,
    say,
    thread_cpu,
    worker_process,
    writer_and_store_cpu,
    writer_thread,
    writer_tid,
)
from cxpulse.api.app import create_api
from cxpulse.api.auth import ApiKeys
from cxpulse.api.server import BackgroundApi
from cxpulse.deploy.kafka import free_port
from cxpulse.sinks.migrate import migrate
from cxpulse.sinks.store import ChdbStore, Row, Store
from cxpulse.sinks.writer import StoreWriter, WriterStats
from cxpulse.streams import topics
from cxpulse.streams.funnels import load_funnels
from cxpulse.streams.ingest import decode_batch
from cxpulse.streams.producer import producer_config
from cxpulse.streams.settings import Settings
from cxpulse.streams.simulator.config import SimConfig
from cxpulse.streams.simulator.run import Plan
from cxpulse.streams.topics import TopicSpec, ensure_topics

RATE = 10_000  # events/s, the issue's
# Rates one worker keeps up with here, with room: the fixed delays make the budget there.
LOW_RATE, MIDDLE_RATE = 2_000, 3_000
# The writer's flush interval and the API's cache period before the latency budget (issue 15):
# a second run at the middle rate keeps them, to compare shares and the writer's CPU in one
# run. Being later, it meets a worker holding more keys, whose journey stage has a longer tail:
# compare the stages' shares, not only the totals.
PREVIOUS_DELAYS_S = (1.0, 1.0)
BASELINE_SECONDS = 15
WARMUP_S = 10
BASELINE_WARMUP_S = 2
SAMPLE_S = 0.1
DRAIN_S = 60  # how long to wait after the producer stops for the worker to catch up
TARGET_P99_S = 2.0
BASELINE_TOPIC = TopicSpec("bench.freshness.baseline")
KEY = "bench-key"
STAMP = b'"occurred_at":"'
OCCURRED = re.compile(rb'"occurred_at":"([^"]+)"')
#: The stages of the path in order; each ends at the point whose age is measured next, the
#: last one at the API.
STAGES = (
    ("ingest_poll", "sent -> taken by the ingest stage (broker, ingest poll)"),
    ("ingest_route", "ingest stage: validate, route, encode"),
    ("journey_stage", "keyed topic -> store rows produced (ingest flush, faust fetch, group wait, "
                      "journey stage)"),
    ("commit", "rows produced -> readable (journey transaction commit, read_committed fetch)"),
    ("writer", "readable -> stored in chdb (writer buffer until its flush, insert)"),
    ("api_cache", "stored -> visible in GET /v1/freshness (API result cache)"),
)  # fmt: skip
# Samples around the median and the slowest ones, whose stages are averaged into the shares.
MEDIAN_BAND = (44, 54)  # cut points of statistics.quantiles(n=100): p45 to p55
TAIL_FROM = 97  # p98 and up


def iso(epoch_ms: int) -> bytes:
    seconds, millis = divmod(epoch_ms, 1000)
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}+00:00"
    return text.encode()


def iso_ms(text: bytes) -> int:
    return round(datetime.fromisoformat(text.decode()).timestamp() * 1000)


def ch_ms(text: str) -> int:
    """A row's DateTime64 text (`ch_time`) as epoch milliseconds."""
    stamp = datetime.strptime(text, "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=UTC)
    return round(stamp.timestamp() * 1000)


def restamp(value: bytes, stamp: bytes) -> bytes:
    """The event with `occurred_at` replaced: its event time is when it is sent."""
    start = value.index(STAMP) + len(STAMP)
    return value[:start] + stamp + value[value.index(b'"', start) :]


def produce_paced(bootstrap: str, rate: int, seconds: int, seed: int, topic: str | None) -> None:
    """The producer process: `rate` events/s for `seconds`, to their topics or all to `topic`.
    Each run against one stack needs a seed of its own: the same seed makes the same event ids,
    which the journey stage would drop as copies of the earlier run's.

    Prints `{"started_ms"}` when it starts sending and `{"sent", ...}` when it is done.
    """
    count = rate * seconds
    start_ms = time.time_ns() // 1_000_000
    plan = Plan(SimConfig(seed=seed, start_ms=start_ms, rate=rate), count=count)
    messages = [(topic or m.topic, m.key, m.value) for m in plan.messages()]
    producer = Producer({**producer_config(bootstrap), "queue.buffering.max.messages": 2 * count})
    print(orjson.dumps({"started_ms": time.time_ns() // 1_000_000}).decode(), flush=True)
    started, sent, behind, next_report = time.monotonic(), 0, 0.0, 5.0
    while sent < count:
        elapsed = time.monotonic() - started
        due = min(count, int(elapsed * rate) + 1)
        behind = max(behind, (due - sent) / rate)
        stamp = iso(time.time_ns() // 1_000_000)
        for name, key, value in messages[sent:due]:
            producer.produce(name, restamp(value, stamp), key)
        sent = due
        producer.poll(0)
        if elapsed >= next_report:
            say(f"producer: {sent:,} events sent")
            next_report += 5
        time.sleep(0.001)
    producer.flush()
    result = {"sent": sent, "seconds": time.monotonic() - started, "max_behind_s": behind,
              "ended_ms": time.time_ns() // 1_000_000}  # fmt: skip
    print(orjson.dumps(result).decode(), flush=True)


class ProducerRun:
    """The producer process and what it has reported so far."""

    def __init__(
        self, bootstrap: str, rate: int, seconds: int, seed: int, topic: str | None = None
    ) -> None:
        command = [sys.executable, "-m", "bench.freshness", "produce", bootstrap, str(rate),
                   str(seconds), str(seed)]  # fmt: skip
        self.proc = subprocess.Popen([*command, *([topic] if topic else [])],
                                     stdout=subprocess.PIPE)  # fmt: skip
        self.report: dict[str, Any] = {}
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.report.update(orjson.loads(line))

    @property
    def started_ms(self) -> int | None:
        return self.report.get("started_ms")

    @property
    def done(self) -> bool:
        return "sent" in self.report

    def wait(self) -> dict[str, Any]:
        if self.proc.wait(timeout=300) != 0:
            raise RuntimeError("the producer failed")
        self.reader.join(timeout=10)
        return self.report


def percentiles(values: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {"p50_s": round(cuts[49], 3), "p99_s": round(cuts[98], 3),
            "max_s": round(max(values), 3), "samples": len(values)}  # fmt: skip


def baseline(bootstrap: str) -> dict[str, Any]:
    """Broker alone: the paced producer into a plain topic, a plain consumer reading it."""
    ensure_topics(bootstrap, PARTITIONS, (BASELINE_TOPIC,))
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-baseline",
                         "auto.offset.reset": "earliest"})  # fmt: skip
    consumer.subscribe([BASELINE_TOPIC.name])
    run = ProducerRun(bootstrap, RATE, BASELINE_SECONDS, 0, BASELINE_TOPIC.name)
    delays: list[float] = []
    received = 0
    try:
        while not (run.done and received >= run.report["sent"]):
            # A short timeout: consume() waits for its whole batch or the timeout, and a longer
            # wait would be the consumer's delay, not the broker's.
            for message in consumer.consume(1000, timeout=0.005):
                received += 1
                if message.error() is None:
                    sent_ms = message.timestamp()[1]
                    if run.started_ms and sent_ms >= run.started_ms + BASELINE_WARMUP_S * 1000:
                        delays.append(time.time() - sent_ms / 1000)
            if run.proc.poll() not in (None, 0):
                raise RuntimeError("the baseline producer failed")
    finally:
        consumer.close()
    run.wait()
    return percentiles(delays)


class Timeline:
    """When events passed one point of the path: per keyed partition, (time, newest event time
    past the point then). Its age at a time is the API's measure taken at that point."""

    def __init__(self) -> None:
        self._points: dict[int, list[tuple[float, int]]] = {}
        self._index: dict[int, tuple[list[float], list[int]]] | None = None

    def add(self, partition: int, at_s: float, event_ms: int) -> None:
        self._points.setdefault(partition, []).append((at_s, event_ms))
        self._index = None

    def age(self, at_s: float) -> float | None:
        """Seconds from the newest event time past the point by `at_s` (the stalest partition's)
        to `at_s`; None while a partition has none."""
        if self._index is None:
            self._index = {}
            for partition, points in self._points.items():
                points.sort()
                newest = list(itertools.accumulate((event for _, event in points), max))
                self._index[partition] = ([at for at, _ in points], newest)
        if len(self._index) < PARTITIONS:
            return None
        oldest = None
        for times, newest in self._index.values():
            index = bisect.bisect_right(times, at_s)
            if index == 0:
                return None
            oldest = newest[index - 1] if oldest is None else min(oldest, newest[index - 1])
        return None if oldest is None else at_s - oldest / 1000


class TimedStore(Store):
    """The writer's store, noting when each freshness row was stored (its insert returned)."""

    def __init__(self, inner: Store, stored: Timeline) -> None:
        self.inner, self.stored = inner, stored
        self.backend, self.database = inner.backend, inner.database

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        self.inner.execute(sql, params)

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        return self.inner.query(sql, params)

    def insert(self, table: str, rows: Iterable[Row]) -> int:
        rows = list(rows)
        count = self.inner.insert(table, rows)
        if table == "freshness":
            at = time.time()
            for row in orjson.loads(orjson.dumps(rows)):  # the writer hands orjson Fragments
                self.stored.add(row["partition"], at, ch_ms(row["newest_event_at"]))
        return count


class FreshnessTap:
    """Reads the freshness rows as the writer does (read_committed), in a thread: when the
    journey stage produced each partition's newest event time (`updated_at`), and when that
    became readable (seen here)."""

    def __init__(self, bootstrap: str) -> None:
        self.produced, self.readable = Timeline(), Timeline()
        name = topics.STORE_FRESHNESS.name
        self._consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-tap",
                                   "enable.auto.commit": False,
                                   "isolation.level": "read_committed"})  # fmt: skip
        count = len(self._consumer.list_topics(name, timeout=10).topics[name].partitions)
        self._consumer.assign([TopicPartition(name, p, OFFSET_BEGINNING) for p in range(count)])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="freshness-tap", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            message = self._consumer.poll(0.1)  # one at a time: consume() waits to fill a batch
            if message is None or message.error() is not None or not message.value():
                continue
            at = time.time()
            for line in (message.value() or b"").split(b"\n"):
                row = orjson.loads(line)
                newest = ch_ms(row["newest_event_at"])
                self.produced.add(row["partition"], ch_ms(row["updated_at"]) / 1000, newest)
                self.readable.add(row["partition"], at, newest)

    @contextmanager
    def running(self) -> Iterator[FreshnessTap]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join(timeout=10)
            self._consumer.close()


def read_keyed(bootstrap: str) -> tuple[Timeline, Timeline]:
    """The keyed batches read back: per partition, when the ingest stage took a batch's events
    (`received_ms`, one poll's) and when it produced the batch (message time), with the
    batch's newest event time."""
    ingested, keyed = Timeline(), Timeline()
    name = topics.KEYED.name
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-keyed",
                         "enable.auto.commit": False})  # fmt: skip
    ends = {p: consumer.get_watermark_offsets(TopicPartition(name, p), timeout=10)[1]
            for p in range(PARTITIONS)}  # fmt: skip
    consumer.assign([TopicPartition(name, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
    done = {p for p, end in ends.items() if end == 0}
    deadline = time.monotonic() + 300
    try:
        while len(done) < PARTITIONS:
            if time.monotonic() > deadline:
                raise RuntimeError("reading the keyed topic back took too long")
            for message in consumer.consume(1000, timeout=1.0):
                value = message.value()
                if message.error() is not None or not value:
                    continue
                partition = message.partition()
                newest = iso_ms(max(OCCURRED.findall(value)))  # one format: text order is time's
                ingested.add(partition, decode_batch(value)[0].received_ms / 1000, newest)
                keyed.add(partition, message.timestamp()[1] / 1000, newest)
                if message.offset() + 1 >= ends[partition]:
                    done.add(partition)
    finally:
        consumer.close()
    return ingested, keyed


def attribution(samples: list[tuple[float, float]], points: Sequence[Timeline]) -> dict[str, Any]:
    """Each sample (time, age in the API) split into STAGES by the ages at `points` then: per
    stage its own p50 and p99, and its mean over the samples around the median and over the
    slowest, which add up to those samples' mean (its share of p50 and of p99)."""
    splits: list[list[float]] = []
    for at, api_age in samples:
        ages = [point.age(at) for point in points]
        known = [age for age in ages if age is not None]
        if len(known) == len(ages):
            splits.append([b - a for a, b in itertools.pairwise([0.0, *known, api_age])])
    totals = [sum(split) for split in splits]
    cuts = statistics.quantiles(totals, n=100, method="inclusive")
    low, high = cuts[MEDIAN_BAND[0]], cuts[MEDIAN_BAND[1]]
    bands = {
        "p50": [s for s, total in zip(splits, totals, strict=True) if low <= total <= high],
        "p99": [s for s, total in zip(splits, totals, strict=True) if total >= cuts[TAIL_FROM]],
    }
    result: dict[str, Any] = {"samples": len(splits)}
    for band, members in bands.items():
        mean = statistics.fmean(map(sum, members))
        result[f"{band}_band"] = {"samples": len(members), "mean_s": round(mean, 3)}
    stages: dict[str, dict[str, Any]] = {}
    for index, (name, what) in enumerate(STAGES):
        own = statistics.quantiles([s[index] for s in splits], n=100, method="inclusive")
        stage: dict[str, Any] = {"what": what, "p50_s": round(own[49], 3),
                                 "p99_s": round(own[98], 3)}  # fmt: skip
        for band, members in bands.items():
            share = statistics.fmean(s[index] for s in members)
            stage[f"share_of_{band}_s"] = round(share, 3)
            stage[f"share_of_{band}_pct"] = round(100 * share / result[f"{band}_band"]["mean_s"], 1)
        stages[name] = stage
    result["stages"] = stages
    return result


@dataclass(frozen=True)
class Phase:
    """One producer run against the stack, and the fixed delays it runs with."""

    rate: int
    seconds: int
    writer_flush_seconds: float
    api_cache_seconds: float


def phases(settings: Settings) -> tuple[Phase, ...]:
    delays = (settings.writer_flush_seconds, settings.api_cache_seconds)
    return (
        Phase(LOW_RATE, 40, *delays),
        Phase(MIDDLE_RATE, 60, *delays),
        Phase(MIDDLE_RATE, 60, *PREVIOUS_DELAYS_S),
        Phase(RATE, 60, *delays),
    )


@dataclass
class Meter:
    """The worker and the phase's writer, whose counters a phase's figures are taken from."""

    worker: subprocess.Popen[bytes]
    port: int
    writer: StoreWriter
    writer_tid: int
    flush_ms: list[float] = field(default_factory=list)  # each flush's duration, in order

    def usage(self) -> dict[str, Any]:
        """Counters a phase's CPU and writer figures are differences of."""
        worker = counters(self.port)
        return {"threads": thread_cpu(), "worker_cpu_s": cpu_seconds(self.worker.pid),
                "flushes": len(self.flush_ms), "handled": handled(worker),
                # A commit round: a group's or a tick's transactions, committed partition by
                # partition (the histogram times each round).
                "rounds": worker.get("cxpulse_flush_seconds_count", 0.0),
                "commit_s": worker.get("cxpulse_flush_seconds_sum", 0.0),
                "rows": sum(self.writer.stats.rows_written.values())}  # fmt: skip

    def cost(self, before: dict[str, Any]) -> dict[str, Any]:
        """CPU per event handled since `before` of the worker, the writer thread and chdb's own
        threads (inserts' parsing, merges; and the API's few queries), the writer's flushes and
        the journey stage's commit rounds. Threads that ended meanwhile are not counted."""
        after = self.usage()
        events = max(1, after["handled"] - before["handled"])
        writer_s, store_s = writer_and_store_cpu(before["threads"], after["threads"],
                                                 self.writer_tid)  # fmt: skip
        flushes = self.flush_ms[before["flushes"] :]
        rounds = after["rounds"] - before["rounds"]
        return {
            "events": events,
            "journey_commit_rounds": int(rounds),
            "journey_commit_ms_per_round": round(
                1000 * (after["commit_s"] - before["commit_s"]) / max(1, rounds), 1
            ),
            "worker_cpu_us_per_event": round(1e6 * (after["worker_cpu_s"] - before["worker_cpu_s"])
                                             / events, 1),
            "writer_thread_cpu_us_per_event": round(1e6 * writer_s / events, 2),
            "chdb_threads_cpu_us_per_event": round(1e6 * store_s / events, 2),
            "writer_flushes": len(flushes),
            "writer_rows_per_event": round((after["rows"] - before["rows"]) / events, 2),
            "writer_flush_ms_mean": round(statistics.fmean(flushes), 1) if flushes else None,
        }  # fmt: skip


def get_freshness(url: str) -> tuple[float, float | None, int | None]:
    """(when answered, `freshness_seconds`, the stalest partition's newest event time)."""
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {KEY}"})
    with urllib.request.urlopen(request, timeout=5) as response:
        body = orjson.loads(response.read())
    at = time.time()
    value, partitions = body["freshness_seconds"], body["partitions"]
    newest = min((p["newest_event_at_ms"] for p in partitions), default=None)
    return at, None if value is None else float(value), newest


def pipeline(bootstrap: str, tmp: Path) -> list[dict[str, Any]]:
    """The phases one after another against one stack (a writer of their own each, started
    before the producer sends), with their attribution."""
    stored = Timeline()
    runs: list[tuple[dict[str, Any], list[tuple[float, float]]]] = []
    with ChdbStore(tmp / "chdb", Settings().clickhouse_database) as store, ExitStack() as stack:
        migrate(store)
        urls: dict[float, str] = {}  # an API per cache period
        for phase in phases(Settings()):
            cache_s = phase.api_cache_seconds
            if cache_s not in urls:
                settings = Settings(data_dir=tmp, api_port=free_port(), api_keys=KEY,
                                    api_cache_seconds=cache_s)  # fmt: skip
                api = BackgroundApi(create_api(store, load_funnels(), settings,
                                               ApiKeys.parse(KEY)), settings)  # fmt: skip
                api.start()
                stack.callback(api.stop)
                urls[cache_s] = f"{api.url}/v1/freshness"
        tap = stack.enter_context(FreshnessTap(bootstrap).running())
        worker, port = stack.enter_context(worker_process(bootstrap, tmp / "w"))
        while not counters(port):  # the worker's metrics answer once it is up
            time.sleep(0.2)
        for seed, phase in enumerate(phases(Settings()), 1):
            flush_ms: list[float] = []

            def on_flush(stats: WriterStats, flush_ms: list[float] = flush_ms) -> None:
                flush_ms.append(stats.last_flush_ms)

            timed = TimedStore(store, stored)
            with writer_thread(timed, bootstrap, on_flush, phase.writer_flush_seconds) as writer:
                meter = Meter(worker, port, writer, writer_tid(), flush_ms)
                runs.append(_measure(bootstrap, urls[phase.api_cache_seconds], meter, phase, seed))
    ingested, keyed = read_keyed(bootstrap)
    points = (ingested, keyed, tap.produced, tap.readable, stored)
    return [{**result, "attribution": attribution(samples, points)} for result, samples in runs]


def _measure(
    bootstrap: str, url: str, meter: Meter, phase: Phase, seed: int
) -> tuple[dict[str, Any], list[tuple[float, float]]]:
    """One producer run: its figures, and its samples (time, age in the API) to attribute."""
    rate, seconds = phase.rate, phase.seconds
    say(f"pipeline: {rate:,} events/s for {seconds} s, writer flush {phase.writer_flush_seconds} "
        f"s, API cache {phase.api_cache_seconds} s (the producer simulates first)")  # fmt: skip
    run = ProducerRun(bootstrap, rate, seconds, seed)
    usage = meter.usage()
    before = usage["handled"]
    samples: list[float] = []
    ages: list[tuple[float, float]] = []
    window: list[tuple[float, int]] = []  # (monotonic, handled) inside the measured window
    ended_at: float | None = None
    caught_up_s: float | None = None
    last_count = 0.0
    for tick in itertools.count():
        if meter.worker.poll() is not None or run.proc.poll() not in (None, 0):
            raise RuntimeError("the worker or the producer died")
        now_ms = time.time_ns() // 1_000_000
        in_window = bool(run.started_ms) and now_ms >= run.started_ms + WARMUP_S * 1000
        if run.done and ended_at is None:
            ended_at = time.monotonic()
        if in_window and not run.done:
            at, fresh, newest = get_freshness(url)
            if fresh is not None and newest is not None:
                samples.append(fresh)
                ages.append((at, at - newest / 1000))
        if tick % 10 == 0 or run.done:
            count = handled(counters(meter.port)) - before
            if in_window and not run.done:
                window.append((time.monotonic(), count))
            if time.monotonic() - last_count >= 5:
                shown = f"{samples[-1]:.2f} s" if samples else "warming up"
                say(f"pipeline: {count:,} events handled; freshness {shown}")
                last_count = time.monotonic()
            if ended_at is not None and count >= run.report["sent"]:
                caught_up_s = time.monotonic() - ended_at
                break
            if ended_at is not None and time.monotonic() - ended_at > DRAIN_S:
                break
        time.sleep(SAMPLE_S)
    report = run.wait()
    (t0, n0), (t1, n1) = window[0], window[-1]
    result = {
        **percentiles(samples),
        "produced_events_per_s": round(report["sent"] / report["seconds"]),
        "producer_max_behind_schedule_s": round(report["max_behind_s"], 3),
        "accepted_events_per_s_in_window": round((n1 - n0) / (t1 - t0)),
        "caught_up_s_after_producer_stopped": caught_up_s and round(caught_up_s, 1),
        "sent": report["sent"], "rate_events_per_s": rate, "seconds": seconds,
        "writer_flush_seconds": phase.writer_flush_seconds,
        "api_cache_seconds": phase.api_cache_seconds,
        "cost": meter.cost(usage),
    }  # fmt: skip
    accepted, produced = result["accepted_events_per_s_in_window"], result["produced_events_per_s"]
    result["kept_up"] = accepted >= 0.98 * produced
    return result, ages


def _table(runs: list[dict[str, Any]], base: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    table = []
    for run in runs:
        rate, kept, met = run["rate_events_per_s"], run["kept_up"], run["p99_s"] <= TARGET_P99_S
        label = (f"{rate:,} events/s, writer flush {run['writer_flush_seconds']:g} s, "
                 f"API cache {run['api_cache_seconds']:g} s")  # fmt: skip
        table += [
            (f"event -> visible in the API (GET /v1/freshness); {label}",
             f"p50 {run['p50_s']:.2f} s, p99 {run['p99_s']:.2f} s",
             f"p99 <= {TARGET_P99_S:g} s ({'met' if met else 'not met'})",
             f"{run['samples']} samples every {SAMPLE_S:g} s; max {run['max_s']:.2f} s"),
            ("- kept up: accepted vs produced, events/s",
             f"{run['accepted_events_per_s_in_window']:,} of {run['produced_events_per_s']:,}", "",
             f"{'kept up' if kept else 'fell behind'}; all handled "
             f"{run['caught_up_s_after_producer_stopped']} s after the producer stopped"),
        ]  # fmt: skip
        if kept:
            shares = run["attribution"]
            median, tail = shares["p50_band"], shares["p99_band"]
            table.append(
                ("- shares of p50 and p99 by stage:", "", "",
                 f"means of the {median['samples']} samples at p45-p55 ({median['mean_s']:.2f} s) "
                 f"and of the {tail['samples']} at p98 and up ({tail['mean_s']:.2f} s)")
            )  # fmt: skip
            for stage in shares["stages"].values():
                table.append(
                    (f"- - {stage['what']}",
                     f"p50 {stage['share_of_p50_s']:.3f} s ({stage['share_of_p50_pct']:.0f} %), "
                     f"p99 {stage['share_of_p99_s']:.3f} s ({stage['share_of_p99_pct']:.0f} %)",
                     "", f"alone: p50 {stage['p50_s']:.3f} s, p99 {stage['p99_s']:.3f} s")
                )  # fmt: skip
        cost = run["cost"]
        table.append(
            ("- CPU per event: worker; writer thread + chdb threads",
             f"{cost['worker_cpu_us_per_event']:.0f} µs; "
             f"{cost['writer_thread_cpu_us_per_event']:.1f} + "
             f"{cost['chdb_threads_cpu_us_per_event']:.1f} µs", "",
             f"{cost['writer_flushes']} writer flushes of {cost['writer_flush_ms_mean']} ms; "
             f"{cost['journey_commit_rounds']} journey commit rounds of "
             f"{cost['journey_commit_ms_per_round']} ms")
        )  # fmt: skip
    table.append(
        ("broker alone: produce -> plain consumer (baseline)",
         f"p50 {base['p50_s']:.3f} s, p99 {base['p99_s']:.3f} s", "",
         f"same producer, {BASELINE_SECONDS} s at {RATE:,} events/s")
    )  # fmt: skip
    return table


def main() -> None:
    load_start = [round(x, 2) for x in os.getloadavg()]
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        with broker(tmp / "kafka") as bootstrap:
            say(f"baseline: broker alone, {RATE:,} events/s for {BASELINE_SECONDS} s")
            base = baseline(bootstrap)
            say(f"baseline: p50 {base['p50_s']} s, p99 {base['p99_s']} s")
            load_pipeline = round(os.getloadavg()[0], 2)
            runs = pipeline(bootstrap, tmp / "stack")
    top = runs[-1]
    settings = Settings()
    figures = {
        "rate_events_per_s": RATE, "target_p99_s": TARGET_P99_S,
        "meets_target": top["p99_s"] <= TARGET_P99_S, "kept_up": top["kept_up"],
        "warmup_s": WARMUP_S, "sample_interval_s": SAMPLE_S,
        "writer_flush_seconds": settings.writer_flush_seconds,
        "api_cache_seconds": settings.api_cache_seconds,
        "worker_group_messages": settings.worker_group_messages,
        "runs": runs, "baseline_broker_alone": base,
        "load_average_1_5_15m_at_start": load_start,
        "load_average_1m_when_pipeline_started": load_pipeline,
    }  # fmt: skip
    write_result("freshness", figures, _table(runs, base))


if __name__ == "__main__":
    if sys.argv[1:2] == ["produce"]:
        bootstrap, rate, seconds, seed, *topic = sys.argv[2:]
        produce_paced(bootstrap, int(rate), int(seconds), int(seed), topic[0] if topic else None)
    else:
        main()
