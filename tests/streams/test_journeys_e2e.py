"""End to end on a real broker: funnel, contact-center and containment figures in ClickHouse
equal the ground truth exactly.

Simulated history with every kind of noise goes through Kafka into one or two worker processes
(4 partitions) and the store writer into chdb; the query module's figures for the (closed)
journeys must equal the independent ground truth computed from what was sent. The same holds for
a history file of days-old events replayed with `cxpulse replay` into a fresh stack.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from cxpulse.sinks.migrate import migrate
from cxpulse.sinks.queries import funnel_breakdown, funnel_summary
from cxpulse.sinks.store import ChdbStore
from cxpulse.streams.simulator.groundtruth import load_funnels, summarize_funnel
from cxpulse.streams.simulator.model import SimConfig
from cxpulse.streams.simulator.noise import Message, NoiseConfig
from cxpulse.streams.simulator.output import read_jsonl, send_to_kafka
from cxpulse.streams.simulator.run import GroundTruthCollector, Plan
from tests.streams.test_stage import assert_kpis_and_containment
from tests.support.workers import store_writer, wait_handled, wait_quiet, workers

HOUR = 3_600_000
NOISE = NoiseConfig(duplicates=0.03, out_of_order=0.03, late=0.02, malformed=0.01)
FUNNEL = load_funnels()[0]
STEPS = [step["name"] for step in FUNNEL["steps"]]
SEGMENTS: list[dict[str, str]] = [{}, {"device": "mobile"}, {"tier": "business", "region": "emea"}]


def _history(start_ms: int, count: int, seed: int) -> list[Message]:
    plan = Plan(SimConfig(seed=seed, start_ms=start_ms, rate=2.0), NOISE, count)
    return list(plan.messages())


def _truth(messages: list[Message], now_ms: int) -> dict[str, Any]:
    """The ground truth as of the pipeline's watermark (wall clock - 2 min)."""
    collector = GroundTruthCollector()
    for message in messages:
        collector.observe(message, now_ms)
    return collector.ground_truth([FUNNEL], as_of_ms=now_ms - 120_000)


def _entered(journey: dict[str, Any]) -> int | None:
    progress = journey["funnels"].get(FUNNEL["name"])
    return None if progress is None else progress["reach_ms"][0]


def _assert_store_equals_truth(store: ChdbStore, truth: dict[str, Any]) -> int:
    journeys = truth["journeys"]
    everything = (0, time.time_ns() // 1_000_000)
    assert_kpis_and_containment(store, truth, *everything)
    entered = [j for j in journeys if _entered(j) is not None]
    assert all(j["closed"] for j in entered), "history must be closed by now"
    start = min(_entered(j) for j in entered)  # type: ignore[type-var]
    end = max(_entered(j) for j in entered) + 1  # type: ignore[type-var]
    middle = start + (end - start) // 2
    for lo, hi in ((start, end), (start, middle), (middle, end)):
        for filters in SEGMENTS:
            rows = [j for j in entered if lo <= _entered(j) < hi  # type: ignore[operator]
                    and all(j["attrs"].get(a) == v for a, v in filters.items())]  # fmt: skip
            expected = summarize_funnel(rows, FUNNEL["name"], STEPS)
            got = funnel_summary(store, FUNNEL["name"], STEPS, lo, hi, filters)
            assert (got["journeys"], got["outcomes"]) == (
                expected["journeys"],
                expected["outcomes"],
            )
            for mine, theirs in zip(got["steps"], expected["steps"], strict=True):
                for field in ("reached", "dropped", "escalated", "abandoned",
                              "conversion_from_previous", "conversion_from_start"):  # fmt: skip
                    assert mine[field] == theirs[field], (lo, hi, filters, mine["step"], field)
                median = theirs["median_ms_to_reach"]
                assert mine["median_seconds_to_reach"] == (
                    None if median is None else median / 1000
                )
    by_locale = funnel_breakdown(store, FUNNEL["name"], STEPS, "locale", start, end)
    assert {b["value"]: b["journeys"] for b in by_locale} == {
        value: sum(1 for j in entered if j["attrs"]["locale"] == value)
        for value in {j["attrs"]["locale"] for j in entered}
    }
    stored = store.query("SELECT count() AS n FROM journeys FINAL")[0]["n"]
    assert stored == len(journeys)
    return len(entered)


@pytest.mark.parametrize("worker_count", [1, 2])
def test_funnel_figures_equal_the_ground_truth(
    worker_count: int, fresh_env: dict[str, str], fresh_bootstrap: str, chdb_store: ChdbStore,
    tmp_path: Path,
) -> None:  # fmt: skip
    now_ms = time.time_ns() // 1_000_000
    messages = _history(now_ms - 8 * HOUR, 16_000, seed=100 + worker_count)
    truth = _truth(messages, now_ms)
    migrate(chdb_store)
    for _ in send_to_kafka(messages, fresh_bootstrap):
        pass
    with (
        store_writer(chdb_store, fresh_bootstrap) as writer,
        workers(fresh_env, tmp_path, worker_count) as ports,
    ):
        wait_handled(ports, len(messages), tmp_path)
        wait_quiet(writer)
    assert _assert_store_equals_truth(chdb_store, truth) > 500


def test_replaying_days_old_history_gives_the_same_figures(
    fresh_env: dict[str, str], fresh_bootstrap: str, chdb_store: ChdbStore, tmp_path: Path
) -> None:
    """History written by `cxpulse simulate` three days ago, sent by `cxpulse replay`."""
    history = tmp_path / "history.jsonl"
    subprocess.run(
        [sys.executable, "-m", "cxpulse.deploy.cli", "simulate", "--output", str(history),
         "--fast", "--start", "-80h", "--count", "12000", "--rate", "2", "--seed", "9",
         "--duplicates", "0.03", "--out-of-order", "0.03", "--late", "0.02", "--malformed", "0.01"],
        env=fresh_env, check=True, capture_output=True,
    )  # fmt: skip
    messages = list(read_jsonl(history))
    truth = _truth(messages, time.time_ns() // 1_000_000)
    migrate(chdb_store)
    subprocess.run(
        [sys.executable, "-m", "cxpulse.deploy.cli", "replay", str(history)],
        env=fresh_env, check=True, capture_output=True,
    )  # fmt: skip
    with (
        store_writer(chdb_store, fresh_bootstrap) as writer,
        workers(fresh_env, tmp_path, 2) as ports,
    ):
        wait_handled(ports, len(messages), tmp_path)
        wait_quiet(writer)
    assert _assert_store_equals_truth(chdb_store, truth) > 500
