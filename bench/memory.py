"""Memory: resident bytes per open journey held by the journey stage, at 100,000 and 1,000,000
open journeys.

The stage (streams/stage.py) is fed, in process and without Kafka, keyed batches as the ingest
stage writes them: one customer per journey, three portal events each (session started, first
step viewed and completed), all from the last minute so no journey closes. Two event sizes: the
simulator's (~420 bytes: six attributes, nothing else) and realistic ones (~1.3 KB, as
`bench/realistic.py` builds them: sixteen attributes, page and trace context, producer).

Idle keys are held compressed (`streams/frozen.py`); a key is idle once untouched for
CXPULSE_FREEZE_AFTER_SECONDS. `stage`: every journey idle, as most open journeys are (a journey
stays open through the 30-minute gap after its last event): the stage's clock moves past the
threshold after each poll, so the keys of the earlier polls are frozen while new ones come, as
in live traffic. `live`: no key frozen (CXPULSE_FREEZE_AFTER_SECONDS=0), what a key in use
costs. Baseline in the same run: the same events kept as raw bytes in a dict per key. Each
measurement runs in a fresh process, so one's garbage cannot hide in the next one's resident set.
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import orjson

from bench.common import write_result
from bench.harness import PARTITIONS, say
from cxpulse.schemas.deadletters import Source
from cxpulse.streams.funnels import load_funnels
from cxpulse.streams.ingest import encode_batch, route
from cxpulse.streams.keyed import KeyLimits
from cxpulse.streams.stage import JourneyStage

SIZES = (100_000, 1_000_000)
CHUNK = 5_000  # journeys per simulated ingest poll
FREEZE_AFTER_MS = 1_000  # the stage's clock moves 2 s per poll: earlier polls' keys are idle
ATTRS = {"product_line": "printers", "device": "mobile", "locale": "en-US", "region": "emea",
         "tier": "consumer", "entry": "search"}  # fmt: skip
#: What `bench/realistic.py` adds: ten more attributes, and envelope context the contract keeps
#: as unknown fields (decoding drops them; the raw baseline and events_raw keep them).
REALISTIC_ATTRS = {**ATTRS, "country": "DE", "product_model": "OfficeJet Pro 9015e",
                   "customer_since": "2019", "support_plan": "care-pack-3y",
                   "warranty_status": "in_warranty", "os": "Android 14", "browser": "Chrome 131",
                   "app_version": "support-portal-web/5.42.1", "experiment": "flow-v2:B",
                   "channel": "web"}  # fmt: skip
PAGE = os.sysconf("SC_PAGE_SIZE")


def rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE


def iso(epoch_ms: int) -> str:
    seconds, millis = divmod(epoch_ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}+00:00"


def journey_events(n: int, now_ms: int, realistic: bool = False) -> list[bytes]:
    """Three events of journey `n` (customer c-n), the last 10 s ago, as exact-size bytes like
    those a Kafka consumer returns (orjson's own result keeps a 4 KiB buffer each)."""
    kinds: list[tuple[str, dict[str, Any]]] = [
        ("portal.session_started", {"entry": "search"}),
        ("portal.step_viewed", {"step": "identify_device"}),
        ("portal.step_completed", {"step": "identify_device", "outcome": "pass"}),
    ]
    docs = [
        {"event_id": f"e-{n}-{k}", "schema_version": 1, "type": kind,
         "occurred_at": iso(now_ms - 40_000 + 10_000 * k), "customer_id": f"c-{n}",
         "session_id": f"s-{n}", "attrs": REALISTIC_ATTRS if realistic else ATTRS, "data": data}
        for k, (kind, data) in enumerate(kinds)
    ]  # fmt: skip
    if realistic:
        for k, doc in enumerate(docs):
            doc["event_id"] = f"{uuid.UUID(int=n * 4 + k)}"
            doc["context"] = {
                "page_url": "https://support.example.com/en-us/printers/officejet-pro-9015e/"
                f"self-service/step-{k}?sn=CN{n:010d}",
                "referrer": "https://www.google.com/", "user_agent": USER_AGENT,
                "ip_hash": f"{n:064x}", "trace_id": f"{n * 7 + k:032x}",
                "span_id": f"{n * 3 + k:016x}", "viewport": "412x915",
                "consent": "necessary,functional,analytics",
                "client_sent_at": iso(now_ms - 40_000 + 10_000 * k + 120),
            }  # fmt: skip
            doc["producer"] = {"service": "support-portal-bff", "version": "2.18.0",
                               "instance": f"portal-bff-7c9d8f6b5-{n % 99991:05x}"}  # fmt: skip
    return [bytes(memoryview(orjson.dumps(doc))) for doc in docs]


USER_AGENT = ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
              "Chrome/131.0.6778.104 Mobile Safari/537.36")  # fmt: skip


def polls(journeys: int, now_ms: int, realistic: bool) -> Iterator[list[bytes]]:
    for start in range(0, journeys, CHUNK):
        yield [raw for n in range(start, min(start + CHUNK, journeys))
               for raw in journey_events(n, now_ms, realistic)]  # fmt: skip


