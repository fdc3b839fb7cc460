"""The journey stage's incremental state against the reference: for any set of events, in any
order and grouping, with copies, conflicting copies, late events, restores and a clock that moves
on, the rows in the store equal those `build_journeys` and `build_contacts` compute from the
final event set at the final watermark, with the design's windows or others. Keys left idle are
frozen and thawed on the way (`frozen.py`), at thresholds from never to at once."""

from __future__ import annotations

import dataclasses
import random
import time
from typing import Any

import orjson
from hypothesis import given, note, settings
from hypothesis import strategies as st

from cxpulse.schemas.deadletters import Source
from cxpulse.schemas.events import ContactStarted, Event
from cxpulse.schemas.validate import by_time, decode_trusted, journey_key
from cxpulse.streams import metrics, topics
from cxpulse.streams.contacts import build_contacts, default_shifts
from cxpulse.streams.funnels import load_funnels
from cxpulse.streams.ingest import encode_batch, partition_for, route
from cxpulse.streams.journeys import build_journeys
from cxpulse.streams.keyed import KeyLimits, precedence
from cxpulse.streams.snapshots import contact_row, journey_rows
from cxpulse.streams.stage import ALLOWED_LATENESS_MS, JourneyStage
from cxpulse.streams.state_store import states_from_records
from cxpulse.streams.windows import DEFAULT_WINDOWS, Windows
from tests.support.rows import rows_of

FUNNELS = load_funnels()
SHIFTS = default_shifts()
NOW_MS = 1_795_500_000_000
MINUTE = 60_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR
PARTITIONS = 2
STEPS = ["identify_device", "diagnose", "troubleshoot", "eligibility", "order"]


