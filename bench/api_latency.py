"""API latency: p50/p99 of the funnel summary and KPI endpoints at concurrency 32 over 7 days of
simulated history (target p99 <= 50 ms). Baseline in the same run: /healthz, the floor of the
HTTP stack without a query.

The history goes through the real journey stage (without Kafka) into a chdb store; the API runs
as its own `cxpulse api` process, as in server mode, and the load comes from this process.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.common import write_result
from cxpulse.deploy.kafka import free_port
from cxpulse.sinks.migrate import migrate
from cxpulse.sinks.store import ChdbStore
from cxpulse.streams import topics
from cxpulse.streams.funnels import load_funnels
from cxpulse.streams.ingest import Source, encode_batch, route
from cxpulse.streams.simulator.model import SimConfig
from cxpulse.streams.simulator.run import Plan
from cxpulse.streams.stage import JourneyStage

DAYS = 7
RATE = 1.0  # events per simulated second: ~600,000 events over 7 days
CONCURRENCY = 32
REQUESTS = 1500
TARGET_P99_MS = 50.0
KEY = "bench-key"


class Rows:
    """Collects the stage's store rows per table."""

    def __init__(self) -> None:
        self.by_table: dict[str, list[dict[str, Any]]] = {}

    def send(self, topic: str, key: Any, value: Any, partition: int | None = None) -> None:
        table = topics.STORE_TABLES.get(topic)
        if table is not None and value is not None and table != "events_raw":
            self.by_table.setdefault(table, []).append(value)


def build_history(data_dir: Path) -> int:
    now = time.time_ns() // 1_000_000
    plan = Plan(SimConfig(seed=7, start_ms=now - DAYS * 86_400_000, rate=RATE),
                duration_ms=DAYS * 86_400_000)  # fmt: skip
    rows = Rows()
    stage = JourneyStage(rows, load_funnels(), restore=lambda p: {})
    batch: list[bytes] = []
    events = 0
    for message in plan.messages():
        batch.append(message.value)
        if len(batch) == 5000:
            events += _feed(stage, batch, now)
            batch = []
    events += _feed(stage, batch, now)
    stage.tick()
    with ChdbStore(data_dir / "chdb", "cxpulse") as store:
        migrate(store)
        for table, table_rows in rows.by_table.items():
            for start in range(0, len(table_rows), 50_000):
                store.insert(table, table_rows[start : start + 50_000])
    return events


def _feed(stage: JourneyStage, raws: list[bytes], now: int) -> int:
    chunk = [(raw, Source("cx.portal.v1", 0, i)) for i, raw in enumerate(raws)]
    for partition, pieces in route(chunk, 4, now).keyed.items():
        for piece in pieces:
            stage.process(partition, encode_batch(piece))
    return len(raws)


async def load(base: str, path: str, params: dict[str, str]) -> list[float]:
    latencies: list[float] = []
    headers = {"Authorization": f"Bearer {KEY}"}
    limits = httpx.Limits(max_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits) as client:
        queue = iter(range(REQUESTS))

        async def worker() -> None:
            for _ in queue:
                started = time.perf_counter()
                response = await client.get(path, params=params)
                latencies.append((time.perf_counter() - started) * 1000)
                assert response.status_code == 200, response.text

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return latencies


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "var"
        started = time.perf_counter()
        events = build_history(data_dir)
        print(f"history: {events:,} events in {time.perf_counter() - started:.0f} s", flush=True)
        port = free_port()
        env = {**os.environ, "CXPULSE_DATA_DIR": str(data_dir), "CXPULSE_API_KEYS": KEY,
               "CXPULSE_API_PORT": str(port), "CXPULSE_LOG_LEVEL": "warning"}  # fmt: skip
        server = subprocess.Popen([sys.executable, "-m", "cxpulse.deploy.cli", "api"], env=env)
        try:
            base = f"http://127.0.0.1:{port}"
            for _ in range(100):
                try:
                    if httpx.get(f"{base}/healthz").status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.2)
            end = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 60))
            start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - DAYS * 86400))
            window = {"start": start, "end": end}
            cases = {
                "healthz (baseline)": ("/healthz", {}),
                "funnel summary, 7 days": ("/v1/funnels/self_service/summary", window),
                "funnel summary, 7 days, one segment": (
                    "/v1/funnels/self_service/summary", {**window, "device": "mobile"}),
                "contact-center KPIs, 7 days": ("/v1/contact-center/kpis", window),
            }  # fmt: skip
            figures: dict[str, Any] = {"events": events, "concurrency": CONCURRENCY,
                                       "requests_per_endpoint": REQUESTS}  # fmt: skip
            table = []
            for name, (path, params) in cases.items():
                asyncio.run(load(base, path, params))  # warm-up
                latencies = asyncio.run(load(base, path, params))
                p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
                figures[name] = {"p50_ms": round(p50, 2), "p99_ms": round(p99, 2),
                                 "mean_ms": round(statistics.fmean(latencies), 2)}  # fmt: skip
                target = "" if "baseline" in name else f"p99 <= {TARGET_P99_MS:g} ms"
                table.append((name, f"p50 {p50:.1f} ms, p99 {p99:.1f} ms", target, ""))
        finally:
            server.terminate()
            server.wait(timeout=30)
        write_result("api_latency", figures, table)


if __name__ == "__main__":
    main()
