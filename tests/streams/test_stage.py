"""The journey stage without a broker: simulated traffic in, snapshot rows out, queried in chdb
and compared with the independent ground truth; any order and duplicates give the same store."""

from __future__ import annotations

import base64
import dataclasses
import functools
import random
from collections.abc import Iterable
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cxpulse.schemas.deadletters import Source
from cxpulse.sinks.contact_queries import contact_kpis
from cxpulse.sinks.containment_queries import containment
from cxpulse.sinks.funnel_queries import (
    freshness,
    funnel_breakdown,
    funnel_summary,
    funnel_timeseries,
)
from cxpulse.sinks.migrate import migrate
from cxpulse.sinks.store import ChdbStore
from cxpulse.streams import topics
from cxpulse.streams.funnels import load_funnels
from cxpulse.streams.ingest import encode_batch, partition_for, route
from cxpulse.streams.simulator.config import SimConfig
from cxpulse.streams.simulator.groundtruth import compute_ground_truth
from cxpulse.streams.simulator.noise import NoiseConfig
from cxpulse.streams.simulator.run import GroundTruthCollector, Plan
from cxpulse.streams.simulator.truth_contacts import summarize_kpis
from cxpulse.streams.simulator.truth_funnels import summarize_funnel
from cxpulse.streams.simulator.truth_journeys import summarize_containment
from cxpulse.streams.stage import JourneyStage
from cxpulse.streams.state_store import states_from_records
from cxpulse.streams.units import parse_record_key
from cxpulse.streams.windows import DEFAULT_WINDOWS
from tests.support.rows import insert_sent_rows

FUNNELS = load_funnels()
SELF_SERVICE = FUNNELS[0]
STEPS = [s.name for s in SELF_SERVICE.steps]
HOUR = 3_600_000
NOW_MS = 1_795_500_000_000  # a fixed "now" keeps every run identical
NOISE = NoiseConfig(duplicates=0.05, out_of_order=0.05, late=0.03, malformed=0.02)