def _iso(ms: int) -> str:
    seconds, millis = divmod(ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


# Times cluster in a few days, in visits of minutes: runs form, touch across the gap, merge and
# split; contacts fall within and beyond the follow-up windows. Besides the design's windows,
# others whose edges fall among those times. Waits here are rarely short, so the service-level
# and short-abandon thresholds are pinned by hand in test_contact_kpis.py instead.
times = st.builds(
    lambda day, hour, minute: NOW_MS - 10 * 86_400_000 + day * 86_400_000 + hour * 3_600_000
    + minute * MINUTE,
    st.integers(0, 8), st.sampled_from([0, 1, 5, 30]), st.integers(0, 95),
)  # fmt: skip
windows = st.one_of(
    st.just(DEFAULT_WINDOWS),
    st.builds(
        Windows,
        gap_ms=st.sampled_from([10 * MINUTE, 30 * MINUTE, 2 * HOUR]),
        escalation_window_ms=st.sampled_from([HOUR, 72 * HOUR]),
        short_abandon_ms=st.sampled_from([5_000, 10 * MINUTE]),
        service_level_ms=st.sampled_from([20_000, HOUR]),
        ivr_followup_ms=st.sampled_from([2 * HOUR, 24 * HOUR, 3 * DAY]),
        fcr_window_ms=st.sampled_from([DAY, 7 * DAY]),
    ),
)
sessions = st.sampled_from(["s1", "s2", "s3"])
customers = st.sampled_from(["c1", "c1", "c2", None])
steps = st.sampled_from(STEPS)
portal = st.one_of(
    st.tuples(st.just("portal.session_started"), st.just({"entry": "search"})),
    st.tuples(st.just("portal.step_viewed"), st.builds(lambda s: {"step": s}, steps)),
    st.tuples(
        st.just("portal.step_completed"),
        st.builds(lambda s, o: {"step": s, "outcome": o}, steps, st.sampled_from(["pass", "fail"])),
    ),
    st.tuples(
        st.just("portal.eligibility_checked"), st.builds(lambda e: {"eligible": e}, st.booleans())
    ),
    st.tuples(st.just("portal.order_placed"), st.just({"order_id": "o1", "sku": "sku-1"})),
    st.tuples(st.just("portal.help_requested"), st.just({"via": "chat"})),
)
contact = st.one_of(
    st.tuples(
        st.just("cc.contact_started"),
        st.builds(
            lambda link: {"channel": "voice", "linked_session_id": link},
            st.sampled_from([None, "s1", "s2"]),
        ),
    ),
    st.tuples(
        st.just("cc.ivr_completed"),
        st.builds(lambda o: {"outcome": o}, st.sampled_from(["contained", "to_queue"])),
    ),
    st.tuples(st.just("cc.queued"), st.just({"queue": "q1"})),
    st.tuples(st.just("cc.answered"), st.just({"agent_id": "a1", "team": "t1"})),
    st.tuples(st.just("cc.abandoned"), st.just({})),
    st.tuples(
        st.just("cc.contact_ended"),
        st.builds(lambda r: {"resolved": r, "part_shipped": False}, st.booleans()),
    ),
    st.tuples(st.just("cc.survey_submitted"), st.builds(lambda c: {"csat": c}, st.integers(1, 5))),
)


@st.composite
def event_doc(draw: st.DrawFn, index: int) -> dict[str, Any]:
    # A small id pool: some events are copies, some conflicting copies (same id, other content).
    doc: dict[str, Any] = {
        "event_id": f"e{draw(st.integers(0, index))}",
        "schema_version": 1,
        "occurred_at": _iso(draw(times)),
        "attrs": {"device": draw(st.sampled_from(["mobile", "desktop"]))},
    }
    if draw(st.integers(0, 2)):
        kind, data = draw(portal)
        doc.update(type=kind, session_id=draw(sessions), data=data)
        customer = draw(customers)
        if customer:
            doc["customer_id"] = customer
    else:
        kind, data = draw(contact)
        doc.update(type=kind, contact_id=draw(st.sampled_from(["k1", "k2", "k3", "k4"])),
                   customer_id=draw(st.sampled_from(["c1", "c2"])), data=data)  # fmt: skip
    return doc


@st.composite
def traffic(draw: st.DrawFn) -> list[bytes]:
    count = draw(st.integers(1, 60))
    docs = [draw(event_doc(i)) for i in range(count)]
    raws = [orjson.dumps(doc) for doc in docs]
    copies = draw(st.lists(st.integers(0, count - 1), max_size=count // 3))
    return raws + [raws[i] for i in copies]


class Store:
    """What the store keeps of the rows sent: the highest version per identity."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, ...], dict[str, Any]] = {}
        self.records: list[tuple[bytes | None, bytes | None, int]] = []

    def send(self, topic: str, key: Any, value: Any, partition: int | None = None) -> None:
        if topic == topics.STATE.name:
            self.records.append((key, value, len(self.records)))
            return
        table = topics.STORE_TABLES.get(topic)
        if table not in ("journeys", "journey_funnels", "contacts"):
            return
        for row in rows_of(value):
            identity = _identity(table, row)
            kept = self.rows.get(identity)
            if kept is None or row["version"] > kept["version"]:
                self.rows[identity] = row

    def live(self) -> dict[tuple[str, ...], dict[str, Any]]:
        return {
            identity: {c: v for c, v in row.items() if c not in ("version", "is_deleted")}
            for identity, row in self.rows.items()
            if not row["is_deleted"]
        }


def _identity(table: str, row: dict[str, Any]) -> tuple[str, ...]:
    """The table's sort key (sinks/migrations): what ReplacingMergeTree replaces by."""
    if table == "contacts":
        return table, row["started_at"][:13], row["journey_key"], row["contact_id"]
    if table == "journey_funnels":
        return table, row["funnel"], row["start_at"][:13], row["journey_key"], row["journey_id"]
    return table, row["journey_key"], row["journey_id"]


def _reference(
    raws: list[bytes], watermark: int, windows: Windows
) -> dict[tuple[str, ...], dict[str, Any]]:
    """Rows from the final event set, by the pure functions over whole keys. Copies are told
    apart per key: the copies of an id sent under different keys (a producer reusing ids) are
    different events to the stage."""
    keys: dict[str, dict[str, Event]] = {}
    links: dict[str, dict[str, Event]] = {}
    for raw in raws:
        event = decode_trusted(raw)
        targets = [(keys, journey_key(event))]
        if isinstance(event, ContactStarted) and event.data.linked_session_id:
            linked = f"s:{event.data.linked_session_id}"
            if linked != targets[0][1]:
                targets.append((links, linked))
        for events, key in targets:
            kept = events.setdefault(key, {})
            other = kept.get(event.event_id)
            if other is None or precedence(event) < precedence(other):
                kept[event.event_id] = event
    rows = {}
    for key in keys.keys() | links.keys():
        timeline = by_time(keys.get(key, {}).values())
        contacts = build_contacts(timeline, windows)
        journeys = build_journeys(
            key, timeline, links.get(key, {}).values(), FUNNELS, contacts, windows
        )
        out = [r for j in journeys for r in journey_rows(j, FUNNELS, watermark, windows.gap_ms)]
        out += [contact_row(key, c, watermark, SHIFTS, windows) for c in contacts]
        for row in out:
            rows[_identity(row.table, row.columns)] = orjson.loads(orjson.dumps(row.columns))
    return rows


@settings(max_examples=300, deadline=None)
@given(
    traffic(), st.randoms(use_true_random=False), st.integers(1, 6),
    st.sampled_from([0, 1, 5 * MINUTE]), windows,
)  # fmt: skip
def test_incremental_rows_equal_a_full_rebuild(
    raws: list[bytes], rng: random.Random, groups: int, freeze_after_ms: int, windows: Windows
) -> None:
    rng.shuffle(raws)
    note(repr(raws))
    store = Store()
    clock = [NOW_MS]
    limits = KeyLimits(freeze_after_ms=freeze_after_ms)
    stage = JourneyStage(store, FUNNELS, restore=lambda p: {}, clock=lambda: clock[0],
                         limits=limits, windows=windows)  # fmt: skip
    cuts = sorted(rng.sample(range(len(raws) + 1), min(groups, len(raws) + 1)))
    pieces = [raws[a:b] for a, b in zip([0, *cuts], [*cuts, len(raws)], strict=True)]
    seen: list[bytes] = []
    for number, piece in enumerate(pieces):
        seen += piece
        routed = route([(raw, Source("cx.in", 0, i)) for i, raw in enumerate(piece)],
                       PARTITIONS, NOW_MS)  # fmt: skip
        messages = [(p, encode_batch(batch), 0) for p, batches in routed.keyed.items()
                    for batch in batches]  # fmt: skip
        assert not routed.dead_letters
        stage.process_all(messages)
        stage.persist()
        clock[0] += rng.choice([0, MINUTE, 45 * MINUTE, 2 * 86_400_000])
        stage.tick()
        stage.persist()
        # Every row is up to date once the tick has refreshed what the clock made due.
        assert store.live() == _reference(seen, stage.watermark_ms(), windows)
        if number % 2 and rng.random() < 0.5:  # restart from what was persisted
            restored = states_from_records(store.records)
            by_partition: dict[int, dict[str, Any]] = {}
            for key, state in restored.items():
                by_partition.setdefault(partition_for(key, PARTITIONS), {})[key] = state
            max_event = stage.max_event_ms
            stage = JourneyStage(
                store, FUNNELS, restore=lambda p, got=by_partition: got.get(p, {}),
                clock=lambda: clock[0], limits=limits, windows=windows,
            )  # fmt: skip
            stage.max_event_ms = max_event
            for partition in range(PARTITIONS):
                stage.install(partition, stage.restore(partition))
    clock[0] += 8 * 86_400_000  # every follow-up window ends and every journey closes
    stage.tick()
    stage.persist()
    watermark = stage.watermark_ms()
    assert watermark == max(stage.max_event_ms, clock[0]) - ALLOWED_LATENESS_MS
    assert store.live() == _reference(raws, watermark, windows)


def test_the_state_written_per_event_does_not_grow_with_the_history() -> None:
    """A key with weeks of journeys: one more event writes its own journey's record only."""
    store = Store()
    stage = JourneyStage(store, FUNNELS, restore=lambda p: {}, clock=lambda: NOW_MS)
    start = NOW_MS - 20 * 86_400_000
    docs = []
    for visit in range(200):
        at = start + visit * 2 * 3_600_000
        for step in range(3):
            docs.append({"event_id": f"v{visit}-{step}", "schema_version": 1,
                         "type": "portal.step_viewed", "occurred_at": _iso(at + step * MINUTE),
                         "session_id": f"s{visit}", "customer_id": "c1",
                         "data": {"step": STEPS[step]}})  # fmt: skip
    routed = route([(orjson.dumps(d), Source("cx.in", 0, i)) for i, d in enumerate(docs)], 1,
                   NOW_MS)  # fmt: skip
    for batch in routed.keyed[0]:
        stage.process(0, encode_batch(batch))
    stage.persist()
    before = len(store.records)
    late = dict(docs[-1], event_id="late", occurred_at=_iso(at + 3 * MINUTE))
    routed = route([(orjson.dumps(late), Source("cx.in", 0, 0))], 1, NOW_MS)
    stage.process(0, encode_batch(routed.keyed[0][0]))
    stage.persist()
    written = store.records[before:]
    assert len(written) == 1
    assert len(written[0][1] or b"") < 5_000  # the last journey's 4 events, not 601


def test_idle_keys_are_frozen_and_thaw_exactly() -> None:
    """Keys idle past the threshold are held compressed; an event or a due time thaws one, and
    its rows go on exactly as if it had stayed live."""
    store = Store()
    clock = [NOW_MS]
    stage = JourneyStage(store, FUNNELS, restore=lambda p: {}, clock=lambda: clock[0],
                         limits=KeyLimits(freeze_after_ms=5 * MINUTE))  # fmt: skip
    docs = [{"event_id": f"e{n}-{k}", "schema_version": 1, "type": "portal.step_viewed",
             "occurred_at": _iso(NOW_MS - 10 * MINUTE + k * MINUTE), "session_id": f"s{n}",
             "customer_id": f"c{n}", "data": {"step": STEPS[k]}}
            for n in range(20) for k in range(2)]  # fmt: skip
    raws = [orjson.dumps(d) for d in docs]

    def send(batch: list[bytes]) -> None:
        routed = route([(raw, Source("cx.in", 0, i)) for i, raw in enumerate(batch)],
                       PARTITIONS, clock[0])  # fmt: skip
        stage.process_all([(p, encode_batch(b), 0) for p, bs in routed.keyed.items() for b in bs])
        stage.persist()

    send(raws)
    clock[0] += 4 * MINUTE
    stage.tick()
    assert stage.frozen_count() == 0  # not idle long enough
    clock[0] += 2 * MINUTE
    stage.tick()
    stage.persist()
    assert stage.frozen_count() == stage.key_count() == 20
    assert stage.open_journeys() == 20  # frozen journeys are still open
    thaws = metrics.THAWS._value.get()
    late = dict(docs[0], event_id="late", occurred_at=_iso(NOW_MS - 7 * MINUTE),
                data={"step": STEPS[4]})  # fmt: skip
    raws.append(orjson.dumps(late))
    send(raws[-1:])
    assert metrics.THAWS._value.get() == thaws + 1
    assert stage.frozen_count() == 19
    assert store.live() == _reference(raws, stage.watermark_ms(), DEFAULT_WINDOWS)
    clock[0] += 40 * MINUTE  # every journey closes: due times thaw the frozen keys
    stage.tick()
    stage.persist()
    assert metrics.THAWS._value.get() == thaws + 20
    assert stage.open_journeys() == 0
    assert store.live() == _reference(raws, stage.watermark_ms(), DEFAULT_WINDOWS)


def test_the_reference_follows_the_windows_to_their_edges() -> None:
    """The pure functions the stage is held to, with a 10 min gap, a 1 h escalation window
    and a 2 d FCR window: a gap of exactly 10 min keeps the run, 1 ms more splits it; a contact
    exactly 1 h after the run's last event escalates it, one exactly 2 d after a resolved
    contact makes that one a repeat (not within the 1 h IVR follow-up)."""
    windows = dataclasses.replace(DEFAULT_WINDOWS, gap_ms=10 * MINUTE, ivr_followup_ms=HOUR,
                                  escalation_window_ms=HOUR, fcr_window_ms=2 * DAY)  # fmt: skip
    t = NOW_MS - 3 * DAY
    second = t + 20 * MINUTE + 1
    docs = [
        ("p1", t, "portal.session_started", {"entry": "search"}),
        ("p2", t + 10 * MINUTE, "portal.step_viewed", {"step": "diagnose"}),
        ("p3", second, "portal.step_viewed", {"step": "diagnose"}),
        ("k1", second + HOUR - 2 * DAY, "cc.contact_started", {"channel": "chat"}),
        ("k1e", second + HOUR - 2 * DAY + MINUTE, "cc.contact_ended",
         {"resolved": True, "part_shipped": False}),
        ("k2", second + HOUR, "cc.contact_started", {"channel": "chat"}),
    ]  # fmt: skip
    events = []
    for event_id, at, kind, data in docs:
        where = {"session_id": "s1"} if kind.startswith("portal.") else {"contact_id": event_id[:2]}
        events.append(decode_trusted(orjson.dumps({
            "event_id": event_id, "schema_version": 1, "type": kind, "occurred_at": _iso(at),
            "customer_id": "c1", "data": data, **where,
        })))  # fmt: skip
    timeline = by_time(events)

    def figures(w: Windows) -> tuple[list[tuple[int, int, int | None]], list[tuple[bool, bool]]]:
        contacts = build_contacts(timeline, w)
        journeys = build_journeys("c1", timeline, [], FUNNELS, contacts, w)
        return (
            [(j.start_ms, j.last_activity_ms, j.escalated_at_ms) for j in journeys],
            [(c.repeat_in_ivr_followup, c.repeat_in_fcr_window) for c in contacts],
        )

    assert figures(windows) == (
        [(t, t + 10 * MINUTE, None), (second, second, second + HOUR)],
        [(False, True), (False, False)],
    )
    assert figures(DEFAULT_WINDOWS) == (
        [(t, second, second + HOUR)],
        [(False, True), (False, False)],
    )
    assert figures(dataclasses.replace(windows, fcr_window_ms=2 * DAY - 1))[1] == [
        (False, False), (False, False),
    ]  # fmt: skip
