"""Decode + validate throughput of the event contract on one core (target >= 500,000 events/s).

Input: simulated traffic (all event types in their realistic mix), serialised as producers send
it. Baseline in the same run: orjson decoding alone, the floor of any JSON pipeline, so the
ratio says what validation costs on top of decoding.
"""

from __future__ import annotations

import itertools
import time

import orjson

from bench.common import best_rate, pin_to_one_core, write_result
from cxpulse.schemas.validate import Rejection, validate
from cxpulse.streams.simulator.config import SimConfig
from cxpulse.streams.simulator.stream import generate

EVENTS = 200_000
TARGET = 500_000


def main() -> None:
    pin_to_one_core()
    now_ms = time.time_ns() // 1_000_000
    start_ms = now_ms - 3 * 3600 * 1000
    events = itertools.islice(generate(SimConfig(start_ms=start_ms)), EVENTS)
    raws = [orjson.dumps(event) for event in events]
    rejected = sum(isinstance(validate(raw, now_ms), Rejection) for raw in raws)
    assert rejected == 0, f"{rejected} simulated events were rejected"

    def run_validate() -> int:
        for raw in raws:
            validate(raw, now_ms)
        return len(raws)

    def run_orjson() -> int:
        for raw in raws:
            orjson.loads(raw)
        return len(raws)

    rate = best_rate(run_validate)
    baseline = best_rate(run_orjson)
    mean_bytes = sum(map(len, raws)) / len(raws)
    write_result(
        "validation",
        {
            "events": len(raws),
            "mean_event_bytes": round(mean_bytes, 1),
            "validate_events_per_s": round(rate),
            "orjson_decode_events_per_s": round(baseline),
            "ratio_to_orjson": round(rate / baseline, 3),
            "target_events_per_s": TARGET,
            "meets_target": rate >= TARGET,
        },
        [
            ("decode + validate, events/s/core", f"{rate:,.0f}", f">= {TARGET:,}",
             f"{mean_bytes:.0f}-byte simulated events"),
            ("orjson decode only (baseline)", f"{baseline:,.0f}", "",
             f"ratio {rate / baseline:.2f}"),
        ],
    )  # fmt: skip


if __name__ == "__main__":
    main()
