"""End-to-end freshness: events produced at a fixed 10,000 events/s with event time = now, and
how old the newest event visible in the API is (target p99 <= 2 s).

The stack is `cxpulse up`'s in embedded mode: one `cxpulse worker` process, and the store
writer and the API (uvicorn) as threads of this process, which owns the chdb store. The
producer is a process of its own, as real producers are: it sends simulated traffic (its mix of
event types and keys), each event stamped with the wall clock when it is sent. GET
/v1/freshness is sampled every 100 ms; its `freshness_seconds` (wall clock minus the newest
visible event time of the stalest partition) is the event -> visible delay. Samples count from
WARMUP_S after the producer starts until it stops. Baseline in the same run: the broker alone,
the same producer into a plain topic and a plain consumer, delay = receipt - send time.
"""

from __future__ import annotations

import itertools
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Consumer, Producer

from bench.common import write_result
from bench.harness import broker, counters, handled, say, worker_process, writer_thread
from cxpulse.api.app import create_api
from cxpulse.api.auth import ApiKeys
from cxpulse.api.server import BackgroundApi
from cxpulse.deploy.kafka import free_port
from cxpulse.deploy.settings import Settings
from cxpulse.sinks.migrate import migrate
from cxpulse.sinks.store import ChdbStore
from cxpulse.streams.funnels import load_funnels
from cxpulse.streams.producer import producer_config
from cxpulse.streams.simulator.model import SimConfig
from cxpulse.streams.simulator.run import Plan
from cxpulse.streams.topics import TopicSpec, ensure_topics

RATE = 10_000  # events/s
SECONDS = 60
# A second run at a rate one worker sustains here shows the delay the stages add when they keep up.
LOW_RATE = 2_000
LOW_SECONDS = 40
BASELINE_SECONDS = 15
WARMUP_S = 10
BASELINE_WARMUP_S = 2
SAMPLE_S = 0.1
DRAIN_S = 60  # how long to wait after the producer stops for the worker to catch up
TARGET_P99_S = 2.0
BASELINE_TOPIC = TopicSpec("bench.freshness.baseline")
KEY = "bench-key"
STAMP = b'"occurred_at":"'


def iso(epoch_ms: int) -> bytes:
    seconds, millis = divmod(epoch_ms, 1000)
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}+00:00"
    return text.encode()


def restamp(value: bytes, stamp: bytes) -> bytes:
    """The event with `occurred_at` replaced: its event time is when it is sent."""
    start = value.index(STAMP) + len(STAMP)
    return value[:start] + stamp + value[value.index(b'"', start) :]


def produce_paced(bootstrap: str, rate: int, seconds: int, topic: str | None) -> None:
    """The producer process: `rate` events/s for `seconds`, to their topics or all to `topic`.

    Prints `{"started_ms"}` when it starts sending and `{"sent", ...}` when it is done.
    """
    count = rate * seconds
    plan = Plan(SimConfig(seed=5, start_ms=time.time_ns() // 1_000_000, rate=rate), count=count)
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

    def __init__(self, bootstrap: str, rate: int, seconds: int, topic: str | None = None) -> None:
        command = [sys.executable, "-m", "bench.freshness", "produce", bootstrap, str(rate),
                   str(seconds)]  # fmt: skip
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
    ensure_topics(bootstrap, 4, (BASELINE_TOPIC,))
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-baseline",
                         "auto.offset.reset": "earliest"})  # fmt: skip
    consumer.subscribe([BASELINE_TOPIC.name])
    run = ProducerRun(bootstrap, RATE, BASELINE_SECONDS, BASELINE_TOPIC.name)
    delays: list[float] = []
    received = 0
    try:
        while not (run.done and received >= run.report["sent"]):
            for message in consumer.consume(1000, timeout=0.1):
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


def get_freshness(url: str) -> float | None:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {KEY}"})
    with urllib.request.urlopen(request, timeout=5) as response:
        value = orjson.loads(response.read())["freshness_seconds"]
    return None if value is None else float(value)


def pipeline(bootstrap: str, tmp: Path) -> dict[int, dict[str, Any]]:
    """Both producer runs, one after the other, against one stack; results by rate."""
    settings = Settings(data_dir=tmp, api_port=free_port(), api_keys=KEY)
    with ChdbStore(tmp / "chdb", settings.clickhouse_database) as store:
        migrate(store)
        api = BackgroundApi(create_api(store, load_funnels(), settings, ApiKeys.parse(KEY)),
                            settings)  # fmt: skip
        api.start()
        try:
            with writer_thread(store, bootstrap), worker_process(bootstrap, tmp / "w") as run:
                worker, port = run
                while not counters(port):  # the worker's metrics answer once it is up
                    time.sleep(0.2)
                url = f"{api.url}/v1/freshness"
                phases = ((LOW_RATE, LOW_SECONDS), (RATE, SECONDS))
                return {rate: _measure(bootstrap, url, worker, port, rate, seconds)
                        for rate, seconds in phases}  # fmt: skip
        finally:
            api.stop()