class Collector:
    """The stage's output, as the Kafka producer would carry it."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, Any, Any, int | None]] = []

    def send(self, topic: str, key: Any, value: Any, partition: int | None = None) -> None:
        self.messages.append((topic, key, value, partition))


def _run(raws: Iterable[bytes], batch: int, partitions: int = 4) -> Collector:
    out = Collector()
    stage = JourneyStage(out, FUNNELS, restore=lambda p: {}, clock=lambda: NOW_MS)
    raws = list(raws)
    for start in range(0, len(raws), batch):
        chunk = [
            (raw, Source("cx.portal.v1", 0, i)) for i, raw in enumerate(raws[start : start + batch])
        ]
        for partition, pieces in route(chunk, partitions, NOW_MS).keyed.items():
            for piece in pieces:
                stage.process(partition, encode_batch(piece))
                stage.persist()
    stage.tick()
    stage.persist()
    return out


def _latest(out: Collector) -> dict[tuple[str, str, str], dict[str, Any]]:
    """What ReplacingMergeTree FINAL keeps: the latest version per identity, minus deletions."""
    latest: dict[tuple[str, str, str], dict[str, Any]] = {}
    for topic, _key, row, _ in out.messages:
        table = topics.STORE_TABLES.get(topic)
        if table in ("journeys", "journey_funnels"):
            ident = (table, row.get("funnel", ""), row["journey_id"])
            if ident not in latest or row["version"] > latest[ident]["version"]:
                latest[ident] = row
    return {
        k: {c: v for c, v in row.items() if c != "version"}
        for k, row in latest.items()
        if not row["is_deleted"]
    }


def _traffic(count: int, seed: int) -> tuple[list[bytes], GroundTruthCollector]:
    start = NOW_MS - 30 * HOUR
    plan = Plan(SimConfig(seed=seed, start_ms=start, rate=2.0), NOISE, count)
    collector = GroundTruthCollector()
    raws = []
    for message in plan.messages():
        collector.observe(message, NOW_MS)
        raws.append(message.value)
    return raws, collector


def test_store_figures_equal_the_ground_truth(chdb_store: ChdbStore) -> None:
    raws, collector = _traffic(30_000, seed=21)
    out = _run(raws, batch=2000)
    migrate(chdb_store)
    insert_sent_rows(chdb_store, out.messages)

    watermark = NOW_MS - 2 * 60_000
    truth = compute_ground_truth(collector.events.values(), [_spec()], as_of_ms=watermark)
    journeys = truth["journeys"]
    assert sum(1 for j in journeys if "self_service" in j["funnels"]) > 1000
    # Whole range, then an hour, then a segment: the store equals the ground truth exactly.
    ranges = [(NOW_MS - 40 * HOUR, NOW_MS), (NOW_MS - 20 * HOUR, NOW_MS - 19 * HOUR)]
    for start, end in ranges:
        for filters in ({}, {"device": "mobile", "tier": "business"}):
            expected = summarize_funnel(
                [j for j in journeys if _entered(j) is not None and start <= _entered(j) < end
                 and all(j["attrs"].get(a) == v for a, v in filters.items())],
                "self_service", STEPS,
            )  # fmt: skip
            got = funnel_summary(chdb_store, "self_service", STEPS, start, end, filters)
            assert got["journeys"] == expected["journeys"]
            assert got["outcomes"] == expected["outcomes"]
            for mine, theirs in zip(got["steps"], expected["steps"], strict=True):
                assert mine["reached"] == theirs["reached"]
                assert mine["dropped"] == theirs["dropped"]
                assert mine["escalated"] == theirs["escalated"]
                assert mine["abandoned"] == theirs["abandoned"]
                assert mine["conversion_from_previous"] == theirs["conversion_from_previous"]
                assert mine["conversion_from_start"] == theirs["conversion_from_start"]
                median = theirs["median_ms_to_reach"]
                assert mine["median_seconds_to_reach"] == (
                    None if median is None else median / 1000
                )

    series = funnel_timeseries(chdb_store, "self_service", STEPS, NOW_MS - 40 * HOUR, NOW_MS, 3600)
    assert sum(b["journeys"] for b in series) == funnel_summary(
        chdb_store, "self_service", STEPS, NOW_MS - 40 * HOUR, NOW_MS)["journeys"]  # fmt: skip
    by_device = funnel_breakdown(
        chdb_store, "self_service", STEPS, "device", NOW_MS - 40 * HOUR, NOW_MS
    )
    for entry in by_device:
        expected = [
            j
            for j in journeys
            if _entered(j) is not None and j["attrs"]["device"] == entry["value"]
        ]
        assert entry["journeys"] == len(expected)
    assert {p["partition"] for p in freshness(chdb_store)} == {0, 1, 2, 3}
    assert_kpis_and_containment(chdb_store, truth, NOW_MS - 40 * HOUR, NOW_MS)


def assert_kpis_and_containment(
    store: ChdbStore, truth: dict[str, Any], start: int, end: int
) -> None:
    """Contact KPIs (overall, per queue, per channel) and containment equal the ground truth."""
    contacts = [c for c in truth["contacts"] if start <= c["started_ms"] < end]
    assert len(contacts) > 100
    queues = sorted({c["queue"] for c in contacts if c["queue"]})
    for filters in [{}, {"queue": queues[0]}, {"channel": "chat"}]:
        rows = [c for c in contacts if all(c[k] == v for k, v in filters.items())]
        expected = summarize_kpis(rows)
        [got] = contact_kpis(store, start, end, filters)
        for name, value in expected.items():
            if name == "counts":
                assert {k: got["counts"][k] for k in value} == value, filters
            else:
                assert got[name] == value, (name, filters)
    journeys = [j for j in truth["journeys"] if start <= j["start_ms"] < end]
    expected = summarize_containment(journeys)
    [got] = containment(store, start, end)
    for name in ("journeys", "closed", "self_served", "escalated", "abandoned", "in_progress",
                 "containment_rate", "cost_to_serve", "savings"):  # fmt: skip
        assert got[name] == expected[name], name
    ttrs = sorted(j["ttr_ms"] for j in journeys if j["closed"] and j["ttr_ms"] is not None)
    assert got["ttr_median_seconds"] == (ttrs[(len(ttrs) - 1) // 2] / 1000 if ttrs else None)
    assert got["ttr_mean_seconds"] == (sum(ttrs) / (len(ttrs) * 1000) if ttrs else None)


def _spec() -> dict[str, Any]:
    from cxpulse.streams.simulator.truth_funnels import load_funnels as truth_funnels

    return truth_funnels()[0]


def _entered(journey: dict[str, Any]) -> int | None:
    progress = journey["funnels"].get("self_service")
    return None if progress is None else progress["reach_ms"][0]


RAWS, _ = _traffic(3000, seed=4)


@functools.cache
def _baseline() -> dict[tuple[str, str, str], dict[str, Any]]:
    return _latest(_run(RAWS, 3000))


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 2**32), st.integers(50, 1500))
def test_any_arrival_order_and_batching_gives_the_same_store(seed: int, batch: int) -> None:
    rng = random.Random(seed)
    order = RAWS + rng.sample(RAWS, 200)  # and more copies
    rng.shuffle(order)
    assert _latest(_run(order, batch)) == _baseline()


def _saved(out: Collector) -> dict[str, Any]:
    """The states the stage wrote, as a worker restores them."""
    records = [(key, value, n) for n, (topic, key, value, _) in enumerate(out.messages)
               if topic == topics.STATE.name]  # fmt: skip
    return states_from_records(records)


def test_state_round_trips_and_reprocessing_changes_nothing() -> None:
    out = _run(RAWS, 500)
    states = _saved(out)
    again = Collector()
    stage = JourneyStage(again, FUNNELS, restore=lambda p: {}, clock=lambda: NOW_MS)
    for partition in range(4):
        stage.install(partition, {k: s for k, s in states.items()
                                  if partition_for(k, 4) == partition})  # fmt: skip
    chunk = [(raw, Source("cx.portal.v1", 0, i)) for i, raw in enumerate(RAWS)]
    for partition, pieces in route(chunk, 4, NOW_MS).keyed.items():
        for piece in pieces:
            stage.process(partition, encode_batch(piece))
    rows = [m for m in again.messages if m[0] in (topics.STORE_JOURNEYS.name,
                                                  topics.STORE_JOURNEY_FUNNELS.name)]  # fmt: skip
    assert rows == []


def test_old_journeys_are_pruned_whole_and_their_rows_kept() -> None:
    """A journey no acceptable event can reach any more leaves memory, not the store."""
    from datetime import UTC, datetime, timedelta

    import orjson

    def event(event_id: str, at: datetime, event_type: str, data: dict[str, Any]) -> bytes:
        return orjson.dumps({
            "event_id": event_id, "schema_version": 1, "type": event_type,
            "occurred_at": at.isoformat(), "customer_id": "c-1", "session_id": f"s-{event_id}",
            "data": data,
        })  # fmt: skip

    clock = [NOW_MS]
    out = Collector()
    stage = JourneyStage(out, FUNNELS, restore=lambda p: {}, clock=lambda: clock[0])

    def send(raws: list[bytes]) -> None:
        chunk = [(raw, Source("cx.portal.v1", 0, i)) for i, raw in enumerate(raws)]
        for partition, pieces in route(chunk, 1, clock[0]).keyed.items():
            for piece in pieces:
                stage.process(partition, encode_batch(piece))

    now = datetime.fromtimestamp(NOW_MS / 1000, UTC)
    started, viewed = now - timedelta(hours=1), now - timedelta(minutes=59)
    send([event("a1", started, "portal.session_started", {"entry": "x"}),
          event("a2", viewed, "portal.step_viewed", {"step": "diagnose"})])  # fmt: skip
    clock[0] += 45 * 86_400_000  # 45 days later the a-journey is beyond every window
    later = now + timedelta(days=45)
    send([event("b1", later - timedelta(hours=1), "portal.session_started", {"entry": "x"})])
    state = stage.partitions[0]["c-1"]
    assert sorted(state.events) == ["b1"]
    assert [(run.journey.journey_id, len(run.emitted)) for run in state.runs] == [("b1", 2)]
    latest = _latest(out)
    assert {k[2] for k in latest} == {"a1", "b1"}  # a1's rows stay, never tombstoned


def _event(event_id: str, at: int, event_type: str, **fields: Any) -> bytes:
    import orjson

    from cxpulse.streams.simulator.clock import format_ms

    data = fields.pop("data", {})
    return orjson.dumps({"event_id": event_id, "schema_version": 1, "type": event_type,
                         "occurred_at": format_ms(at), "data": data, **fields})  # fmt: skip


def _feed(stage: JourneyStage, raws: list[bytes], now: int, partitions: int = 1) -> None:
    chunk = [(raw, Source("cx.portal.v1", 0, i)) for i, raw in enumerate(raws)]
    for partition, pieces in route(chunk, partitions, now).keyed.items():
        for piece in pieces:
            stage.process(partition, encode_batch(piece))


def test_states_wait_for_persist_after_the_rows() -> None:
    out = Collector()
    stage = JourneyStage(out, FUNNELS, restore=lambda p: {}, clock=lambda: NOW_MS)
    _feed(stage, [_event("p1", NOW_MS - HOUR, "portal.session_started", customer_id="c",
                         session_id="s", data={"entry": "x"})], NOW_MS)  # fmt: skip
    assert any(t == topics.STORE_JOURNEYS.name for t, *_ in out.messages)
    assert not any(t == topics.STATE.name for t, *_ in out.messages)
    stage.persist()
    sent = [parse_record_key(k) for t, k, *_ in out.messages if t == topics.STATE.name]
    assert [(key, kind) for key, kind, _ in sent] == [("c", "j")]


def test_a_contact_start_moved_within_its_hour_keeps_one_row(chdb_store: ChdbStore) -> None:
    out = Collector()
    stage = JourneyStage(out, FUNNELS, restore=lambda p: {}, clock=lambda: NOW_MS)
    t = NOW_MS - 3 * HOUR
    t -= t % HOUR  # the top of an hour: both starts fall in it
    started = {"customer_id": "c", "contact_id": "k1", "data": {"channel": "chat"}}
    _feed(stage, [_event("s2", t + 11 * 60_000, "cc.contact_started", **started)], NOW_MS)
    _feed(stage, [_event("s1", t + 10 * 60_000, "cc.contact_started", **started)], NOW_MS)
    migrate(chdb_store)
    chdb_store.insert("contacts", [v for topic, _, v, _ in out.messages
                                   if topic == topics.STORE_CONTACTS.name])  # fmt: skip
    rows = chdb_store.query(
        "SELECT contact_id, toUnixTimestamp64Milli(started_at) AS s FROM contacts FINAL"
    )
    assert rows == [{"contact_id": "k1", "s": t + 10 * 60_000}]


def test_restored_partitions_close_their_journeys_without_new_events() -> None:
    first = Collector()
    stage = JourneyStage(first, FUNNELS, restore=lambda p: {}, clock=lambda: NOW_MS)
    _feed(stage, [_event("q1", NOW_MS - 60_000, "portal.session_started", customer_id="c",
                         session_id="s", data={"entry": "x"})], NOW_MS)  # fmt: skip
    stage.persist()
    saved = _saved(first)
    later = Collector()
    restarted = JourneyStage(later, FUNNELS, restore=lambda p: dict(saved),
                             clock=lambda: NOW_MS + HOUR)  # fmt: skip
    restarted.install(0, restarted.restore(0))  # what the assignment handler does
    assert restarted.tick() == 1
    [row] = [v for t, _, v, _ in later.messages if t == topics.STORE_JOURNEYS.name]
    assert (row["closed"], row["outcome"]) == (1, "abandoned")


def test_a_second_restore_never_replaces_live_state() -> None:
    stage = JourneyStage(Collector(), FUNNELS, restore=lambda p: {}, clock=lambda: NOW_MS)
    stage.install(0, {})
    _feed(stage, [_event("r1", NOW_MS - 60_000, "portal.session_started", customer_id="c",
                         session_id="s", data={"entry": "x"})], NOW_MS)  # fmt: skip
    stage.install(0, {})  # a racing restore that read the state topic before r1 was persisted
    assert list(stage.partitions[0]) == ["c"]


def test_corrupt_internal_messages_are_dead_lettered_and_the_partition_goes_on() -> None:
    """Garbage on the keyed topic (a batch that is not one, or a record whose event is not an
    event) must not stop the stage: stopping would stall the partition on every restart."""
    import orjson

    from cxpulse.streams.ingest import KeyedRecord

    out = Collector()
    stage = JourneyStage(out, FUNNELS, restore=lambda p: {}, clock=lambda: NOW_MS)
    stage.process(0, b"\x00 not a batch", offset=41)
    bad = KeyedRecord("c", msgspec.Raw(b'{"type": "nonsense"}'), "cx.portal.v1", 0, 7, NOW_MS)
    stage.process(0, msgspec.json.encode([bad]), offset=42)
    _feed(stage, [_event("p1", NOW_MS - HOUR, "portal.session_started", customer_id="c",
                         session_id="s", data={"entry": "x"})], NOW_MS)  # fmt: skip
    letters = [orjson.loads(v) for t, _k, v, _p in out.messages if t == topics.DLQ.name]
    assert [(d["reason"], d["source_topic"], d["source_offset"]) for d in letters] == [
        ("corrupt_internal", topics.KEYED.name, 41),
        ("corrupt_internal", "cx.portal.v1", 7),
    ]
    assert base64.b64decode(letters[0]["original_b64"]) == b"\x00 not a batch"
    assert any(t == topics.STORE_JOURNEYS.name for t, *_ in out.messages)  # p1 went through


def test_a_stage_restricted_to_one_partition_sends_for_that_partition_only() -> None:
    """`only(p)` is how the worker routes a partition's work into that partition's transaction:
    inside it, processing, tick and persist touch partition p alone; the rest is kept."""
    out = Collector()
    stage = JourneyStage(out, FUNNELS, restore=lambda p: {}, clock=lambda: NOW_MS)
    raws = [_event(f"o{n}", NOW_MS - HOUR, "portal.session_started", customer_id=f"c{n}",
                   session_id=f"s{n}", data={"entry": "x"}) for n in range(8)]  # fmt: skip
    _feed(stage, raws, NOW_MS, partitions=2)
    assert set(stage.partitions) == {0, 1}
    dirty = set(stage.dirty)
    out.messages.clear()
    with stage.only(1):
        assert set(stage.partitions) == {1}
        stage.tick()
        stage.persist()
    sent = [(t, k, p) for t, k, _, p in out.messages if t == topics.STATE.name]
    assert sent
    assert {p for *_, p in sent} == {1}
    assert stage.dirty == {(p, k) for p, k in dirty if p == 0}  # partition 0's wait their turn
    assert set(stage.partitions) == {0, 1}
    assert set(stage.due) <= {0, 1}
    stage.forget({0})
    assert not stage.dirty


def _rows(out: Collector, table: str) -> dict[str, dict[str, Any]]:
    """The latest live row of each journey or contact the stage sent to `table`."""
    latest: dict[str, dict[str, Any]] = {}
    for topic, _key, row, _ in out.messages:
        if topics.STORE_TABLES.get(topic) == table:
            ident = row.get("journey_id") or row["contact_id"]
            if ident not in latest or row["version"] > latest[ident]["version"]:
                latest[ident] = row
    return {ident: row for ident, row in latest.items() if not row["is_deleted"]}


@pytest.mark.parametrize("configured", [False, True])
def test_a_configured_gap_and_fcr_window_change_the_figures(configured: bool) -> None:
    """Portal events 20 min then 40 min apart are two journeys with the 30 min gap, one with a
    45 min gap, which closes 45 min after its last event; a resolved contact repeated 3 d later
    is not first-contact resolved within 7 d, but is (and final) with a 2 d FCR window."""
    minute, day = 60_000, 24 * HOUR
    windows = DEFAULT_WINDOWS
    if configured:
        windows = dataclasses.replace(windows, gap_ms=45 * minute, fcr_window_ms=2 * day)
    clock = [NOW_MS]
    out = Collector()
    stage = JourneyStage(out, FUNNELS, restore=lambda p: {}, clock=lambda: clock[0],
                         windows=windows)  # fmt: skip
    portal = {"customer_id": "c", "session_id": "s"}
    contact = {"customer_id": "d", "data": {"channel": "chat"}}
    _feed(stage, [
        _event("p1", NOW_MS - 100 * minute, "portal.session_started", **portal,
               data={"entry": "x"}),
        _event("p2", NOW_MS - 80 * minute, "portal.step_viewed", **portal, data={"step": "a"}),
        _event("p3", NOW_MS - 40 * minute, "portal.step_viewed", **portal, data={"step": "b"}),
        _event("k1", NOW_MS - 5 * day, "cc.contact_started", contact_id="k1", **contact),
        _event("k1e", NOW_MS - 5 * day + 10 * minute, "cc.contact_ended", contact_id="k1",
               customer_id="d", data={"resolved": True, "part_shipped": False}),
        _event("k2", NOW_MS - 2 * day, "cc.contact_started", contact_id="k2", **contact),
    ], NOW_MS)  # fmt: skip
    journeys = {
        ident: (row["last_activity_at"][11:16], row["closed"], row["outcome"])
        for ident, row in _rows(out, "journeys").items()
    }
    contacts = {
        ident: (row["resolved"], row["first_contact_resolved"], row["fcr_final"])
        for ident, row in _rows(out, "contacts").items()
    }
    # NOW_MS is 06:00 UTC, the watermark 2 min before it: p1 04:20, p2 04:40, p3 05:20.
    if configured:
        assert journeys == {"p1": ("05:20", 0, "in_progress")}  # closes at 06:05
        assert contacts == {"k1": (1, 1, 1), "k2": (0, 0, 0)}  # k2's window ends at 06:00
        clock[0] += 7 * minute  # the watermark reaches 06:05: both keys are due
        assert stage.tick() == 2
        assert _rows(out, "journeys")["p1"]["outcome"] == "abandoned"
        assert _rows(out, "contacts")["k2"]["fcr_final"] == 1
    else:
        assert journeys == {"p1": ("04:40", 1, "abandoned"), "p3": ("05:20", 1, "abandoned")}
        assert contacts == {"k1": (1, 0, 0), "k2": (0, 0, 0)}


def test_the_ground_truth_keeps_the_design_windows() -> None:
    """The simulator's ground truth is written against the design's defaults; so is the stage
    unless configured otherwise."""
    from cxpulse.streams.simulator.truth_events import DEFAULT_CONFIG

    fields = [f.name for f in dataclasses.fields(DEFAULT_WINDOWS)]
    assert {name: getattr(DEFAULT_CONFIG, name) for name in fields} == dataclasses.asdict(
        DEFAULT_WINDOWS
    )
