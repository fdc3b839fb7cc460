"""Shared helpers of the benchmarks: timing on one core and writing results."""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def pin_to_one_core() -> None:
    """Per-core figures: keep the process (and its threads) on one CPU."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})


def best_rate(run: Callable[[], int], repeats: int = 5) -> float:
    """Items per second of the best of `repeats` runs (the least disturbed by the machine)."""
    best = 0.0
    for _ in range(repeats):
        started = time.perf_counter()
        items = run()
        best = max(best, items / (time.perf_counter() - started))
    return best


def write_result(
    name: str, figures: dict[str, Any], table: list[tuple[str, str, str, str]]
) -> None:
    """bench/results/<name>.json and .md: figures with their target and baseline ratio."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    meta = {
        "benchmark": name,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        # Other work on the machine slows a benchmark down: readers should see how busy it was.
        "load_average_1_5_15m": [round(load, 2) for load in os.getloadavg()],
    }
    (RESULTS / f"{name}.json").write_text(json.dumps({**meta, **figures}, indent=2) + "\n")
    load = ", ".join(f"{x:.2f}" for x in meta["load_average_1_5_15m"])
    header = (
        f"{meta['measured_at']}, {meta['machine']}, Python {meta['python']}, "
        f"load average (1, 5, 15 min) at the end: {load}"
    )
    lines = [f"# {name}", "", header, ""]
    lines += ["| measure | value | target | note |", "| --- | --- | --- | --- |"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in table]
    (RESULTS / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