def _measure(
    bootstrap: str, url: str, worker: subprocess.Popen[bytes], port: int, rate: int, seconds: int
) -> dict[str, Any]:
    say(f"pipeline: {rate:,} events/s for {seconds} s (the producer simulates first)")
    run = ProducerRun(bootstrap, rate, seconds)
    before = handled(counters(port))
    samples: list[float] = []
    window: list[tuple[float, int]] = []  # (monotonic, handled) inside the measured window
    ended_at: float | None = None
    caught_up_s: float | None = None
    last_count = 0.0
    for tick in itertools.count():
        if worker.poll() is not None or run.proc.poll() not in (None, 0):
            raise RuntimeError("the worker or the producer died")
        now_ms = time.time_ns() // 1_000_000
        in_window = bool(run.started_ms) and now_ms >= run.started_ms + WARMUP_S * 1000
        if run.done and ended_at is None:
            ended_at = time.monotonic()
        if in_window and not run.done:
            fresh = get_freshness(url)
            if fresh is not None:
                samples.append(fresh)
        if tick % 10 == 0 or run.done:
            count = handled(counters(port)) - before
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
    return {
        **percentiles(samples),
        "produced_events_per_s": round(report["sent"] / report["seconds"]),
        "producer_max_behind_schedule_s": round(report["max_behind_s"], 3),
        "accepted_events_per_s_in_window": round((n1 - n0) / (t1 - t0)),
        "caught_up_s_after_producer_stopped": caught_up_s and round(caught_up_s, 1),
        "sent": report["sent"], "rate_events_per_s": rate,
    }  # fmt: skip


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
    run, low = runs[RATE], runs[LOW_RATE]
    for result in runs.values():
        accepted = result["accepted_events_per_s_in_window"]
        result["kept_up"] = accepted >= 0.98 * result["produced_events_per_s"]
    met = run["p99_s"] <= TARGET_P99_S
    figures = {
        "rate_events_per_s": RATE, "seconds": SECONDS, "warmup_s": WARMUP_S,
        "sample_interval_s": SAMPLE_S, "target_p99_s": TARGET_P99_S, "meets_target": met,
        "kept_up": run["kept_up"], "api_cache_seconds": Settings().api_cache_seconds,
        "writer_flush_seconds": Settings().writer_flush_seconds,
        "pipeline": run, f"pipeline_at_{LOW_RATE}_events_per_s": low,
        "baseline_broker_alone": base,
        "load_average_1_5_15m_at_start": load_start,
        "load_average_1m_when_pipeline_started": load_pipeline,
    }  # fmt: skip
    table = []
    for result in (run, low):
        rate, kept = result["rate_events_per_s"], result["kept_up"]
        target = f"p99 <= {TARGET_P99_S:g} s" + (f" ({'met' if met else 'not met'})"
                                                 if result is run else "")  # fmt: skip
        table += [
            (f"event -> visible in the API (GET /v1/freshness), {rate:,} events/s",
             f"p50 {result['p50_s']:.2f} s, p99 {result['p99_s']:.2f} s", target,
             f"{result['samples']} samples every {SAMPLE_S:g} s; max {result['max_s']:.2f} s"),
            (f"kept up at {rate:,} events/s: accepted vs produced, events/s",
             f"{result['accepted_events_per_s_in_window']:,} of "
             f"{result['produced_events_per_s']:,}", "",
             f"{'kept up' if kept else 'fell behind'}; all handled "
             f"{result['caught_up_s_after_producer_stopped']} s after the producer stopped"),
        ]  # fmt: skip
    table.append(
        ("broker alone: produce -> plain consumer (baseline)",
         f"p50 {base['p50_s']:.3f} s, p99 {base['p99_s']:.3f} s", "",
         f"same producer, {BASELINE_SECONDS} s at {RATE:,} events/s")
    )  # fmt: skip
    write_result("freshness", figures, table)


if __name__ == "__main__":
    if sys.argv[1:2] == ["produce"]:
        topic = sys.argv[5] if len(sys.argv) > 5 else None
        produce_paced(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), topic)
    else:
        main()
