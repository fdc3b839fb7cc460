"""Ground-truth runs: simulated history, its independent ground truth, and the exact-equality
check of the stored figures against it (shared by the end-to-end and the fault tests)."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest

from cxpulse.schemas.validate import Rejection, validate
from cxpulse.sinks.funnel_queries import funnel_breakdown, funnel_summary
from cxpulse.sinks.store import Store
from cxpulse.streams import topics
from cxpulse.streams.dlq import read_dead_letters
from cxpulse.streams.simulator.config import SimConfig
from cxpulse.streams.simulator.noise import Message, NoiseConfig
from cxpulse.streams.simulator.run import GroundTruthCollector, Plan
from cxpulse.streams.simulator.truth_funnels import load_funnels, summarize_funnel
from tests.streams.test_stage import assert_kpis_and_containment

HOUR = 3_600_000
NOISE = NoiseConfig(duplicates=0.03, out_of_order=0.03, late=0.02, malformed=0.01)
FUNNEL = load_funnels()[0]
STEPS = [step["name"] for step in FUNNEL["steps"]]
SEGMENTS: list[dict[str, str]] = [{}, {"device": "mobile"}, {"tier": "business", "region": "emea"}]


def history(start_ms: int, count: int, seed: int, noise: NoiseConfig = NOISE) -> list[Message]:
    """`count` clean simulated events from `start_ms` (2 a second) with producer noise."""
    plan = Plan(SimConfig(seed=seed, start_ms=start_ms, rate=2.0), noise, count)
    return list(plan.messages())


def ground_truth(messages: list[Message], now_ms: int) -> dict[str, Any]:
    """The ground truth as of the pipeline's watermark (wall clock - 2 min)."""
    collector = GroundTruthCollector()
    for message in messages:
        collector.observe(message, now_ms)
    return collector.ground_truth([FUNNEL], as_of_ms=now_ms - 120_000)


def entered(journey: dict[str, Any]) -> int | None:
    progress = journey["funnels"].get(FUNNEL["name"])
    return None if progress is None else progress["reach_ms"][0]


def assert_store_equals_truth(store: Store, truth: dict[str, Any]) -> int:
    """Funnel figures (whole range and halves, three segments), the locale breakdown, every
    contact KPI, containment, and the stored journey count equal the ground truth exactly;
    returns how many journeys entered the funnel (callers check it is not trivially small)."""
    journeys = truth["journeys"]
    everything = (0, time.time_ns() // 1_000_000)
    assert_contacts_equal_truth(store, truth)
    assert_kpis_and_containment(store, truth, *everything)  # type: ignore[arg-type]
    funnel = [j for j in journeys if entered(j) is not None]
    assert all(j["closed"] for j in funnel), "history must be closed by now"
    start = min(_reach(j) for j in funnel)
    end = max(_reach(j) for j in funnel) + 1
    middle = start + (end - start) // 2
    for lo, hi in ((start, end), (start, middle), (middle, end)):
        for filters in SEGMENTS:
            rows = [j for j in funnel if lo <= _reach(j) < hi
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
        value: sum(1 for j in funnel if j["attrs"]["locale"] == value)
        for value in {j["attrs"]["locale"] for j in funnel}
    }
    stored = store.query("SELECT count() AS n FROM journeys FINAL")[0]["n"]
    assert stored == len(journeys)
    return len(funnel)


#: Per-contact flags whose sums are the KPI counts (compared one contact at a time, so a
#: failure names the contacts, not only a ratio).
CONTACT_FLAGS = ("queued", "answered", "abandoned", "short_abandoned", "answered_within_sl",
                 "transferred", "resolved", "wait_ms", "handle_ms")  # fmt: skip


def assert_contacts_equal_truth(store: Store, truth: dict[str, Any]) -> None:
    """Every stored contact (latest version, not deleted) equals its ground-truth row in the
    flags the KPIs count, and no contact is missing or extra."""
    columns = ", ".join(CONTACT_FLAGS)
    rows = store.query(f"SELECT contact_id, {columns} FROM contacts FINAL WHERE is_deleted = 0")
    stored = {r["contact_id"]: {k: r[k] for k in CONTACT_FLAGS} for r in rows}
    expected = {
        c["contact_id"]: {k: c[k] if k.endswith("_ms") else int(bool(c[k])) for k in CONTACT_FLAGS}
        for c in truth["contacts"]
    }
    missing = sorted(set(expected) - set(stored))
    extra = sorted(set(stored) - set(expected))
    differ = {
        cid: (stored[cid], expected[cid])
        for cid in sorted(set(stored) & set(expected))
        if stored[cid] != expected[cid]
    }
    assert (missing, extra, differ) == ([], [], {}), (
        f"{len(missing)} missing {missing[:5]}, {len(extra)} extra {extra[:5]}, "
        f"{len(differ)} differ (stored, truth): {list(differ.items())[:5]}"
    )


def _reach(journey: dict[str, Any]) -> int:
    first = entered(journey)
    assert first is not None
    return first


def assert_each_message_counted_once(
    store: Store, bootstrap: str, truth: dict[str, Any], messages: list[Message], now_ms: int
) -> None:
    """Nothing lost, nothing doubled below the figures: one stored raw event per distinct valid
    event, and one dead letter per invalid message (by source position, since a redone batch may
    dead-letter a message again) with the reason the validator gives at `now_ms` (the noise's
    `in_future` stamps of old history are in the past, hence valid). Dead letters of internal
    topics (poison) are the caller's to check."""
    stored = store.query("SELECT count() AS n FROM events_raw FINAL")[0]["n"]
    assert stored == truth["messages"]["accepted"], (stored, truth["messages"])
    inputs = {t.name for t in topics.INPUT_TOPICS}
    letters = {
        (d.source_topic, d.source_partition, d.source_offset): d.reason
        for d in read_dead_letters(bootstrap)
        if d.source_topic in inputs
    }
    verdicts = [validate(m.value, now_ms) for m in messages]
    expected = Counter(v.reason for v in verdicts if isinstance(v, Rejection))
    got = Counter(letters.values())
    assert got == expected, (got, expected)
    assert len(letters) == truth["messages"]["dead_lettered"]


def assert_same(got: Any, expected: Any, path: str = "") -> None:
    """Deep equality of JSON-like values: ints, strings, bools and None exact, floats to 1e-9
    relative; `path` names the first difference."""
    if isinstance(expected, dict):
        assert isinstance(got, dict), path
        assert sorted(got) == sorted(expected), (path, sorted(got), sorted(expected))
        for key, value in expected.items():
            assert_same(got[key], value, f"{path}.{key}")
    elif isinstance(expected, list | tuple):
        assert isinstance(got, list | tuple), path
        assert len(got) == len(expected), (path, len(got), len(expected))
        for index, (mine, theirs) in enumerate(zip(got, expected, strict=True)):
            assert_same(mine, theirs, f"{path}[{index}]")
    elif isinstance(expected, float) and not isinstance(got, bool):
        assert isinstance(got, int | float), (path, got, expected)
        assert got == pytest.approx(expected, rel=1e-9, abs=0.0), (path, got, expected)
    else:
        assert type(got) is type(expected), (path, got, expected)
        assert got == expected, (path, got, expected)