class Discard:
    """The stage's output goes nowhere: only what it keeps is measured."""

    def send(self, topic: str, key: Any, value: Any, partition: int | None = None) -> None:
        pass


def hold_in_stage(journeys: int, now_ms: int, realistic: bool, freeze: bool) -> tuple[Any, int]:
    clock = [now_ms]
    limits = KeyLimits(freeze_after_ms=FREEZE_AFTER_MS if freeze else 0)
    stage = JourneyStage(Discard(), load_funnels(), restore=lambda p: {}, clock=lambda: clock[0],
                         limits=limits)  # fmt: skip
    for number, raws in enumerate(polls(journeys, now_ms, realistic)):
        chunk = [(raw, Source("cx.portal.v1", 0, i)) for i, raw in enumerate(raws)]
        for partition, pieces in route(chunk, PARTITIONS, now_ms).keyed.items():
            for piece in pieces:
                stage.process(partition, encode_batch(piece))
                stage.persist()
        clock[0] += 2 * FREEZE_AFTER_MS
        stage.tick()  # the worker's timer: freezes the keys of earlier polls
        stage.persist()
        if number % 40 == 39:
            say(f"stage: {(number + 1) * CHUNK:,} journeys, {stage.frozen_count():,} frozen")
    return stage, stage.open_journeys()


def hold_raw(journeys: int, now_ms: int, realistic: bool, freeze: bool) -> tuple[Any, int]:
    held: dict[str, list[bytes]] = {}
    for raws in polls(journeys, now_ms, realistic):
        for raw in raws:
            held.setdefault(orjson.loads(raw)["customer_id"], []).append(raw)
    return held, len(held)


def measure(kind: str, journeys: int) -> dict[str, Any]:
    """In this process: resident bytes added by holding `journeys` open journeys. `kind`:
    stage, live or raw, with `-realistic` for the realistic event size."""
    now_ms = time.time_ns() // 1_000_000
    what, _, size = kind.partition("-")
    hold = hold_raw if what == "raw" else hold_in_stage
    realistic, freeze = size == "realistic", what == "stage"
    hold(100, now_ms - 60_000, realistic, freeze)  # warm up: imports, caches, first arenas
    gc.collect()
    before = rss()
    started = time.perf_counter()
    kept, open_journeys = hold(journeys, now_ms, realistic, freeze)
    seconds = time.perf_counter() - started
    gc.collect()
    after = rss()
    assert open_journeys == journeys, f"{open_journeys} of {journeys} journeys are open"
    del kept
    mean = sum(map(len, journey_events(0, now_ms, realistic))) / 3
    return {"rss_before": before, "rss_after": after, "seconds": round(seconds, 1),
            "bytes_per_journey": round((after - before) / journeys),
            "mean_event_bytes": round(mean)}  # fmt: skip


def run(kind: str, journeys: int) -> dict[str, Any]:
    say(f"{kind}: {journeys:,} open journeys")
    command = [sys.executable, "-m", "bench.memory", kind, str(journeys)]
    out = subprocess.run(command, check=True, capture_output=False, stdout=subprocess.PIPE)
    result: dict[str, Any] = orjson.loads(out.stdout)
    say(f"{kind}: {result['bytes_per_journey']:,} bytes per journey")
    return result


#: (kind, journeys): live keys only at 100,000 (at 1,000,000 they would take ~8 GiB).
RUNS = [
    *(
        (f"{what}{size}", n)
        for size in ("", "-realistic")
        for n in SIZES
        for what in ("stage", "raw")
    ),
    ("live", 100_000),
    ("live-realistic", 100_000),
]
TARGET = 2_000


def main() -> None:
    results = {f"{kind}_{n}": run(kind, n) for kind, n in RUNS}
    table = []
    for kind, n in RUNS:
        what, _, size = kind.partition("-")
        got, raw = results[f"{kind}_{n}"], results[f"raw{'-' * bool(size)}{size}_{n}"]
        ratio = got["bytes_per_journey"] / raw["bytes_per_journey"]
        label = {"stage": "journey stage, idle keys (frozen)", "live": "journey stage, live keys",
                 "raw": "raw event bytes in a dict per key (baseline)"}[what]  # fmt: skip
        target = ""
        if what == "stage" and n == 1_000_000:
            met = got["bytes_per_journey"] <= TARGET
            target = f"<= {TARGET:,} ({'met' if met else 'not met'})"
        table.append(
            (f"{label}, bytes per open journey at {n:,}, {size or 'simulator'} events",
             f"{got['bytes_per_journey']:,}", target,
             f"RSS {got['rss_after'] / 2**20:,.0f} MiB; 3 events per journey of "
             f"{got['mean_event_bytes']:,} bytes; ratio to raw bytes {ratio:.2f}")
        )  # fmt: skip
    figures = {"events_per_journey": 3, "partitions": PARTITIONS,
               "freeze_after_ms": FREEZE_AFTER_MS, **results}  # fmt: skip
    write_result("memory", figures, table)


if __name__ == "__main__":
    if len(sys.argv) == 3:
        print(orjson.dumps(measure(sys.argv[1], int(sys.argv[2]))).decode())
    else:
        main()
