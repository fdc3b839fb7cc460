"""The simulator's clean model and its noise: determinism, contract, realism levers, accounting.

`classify` below is a small, independent reading of the event contract (design section 3). It
checks that every clean event is valid and that every malformed message fails for exactly the
reason the noise stage claims.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import datetime
from typing import Any

import orjson
import pytest

from cxpulse.schemas.events import EVENT_TYPE_NAMES
from cxpulse.schemas.validate import REASONS
from cxpulse.streams.simulator.clock import DAY_MS, MINUTE_MS, format_ms, parse_ms
from cxpulse.streams.simulator.config import Incident, SimConfig
from cxpulse.streams.simulator.customers import SEGMENT_MS
from cxpulse.streams.simulator.noise import (
    CONTACT_TOPIC,
    MALFORMED_REASONS,
    PORTAL_TOPIC,
    Message,
    NoiseConfig,
    add_noise,
)
from cxpulse.streams.simulator.stream import Simulator, generate

START = parse_ms("2026-11-23T08:00:00.000+00:00")

# -- an independent reading of the contract -------------------------------------------------------


def _is_str(v: Any) -> bool:
    return isinstance(v, str)


def _is_bool(v: Any) -> bool:
    return isinstance(v, bool)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _any(v: Any) -> bool:
    return True


def _opt(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: v is None or check(v)


def _one_of(*allowed: Any) -> Callable[[Any], bool]:
    return lambda v: v in allowed


def _between(low: int, high: int) -> Callable[[Any], bool]:
    return lambda v: v is None or low <= v <= high


STEPS = ("identify_device", "diagnose", "troubleshoot", "eligibility")
STEPS += ("part_selection", "shipping", "confirm")

# type -> field -> (JSON type check, value check)
DATA: dict[str, dict[str, tuple[Callable[[Any], bool], Callable[[Any], bool]]]] = {
    "portal.session_started": {"entry": (_is_str, bool)},
    "portal.step_viewed": {"step": (_is_str, _one_of(*STEPS))},
    "portal.step_completed": {
        "step": (_is_str, _one_of(*STEPS)),
        "outcome": (_opt(_is_str), _one_of("pass", "fail", None)),
    },
    "portal.eligibility_checked": {"eligible": (_is_bool, _any), "reason": (_is_str, bool)},
    "portal.order_placed": {"order_id": (_is_str, bool), "sku": (_is_str, bool)},
    "portal.help_requested": {"via": (_is_str, _one_of("chat", "call", "callback", "email"))},
    "portal.session_ended": {},
    "cc.contact_started": {
        "channel": (_is_str, _one_of("voice", "chat", "email")),
        "reason": (_is_str, bool),
        "linked_session_id": (_opt(_is_str), lambda v: v is None or bool(v)),
    },
    "cc.ivr_completed": {
        "outcome": (_is_str, _one_of("contained", "to_queue", "abandoned", "zero_out"))
    },
    "cc.queued": {"queue": (_is_str, bool)},
    "cc.answered": {"agent_id": (_is_str, bool), "team": (_is_str, bool)},
    "cc.transferred": {"to_queue": (_is_str, bool)},
    "cc.abandoned": {},
    "cc.contact_ended": {
        "resolved": (_is_bool, _any),
        "wrap_code": (_is_str, bool),
        "part_shipped": (_is_bool, _any),
    },
    "cc.survey_submitted": {
        "csat": (_opt(_is_int), _between(1, 5)),
        "nps": (_opt(_is_int), _between(0, 10)),
        "ces": (_opt(_is_int), _between(1, 7)),
    },
}
assert set(DATA) == set(EVENT_TYPE_NAMES)


def classify(value: bytes, now_ms: int) -> str | None:
    """None for a valid event, else the DLQ reason code (one fault per message assumed)."""
    try:
        value.decode()
    except UnicodeDecodeError:
        return "invalid_utf8"
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError:
        return "invalid_json"
    if not isinstance(doc, dict):
        return "not_an_object"
    etype = doc.get("type")
    id_field = "contact_id" if isinstance(etype, str) and etype.startswith("cc.") else "session_id"
    required = ("event_id", "schema_version", "type", "occurred_at", "attrs", "data", id_field)
    if any(name not in doc for name in required) or (
        id_field == "contact_id" and "customer_id" not in doc
    ):
        return "missing_field"
    attrs, data = doc["attrs"], doc["data"]
    if not (
        _is_str(doc["event_id"])
        and _is_int(doc["schema_version"])
        and _is_str(etype)
        and _is_str(doc["occurred_at"])
        and _is_str(doc[id_field])
        and _opt(_is_str)(doc.get("customer_id"))
        and isinstance(attrs, dict)
        and all(_is_str(v) for v in attrs.values())
        and isinstance(data, dict)
    ):
        return "wrong_type"
    if doc["schema_version"] != 1:
        return "unsupported_version"
    if etype not in DATA:
        return "unknown_type"
    if not 1 <= len(doc["event_id"]) <= 64 or not doc[id_field]:
        return "invalid_value"
    if id_field == "contact_id" and not doc.get("customer_id"):
        return "invalid_value"
    try:
        occurred = datetime.fromisoformat(doc["occurred_at"])
    except ValueError:
        return "invalid_value"
    if occurred.tzinfo is None:
        return "invalid_value"
    spec = DATA[etype]
    if set(data) != set(spec):
        return "missing_field"
    if not all(type_ok(data[name]) for name, (type_ok, _) in spec.items()):
        return "wrong_type"
    if not all(value_ok(data[name]) for name, (_, value_ok) in spec.items()):
        return "invalid_value"
    occurred_ms = parse_ms(doc["occurred_at"])
    if occurred_ms < now_ms - 30 * DAY_MS:
        return "too_old"
    if occurred_ms > now_ms + 5 * MINUTE_MS:
        return "in_future"
    return None


# -- fixtures -------------------------------------------------------------------------------------


def take(config: SimConfig, n: int) -> list[dict[str, Any]]:
    return list(itertools.islice(generate(config), n))


@pytest.fixture(scope="module")
def sample() -> list[dict[str, Any]]:
    """A few simulated hours at a low rate, so follow-up contacts and surveys show up."""
    return take(SimConfig(seed=7, start_ms=START, rate=5.0), 60_000)


# -- model ----------------------------------------------------------------------------------------


def test_same_seed_same_bytes_other_seed_other_bytes() -> None:
    def stream(seed: int) -> bytes:
        events = take(SimConfig(seed=seed, start_ms=START), 15_000)
        return b"\n".join(orjson.dumps(e) for e in events)

    first = stream(1)
    assert stream(1) == first
    assert stream(2) != first


def test_time_order_and_contract(sample: list[dict[str, Any]]) -> None:
    times = [parse_ms(e["occurred_at"]) for e in sample]
    assert times == sorted(times)
    assert times[0] >= START
    assert all(
        re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", e["occurred_at"])
        for e in sample
    )
    for event, at in zip(sample, times, strict=True):
        assert classify(orjson.dumps(event), at) is None, event
        portal = event["type"].startswith("portal.")
        assert set(event) == {
            "event_id",
            "schema_version",
            "type",
            "occurred_at",
            "customer_id",
            "attrs",
            "data",
            "session_id" if portal else "contact_id",
        }
        assert re.fullmatch(r"[0-9a-f]{24}", event["event_id"])
        assert set(event["attrs"]) == {
            "product_line",
            "device",
            "locale",
            "region",
            "tier",
            "entry",
        }
    assert len({e["event_id"] for e in sample}) == len(sample)
    assert set(Counter(e["type"] for e in sample)) == set(EVENT_TYPE_NAMES)


def test_sessions_and_customers_are_consistent(sample: list[dict[str, Any]]) -> None:
    by_session: dict[str, list[dict[str, Any]]] = defaultdict(list)
    by_contact: dict[str, list[dict[str, Any]]] = defaultdict(list)
    attrs_of_customer: dict[str, dict[str, str]] = {}
    for event in sample:
        if event["type"].startswith("portal."):
            by_session[event["session_id"]].append(event)
        else:
            by_contact[event["contact_id"]].append(event)
        if event["customer_id"] is not None:
            known = attrs_of_customer.setdefault(event["customer_id"], event["attrs"])
            assert known == event["attrs"]
    anonymous = 0
    for events in by_session.values():
        assert events[0]["type"] == "portal.session_started"
        assert events[0]["data"]["entry"] == events[0]["attrs"]["entry"]
        assert len({e["customer_id"] for e in events}) == 1
        anonymous += events[0]["customer_id"] is None
        assert all(e["attrs"] == events[0]["attrs"] for e in events)
        times = [parse_ms(e["occurred_at"]) for e in events]
        assert all(a < b for a, b in itertools.pairwise(times))  # no ties within a session
    assert 0.10 < anonymous / len(by_session) < 0.20
    for events in by_contact.values():
        if events[0]["type"] == "cc.survey_submitted":
            continue  # the contact itself started before the sample
        assert events[0]["type"] == "cc.contact_started"
        assert len({e["customer_id"] for e in events}) == 1
        kinds = [e["type"] for e in events]
        if "cc.answered" in kinds or "cc.abandoned" in kinds:
            assert "cc.queued" in kinds
            assert kinds.index("cc.queued") < min(
                kinds.index(k) for k in ("cc.answered", "cc.abandoned") if k in kinds
            )


def test_contact_center_realism(sample: list[dict[str, Any]]) -> None:
    queued: dict[str, int] = {}
    answered_waits: list[int] = []
    abandoned_waits: list[int] = []
    transfers: Counter[str] = Counter()
    channel_of: dict[str, str] = {}
    ivr_contacts: set[str] = set()
    sessions = {e["session_id"]: e["customer_id"] for e in sample if "session_id" in e}
    linked_anonymous = 0
    for event in sample:
        at, kid = parse_ms(event["occurred_at"]), event.get("contact_id")
        if event["type"] == "cc.contact_started":
            channel_of[kid] = event["data"]["channel"]
            linked = event["data"]["linked_session_id"]
            if linked in sessions and sessions[linked] is None:
                linked_anonymous += 1
        elif event["type"] == "cc.ivr_completed":
            ivr_contacts.add(kid)
        elif event["type"] == "cc.queued":
            queued[kid] = at
        elif event["type"] == "cc.answered" and kid in queued:
            answered_waits.append(at - queued.pop(kid))
        elif event["type"] == "cc.abandoned" and kid in queued:
            abandoned_waits.append(at - queued.pop(kid))
        elif event["type"] == "cc.transferred":
            transfers[kid] += 1
    assert ivr_contacts <= {k for k, c in channel_of.items() if c == "voice"}
    within_sl = sum(w <= 20_000 for w in answered_waits) / len(answered_waits)
    assert 0.4 < within_sl < 0.9
    assert any(w < 5_000 for w in abandoned_waits)  # short abandons
    assert any(w > 60_000 for w in abandoned_waits)
    assert 0.02 < len(abandoned_waits) / (len(answered_waits) + len(abandoned_waits)) < 0.2
    assert max(transfers.values()) == 2
    assert linked_anonymous > 0  # chats from anonymous sessions can still be linked


def test_calibration_is_roughly_right(sample: list[dict[str, Any]]) -> None:
    """Design section 1: ~12 % resolved in self-service; few part shipments ordered online."""
    types = Counter(e["type"] for e in sample)
    sessions = types["portal.session_started"]
    resolved = sum(
        1
        for e in sample
        if e["type"] == "portal.eligibility_checked" and e["data"]["reason"] == "issue_resolved"
    )
    shipped = sum(
        1 for e in sample if e["type"] == "cc.contact_ended" and e["data"]["part_shipped"]
    )
    assert 0.07 < (resolved + types["portal.order_placed"]) / sessions < 0.18
    assert types["portal.order_placed"] / (types["portal.order_placed"] + shipped) < 0.08


def test_incident_raises_dropoff_at_its_step_for_its_segment() -> None:
    def drop_rates(config: SimConfig) -> dict[str, float]:
        viewed: dict[str, str] = {}
        done: set[str] = set()
        for e in take(config, 80_000):
            if e["type"] == "portal.step_viewed" and e["data"]["step"] == "troubleshoot":
                viewed[e["session_id"]] = e["attrs"]["product_line"]
            elif e["type"] == "portal.step_completed" and e["data"]["step"] == "troubleshoot":
                done.add(e["session_id"])
        rates = {}
        for line in ("printers", "laptops"):
            seen = [s for s, pl in viewed.items() if pl == line]
            assert len(seen) > 800
            rates[line] = sum(s not in done for s in seen) / len(seen)
        return rates

    incident = Incident("troubleshoot", {"product_line": "printers"}, START, None, 0.3)
    base = drop_rates(SimConfig(seed=3, start_ms=START))
    hit = drop_rates(SimConfig(seed=3, start_ms=START, incidents=(incident,)))
    assert hit["printers"] - base["printers"] > 0.2
    assert abs(hit["laptops"] - base["laptops"]) < 0.06


def test_incident_window_and_validation() -> None:
    late = Incident("shipping", {}, START + 1000, START + 2000)
    assert not late.active(START + 999, {})
    assert late.active(START + 1000, {"device": "mobile"})
    assert not late.active(START + 2000, {})
    assert not Incident("shipping", {"tier": "business"}).active(START, {"tier": "consumer"})
    with pytest.raises(ValueError, match="unknown step"):
        Incident("teleport", {}, START)


def test_rate_and_bounded_memory() -> None:
    """Memory holds in-flight work only: it scales with the rate, not with the stream length."""
    sim = Simulator(SimConfig(seed=5, start_ms=START, rate=50.0))
    first = last = None
    sizes = []
    for n, event in enumerate(sim, start=1):
        if first is None:
            first = event
        if n % 50_000 == 0:
            sizes.append(sim.pending_events)
        if n == 250_000:
            last = event
            break
    assert first is not None
    assert last is not None
    span_s = (parse_ms(last["occurred_at"]) - parse_ms(first["occurred_at"])) / 1000
    assert 45 < 250_000 / span_s < 55  # no start-up ramp: follow-ups are compensated for
    # Journeys/contacts are built in segments of SEGMENT_MS: ~ rate x SEGMENT_MS events wait.
    assert sim.max_pending_events < 50 * SEGMENT_MS / 1000 * 1.5
    assert max(sizes[2:]) < 1.3 * min(sizes[2:])  # flat, not growing with the stream

    slow = Simulator(SimConfig(seed=5, start_ms=START, rate=1.0))
    scheduled = []
    for n, _ in enumerate(slow, start=1):
        if n % 25_000 == 0:
            scheduled.append(slow.scheduled_starts)
        if n == 100_000:
            break
    # 100,000 events at 1/s span > 27 h: pending work stays at a handful of sessions/contacts.
    assert slow.max_pending_events < 500
    assert slow.max_scheduled_starts < 10_000


def test_format_and_parse_round_trip() -> None:
    for ms in (0, START, START + 250, START + DAY_MS - 1):
        assert parse_ms(format_ms(ms)) == ms
    assert format_ms(parse_ms("2026-11-23T10:00:00.250+01:00")) == "2026-11-23T09:00:00.250+00:00"


# -- noise ----------------------------------------------------------------------------------------

NOISY = NoiseConfig(duplicates=0.05, out_of_order=0.05, late=0.02, malformed=0.05)


@pytest.fixture(scope="module")
def noisy(sample: list[dict[str, Any]]) -> list[Message]:
    return list(add_noise(sample[:30_000], NOISY, seed=11))


def test_noise_accounting(sample: list[dict[str, Any]], noisy: list[Message]) -> None:
    events = sample[:30_000]
    kinds = Counter(m.kind for m in noisy)
    firsts = [m for m in noisy if m.kind == "event"]
    assert len(firsts) == len(events)
    assert sorted(m.event_id or "" for m in firsts) == sorted(e["event_id"] for e in events)
    value_of = {m.event_id: m.value for m in firsts}
    assert all(value_of[e["event_id"]] == orjson.dumps(e) for e in events)
    duplicates = [m for m in noisy if m.kind == "duplicate"]
    assert 0.03 * len(events) < len(duplicates) < 0.07 * len(events)
    assert all(m.value == value_of[m.event_id] for m in duplicates)
    position = {id(m): i for i, m in enumerate(noisy)}
    first_at = {m.event_id: position[id(m)] for m in firsts}
    assert all(position[id(m)] > first_at[m.event_id] for m in duplicates)
    assert 0.03 * len(events) < kinds["malformed"] < 0.07 * len(events)
    for m in noisy:
        expected_topic = CONTACT_TOPIC if m.kind != "malformed" and b'"cc.' in m.value else None
        if expected_topic:
            assert m.topic == expected_topic
        assert m.topic in (PORTAL_TOPIC, CONTACT_TOPIC)


def test_malformed_messages_earn_their_reason(noisy: list[Message]) -> None:
    now = START
    reasons: Counter[str] = Counter()
    real_ids: set[str] = set()
    bad_ids: list[str] = []
    for m in noisy:
        if m.kind == "malformed":
            assert m.event_id is None
            assert m.expected_reason in MALFORMED_REASONS
            assert classify(m.value, now) == m.expected_reason, (m.expected_reason, m.value)
            reasons[m.expected_reason] += 1
            try:
                doc = orjson.loads(m.value)
            except orjson.JSONDecodeError:
                continue
            if isinstance(doc, dict) and isinstance(doc.get("event_id"), str):
                bad_ids.append(doc["event_id"])
            if m.expected_reason == "unknown_type":
                assert m.topic == PORTAL_TOPIC
                assert doc["type"] == "portal.teleported"
        else:
            assert classify(m.value, now) is None
            doc = orjson.loads(m.value)
            now = max(now, parse_ms(doc["occurred_at"]))
            real_ids.add(doc["event_id"])
    assert set(reasons) == set(MALFORMED_REASONS)
    # Every reason code of the contract but the two that only bulk earns (64 KiB, deep nesting).
    assert set(MALFORMED_REASONS) == set(REASONS) - {"too_large", "too_deep"}
    assert len(set(bad_ids)) == len(bad_ids)
    assert not real_ids & set(bad_ids)


def test_noise_disorder_is_bounded(noisy: list[Message]) -> None:
    newest = 0
    lags = []
    for m in noisy:
        if m.kind == "event":
            at = parse_ms(orjson.loads(m.value)["occurred_at"])
            lags.append(max(0, newest - at))
            newest = max(newest, at)
    assert max(lags) <= NOISY.late_max_ms + NOISY.out_of_order_max_ms
    assert sum(lag > 2 * MINUTE_MS for lag in lags) > 0.01 * len(lags)  # late ones
    assert sum(1_000 < lag <= 30_000 for lag in lags) > 0.02 * len(lags)  # out of order
    assert sum(lag == 0 for lag in lags) > 0.85 * len(lags)  # mostly in order


def test_noise_is_deterministic_and_off_by_default(sample: list[dict[str, Any]]) -> None:
    events = sample[:5_000]
    assert list(add_noise(events, NOISY, seed=1)) == list(add_noise(events, NOISY, seed=1))
    assert list(add_noise(events, NOISY, seed=1)) != list(add_noise(events, NOISY, seed=2))
    clean = list(add_noise(events, NoiseConfig(), seed=1))
    assert [m.value for m in clean] == [orjson.dumps(e) for e in events]
    assert {m.kind for m in clean} == {"event"}
    keys = {m.key for m in clean if m.topic == PORTAL_TOPIC}
    assert keys <= {e["session_id"].encode() for e in events if "session_id" in e}
    with pytest.raises(ValueError, match="probability"):
        NoiseConfig(late=1.5)
