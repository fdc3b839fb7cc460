"""Memory: resident bytes per open journey held by the journey stage, at 100,000 and 1,000,000
open journeys.

The stage (streams/stage.py) is fed, in process and without Kafka, keyed batches as the ingest
stage writes them: one customer per journey, three portal events each (session started, first
step viewed and completed), all from the last minute so no journey closes. Baseline in the same
run: the same events kept as raw bytes in a dict per key, the least any per-key state could
hold. Each measurement runs in a fresh process, so one's garbage cannot hide in the next one's
resident set.
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import orjson

from bench.common import write_result
from bench.harness import PARTITIONS, say
from cxpulse.streams.funnels import load_funnels
from cxpulse.streams.ingest import Source, encode_batch, route
from cxpulse.streams.stage import JourneyStage

SIZES = (100_000, 1_000_000)
CHUNK = 5_000  # journeys per simulated ingest poll
ATTRS = {"product_line": "printers", "device": "mobile", "locale": "en-US", "region": "emea",
         "tier": "consumer", "entry": "search"}  # fmt: skip
PAGE = os.sysconf("SC_PAGE_SIZE")


def rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE


def iso(epoch_ms: int) -> str:
    seconds, millis = divmod(epoch_ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}+00:00"


def journey_events(n: int, now_ms: int) -> list[bytes]:
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
         "session_id": f"s-{n}", "attrs": ATTRS, "data": data}
        for k, (kind, data) in enumerate(kinds)
    ]  # fmt: skip
    return [bytes(memoryview(orjson.dumps(doc))) for doc in docs]


def polls(journeys: int, now_ms: int) -> Iterator[list[bytes]]:
    for start in range(0, journeys, CHUNK):
        yield [raw for n in range(start, min(start + CHUNK, journeys))
               for raw in journey_events(n, now_ms)]  # fmt: skip


class Discard:
    """The stage's output goes nowhere: only what it keeps is measured."""

    def send(self, topic: str, key: Any, value: Any, partition: int | None = None) -> None:
        pass


def hold_in_stage(journeys: int, now_ms: int) -> tuple[Any, int]:
    stage = JourneyStage(Discard(), load_funnels(), restore=lambda p: {})
    for number, raws in enumerate(polls(journeys, now_ms)):
        chunk = [(raw, Source("cx.portal.v1", 0, i)) for i, raw in enumerate(raws)]
        for partition, pieces in route(chunk, PARTITIONS, now_ms).keyed.items():
            for piece in pieces:
                stage.process(partition, encode_batch(piece))
                stage.persist()
        if number % 40 == 39:
            say(f"stage: {(number + 1) * CHUNK:,} journeys")
    return stage, stage.open_journeys()


def hold_raw(journeys: int, now_ms: int) -> tuple[Any, int]:
    held: dict[str, list[bytes]] = {}
    for raws in polls(journeys, now_ms):
        for raw in raws:
            held.setdefault(orjson.loads(raw)["customer_id"], []).append(raw)
    return held, len(held)


def measure(kind: str, journeys: int) -> dict[str, Any]:
    """In this process: resident bytes added by holding `journeys` open journeys."""
    now_ms = time.time_ns() // 1_000_000
    hold = hold_in_stage if kind == "stage" else hold_raw
    hold(100, now_ms - 60_000)  # warm up: imports, caches and the allocator's first arenas
    gc.collect()
    before = rss()
    started = time.perf_counter()
    kept, open_journeys = hold(journeys, now_ms)
    seconds = time.perf_counter() - started
    gc.collect()
    after = rss()
    assert open_journeys == journeys, f"{open_journeys} of {journeys} journeys are open"
    del kept
    return {"rss_before": before, "rss_after": after, "seconds": round(seconds, 1),
            "bytes_per_journey": round((after - before) / journeys)}  # fmt: skip


def run(kind: str, journeys: int) -> dict[str, Any]:
    say(f"{kind}: {journeys:,} open journeys")
    command = [sys.executable, "-m", "bench.memory", kind, str(journeys)]
    out = subprocess.run(command, check=True, capture_output=False, stdout=subprocess.PIPE)
    result: dict[str, Any] = orjson.loads(out.stdout)
    say(f"{kind}: {result['bytes_per_journey']:,} bytes per journey")
    return result


def main() -> None:
    results = {f"{kind}_{n}": run(kind, n) for n in SIZES for kind in ("stage", "raw")}
    table = []
    for n in SIZES:
        stage, raw = results[f"stage_{n}"], results[f"raw_{n}"]
        ratio = stage["bytes_per_journey"] / raw["bytes_per_journey"]
        results[f"ratio_to_raw_{n}"] = round(ratio, 2)
        table += [
            (f"journey stage, bytes per open journey at {n:,}", f"{stage['bytes_per_journey']:,}",
             "", f"RSS {stage['rss_after'] / 2**20:,.0f} MiB; 3 events per journey; "
                 f"ratio to raw bytes {ratio:.1f}"),
            (f"raw event bytes in a dict per key (baseline) at {n:,}",
             f"{raw['bytes_per_journey']:,}", "", f"RSS {raw['rss_after'] / 2**20:,.0f} MiB"),
        ]  # fmt: skip
    write_result("memory", {"events_per_journey": 3, "partitions": PARTITIONS, **results}, table)


if __name__ == "__main__":
    if len(sys.argv) == 3:
        print(orjson.dumps(measure(sys.argv[1], int(sys.argv[2]))).decode())
    else:
        main()
