"""API latency: p50/p99 of the funnel summary, KPI, change impact and experiment comparison
endpoints at concurrency 32 over 7 days of simulated history (target p99 <= 50 ms), measured
with wrk (C, epoll) so the load generator costs the 2-core machine next to nothing.

Cases: /healthz, the floor of the HTTP stack without a query; the dashboard-polling case, 32
connections asking for the same figures (served from the API's short-lived result cache); and
the uncached case, every request a range of its own, so each one costs a store query, at 32
connections and one at a time (what one query costs without waiting for the others). The
history goes through the real journey stage (without Kafka) into a chdb store; the API runs as
its own `cxpulse api` process, as in server mode; a change stored in the middle of the history
has its impact read over 3.5 days either side. The machine's 1-minute load average is
recorded after each case (it includes the benchmark itself, about 1 to 1.5 on its own), since
other work on the machine shows in the tail latencies.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.common import write_result
from cxpulse.deploy.kafka import free_port
from cxpulse.schemas.deadletters import Source
from cxpulse.sinks.changes import Change, add_change
from cxpulse.sinks.migrate import migrate
from cxpulse.sinks.store import ChdbStore
from cxpulse.streams import topics
from cxpulse.streams.funnels import load_funnels
from cxpulse.streams.ingest import encode_batch, route
from cxpulse.streams.settings import Settings
from cxpulse.streams.simulator.config import SimConfig
from cxpulse.streams.simulator.run import Plan
from cxpulse.streams.stage import JourneyStage

DAYS = 7
RATE = 1.0  # events per simulated second: ~600,000 events over 7 days
CONCURRENCY = 32
SECONDS = 10  # measured per case, after WARMUP_SECONDS of the same load
WARMUP_SECONDS = 2
TARGET_P99_MS = 50.0
T = f"p99 <= {TARGET_P99_MS:g} ms"
QUIET_LOAD = 1.0  # 1-minute load average to wait for (2 cores) ...
QUIET_PATIENCE_S = 180  # ... for at most this long
KEY = "bench-key"
LUA = Path(__file__).resolve().with_suffix(".lua")
CHANGE = "bench-change"
IMPACT_WINDOW_S = DAYS * 86_400 // 2  # the whole history: 3.5 days before and after


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
        add_change(store, Change(CHANGE, "A change mid-history", now - DAYS * 86_400_000 // 2))
    return events


def _feed(stage: JourneyStage, raws: list[bytes], now: int) -> int:
    chunk = [(raw, Source("cx.portal.v1", 0, i)) for i, raw in enumerate(raws)]
    for partition, pieces in route(chunk, 4, now).keyed.items():
        for piece in pieces:
            stage.process(partition, encode_batch(piece))
    return len(raws)


def wrk(url: str, seconds: int, connections: int, *args: str) -> dict[str, Any]:
    """One wrk run; the Lua script prints its figures as JSON."""
    threads = min(2, connections)
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "30s",
               "-s", str(LUA), url, "--", KEY, *args]  # fmt: skip
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    figures: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return figures


def wait_until_quiet(limit: float, patience_s: float) -> float:
    """Wait (up to `patience_s`) for the 1-minute load average to fall to `limit`: building the
    history, or other work on the machine, would otherwise show in the tail latencies."""
    deadline = time.monotonic() + patience_s
    while os.getloadavg()[0] > limit and time.monotonic() < deadline:
        time.sleep(5)
    return os.getloadavg()[0]


def serve(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "CXPULSE_DATA_DIR": str(data_dir), "CXPULSE_API_KEYS": KEY,
           "CXPULSE_API_PORT": str(port), "CXPULSE_LOG_LEVEL": "warning"}  # fmt: skip
    server = subprocess.Popen([sys.executable, "-m", "cxpulse.deploy.cli", "api"], env=env)
    for _ in range(150):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz") as response:
                if response.status == 200:
                    return server
        except OSError:
            time.sleep(0.2)
    server.terminate()
    raise RuntimeError("the API did not start")


def rfc3339(epoch_ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch_ms // 1000))


def main() -> None:
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: `make bench` installs it (apt-get install wrk)")
    cache_s = Settings().api_cache_seconds
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "var"
        started = time.perf_counter()
        events = build_history(data_dir)
        print(f"history: {events:,} events in {time.perf_counter() - started:.0f} s", flush=True)
        port = free_port()
        server = serve(data_dir, port)
        try:
            base = f"http://127.0.0.1:{port}"
            now_ms = time.time_ns() // 1_000_000
            start_ms, end_ms = now_ms - DAYS * 86_400_000, now_ms + 60_000
            window = f"start={rfc3339(start_ms)}&end={rfc3339(end_ms)}"
            summary, kpis = "/v1/funnels/self_service/summary", "/v1/contact-center/kpis"
            impact = f"/v1/changes/{CHANGE}/impact"
            compare = "/v1/funnels/self_service/compare?by=tier&control=consumer"
            windows = ("window", str(IMPACT_WINDOW_S))  # every request its own window
            uncached = (str(start_ms), str(end_ms))  # the script gives every request its range
            # name: (path, connections, script arguments, target)
            cases: dict[str, tuple[str, int, tuple[str, ...], str]] = {
                "healthz (floor: HTTP stack, no query)": ("/healthz", CONCURRENCY, (), ""),
                "funnel summary, 7 days, same figures (cached)": (
                    f"{summary}?{window}", CONCURRENCY, (), T),
                "funnel summary, 7 days, one segment, same figures (cached)": (
                    f"{summary}?{window}&device=mobile", CONCURRENCY, (), T),
                "contact-center KPIs, 7 days, same figures (cached)": (
                    f"{kpis}?{window}", CONCURRENCY, (), T),
                "funnel summary, 7 days, every request its own range (uncached)": (
                    summary, CONCURRENCY, uncached, ""),
                "contact-center KPIs, 7 days, every request its own range (uncached)": (
                    kpis, CONCURRENCY, uncached, ""),
                "funnel summary, 7 days, uncached, one request at a time": (
                    summary, 1, uncached, ""),
                "contact-center KPIs, 7 days, uncached, one request at a time": (
                    kpis, 1, uncached, ""),
                "change impact, 3.5 days either side, same figures (cached)": (
                    f"{impact}?window={IMPACT_WINDOW_S}s", CONCURRENCY, (), T),
                "experiment comparison by tier, 7 days, same figures (cached)": (
                    f"{compare}&{window}", CONCURRENCY, (), T),
                "change impact, every request its own window (uncached)": (
                    impact, CONCURRENCY, windows, ""),
                "experiment comparison, every request its own range (uncached)": (
                    compare, CONCURRENCY, uncached, ""),
                "change impact, uncached, one request at a time": (impact, 1, windows, ""),
                "experiment comparison, uncached, one request at a time": (
                    compare, 1, uncached, ""),
            }  # fmt: skip
            load = wait_until_quiet(QUIET_LOAD, QUIET_PATIENCE_S)
            print(f"measuring at load average {load:.2f}", flush=True)
            figures: dict[str, Any] = {
                "events": events, "seconds_per_case": SECONDS, "api_cache_seconds": cache_s,
                "load_generator": "wrk (2 threads; 1 for one connection)",
                "load_average_1m_at_start": round(load, 2), "cases": {},
            }  # fmt: skip
            table = []
            for name, (path, connections, args, target) in cases.items():
                wrk(base + path, WARMUP_SECONDS, connections, *args)
                run = wrk(base + path, SECONDS, connections, *args)
                load_1m = round(os.getloadavg()[0], 2)
                p50, p99 = run["p50_us"] / 1000, run["p99_us"] / 1000
                failed = run["errors"] + run["non_2xx_3xx"]
                figures["cases"][name] = {
                    "connections": connections, "p50_ms": round(p50, 2),
                    "p90_ms": round(run["p90_us"] / 1000, 2),
                    "p99_ms": round(p99, 2), "max_ms": round(run["max_us"] / 1000, 2),
                    "mean_ms": round(run["mean_us"] / 1000, 2), "requests": run["requests"],
                    "requests_per_s": round(run["requests"] / (run["duration_us"] / 1e6)),
                    "failed": failed, "load_average_1m_after": load_1m,
                }  # fmt: skip
                verdict = ("met" if p99 <= TARGET_P99_MS else "not met") if target else ""
                rate = figures["cases"][name]["requests_per_s"]
                plural = "s" if connections > 1 else ""
                note = (f"{connections} connection{plural}, {rate:,} req/s, {failed} failed; "
                        f"load average {load_1m:.2f}")  # fmt: skip
                table.append((name, f"p50 {p50:.1f} ms, p99 {p99:.1f} ms",
                              f"{target} ({verdict})" if target else "", note))  # fmt: skip
                print(table[-1], flush=True)
        finally:
            server.terminate()
            server.wait(timeout=30)
        write_result("api_latency", figures, table)


if __name__ == "__main__":
    main()
