"""What real producers do wrong: duplicates, disorder, late arrivals and malformed messages.

Why a separate stage: the pipeline's promise (design section 4) is that final figures are a
function of the *set* of valid events, whatever the order of arrival, the copies or the garbage in
between. `add_noise` turns a clean, time-ordered event stream into the Kafka messages a sloppy
producer fleet would send, and labels every message with what it is (`kind`) and, for garbage,
which dead-letter reason the validator must give (`expected_reason`), so tests and the validator
can account for every message.

Delays are in *stream* time (the newest event time seen so far), not wall-clock time: a delayed
message is released once the stream has moved past its release time, so the output stays near
event-time order apart from the disorder injected on purpose. Everything is drawn from one
`random.Random(seed)`: the same input, config and seed give the same messages, byte for byte.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from cxpulse.streams import topics
from cxpulse.streams.simulator.clock import DAY_MS, HOUR_MS, MINUTE_MS, format_ms, parse_ms

PORTAL_TOPIC = topics.PORTAL.name
CONTACT_TOPIC = topics.CONTACT.name

#: A duplicate follows its original within this much stream time (producer retry after timeout).
DUPLICATE_MAX_DELAY_MS = 2_000
#: Late events are delayed log-uniformly between this and `late_max_ms`: minutes to hours.
LATE_MIN_MS = 2 * MINUTE_MS
TOO_OLD_MS = 40 * DAY_MS
IN_FUTURE_MS = 2 * HOUR_MS


@dataclass(frozen=True)
class NoiseConfig:
    """Per-event probabilities of each kind of producer misbehaviour (all off by default)."""

    duplicates: float = 0.0
    out_of_order: float = 0.0
    late: float = 0.0
    malformed: float = 0.0
    out_of_order_max_ms: int = 30_000
    late_max_ms: int = 6 * HOUR_MS

    def __post_init__(self) -> None:
        for name in ("duplicates", "out_of_order", "late", "malformed"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be a probability within [0, 1]")
        if self.out_of_order_max_ms < 1 or self.late_max_ms < 1:
            raise ValueError("maximum delays must be >= 1 ms")


@dataclass(frozen=True, slots=True)
class Message:
    """One Kafka message as a producer would send it, labelled for accounting."""

    topic: str
    key: bytes | None
    value: bytes
    kind: str  # "event" (first copy), "duplicate", or "malformed"
    event_id: str | None  # for event/duplicate
    expected_reason: str | None  # for malformed: the DLQ reason the validator must give


def _route(event: Mapping[str, Any]) -> tuple[str, bytes | None]:
    """Topic by event family; key by session / contact (producers key any way they like)."""
    event_type = event.get("type")
    if isinstance(event_type, str) and event_type.startswith("cc."):
        key = event.get("contact_id")
        topic = CONTACT_TOPIC
    else:
        key = event.get("session_id")
        topic = PORTAL_TOPIC
    return topic, key.encode() if isinstance(key, str) else None


def _event_ms(event: Mapping[str, Any], fallback: int) -> int:
    occurred = event.get("occurred_at")
    try:
        return parse_ms(occurred) if isinstance(occurred, str) else fallback
    except ValueError:
        return fallback


def add_noise(
    events: Iterable[Mapping[str, Any]], config: NoiseConfig, seed: int
) -> Iterator[Message]:
    """Messages for `events`: each exactly once as kind "event", plus duplicates and garbage.

    Per event, in this order of draws: late (else out of order) delay, duplicate, malformed.
    A delayed event waits on a heap until stream time reaches its release; a duplicate is
    released up to DUPLICATE_MAX_DELAY_MS after its original (never before it); a malformed
    message is sent right where the event would have been. Remaining delayed messages are
    flushed in release order when the input ends. Memory: only delayed messages are held.
    """
    rng = random.Random(seed)
    delayed: list[tuple[int, int, Message]] = []
    seq = 0
    malformed_n = 0
    now: int | None = None
    for event in events:
        event_ms = _event_ms(event, now if now is not None else 0)
        now = event_ms if now is None or event_ms > now else now
        while delayed and delayed[0][0] <= now:
            yield heapq.heappop(delayed)[2]
        value = orjson.dumps(event if isinstance(event, dict) else dict(event))
        topic, key = _route(event)
        event_id = event.get("event_id")
        event_id = event_id if isinstance(event_id, str) else None
        message = Message(topic, key, value, "event", event_id, None)
        release = now
        if config.late and rng.random() < config.late:
            low = min(LATE_MIN_MS, config.late_max_ms)
            release = now + max(1, int(low * (config.late_max_ms / low) ** rng.random()))
        elif config.out_of_order and rng.random() < config.out_of_order:
            release = now + rng.randint(1, config.out_of_order_max_ms)
        if release > now:
            seq += 1
            heapq.heappush(delayed, (release, seq, message))
        else:
            yield message
        if config.duplicates and rng.random() < config.duplicates:
            seq += 1
            copy = Message(topic, key, value, "duplicate", event_id, None)
            dup_release = release + rng.randint(0, DUPLICATE_MAX_DELAY_MS)
            heapq.heappush(delayed, (dup_release, seq, copy))
        if config.malformed and rng.random() < config.malformed:
            malformed_n += 1
            yield malformed_message(event, event_ms, rng, malformed_n)
    while delayed:
        yield heapq.heappop(delayed)[2]


# -- malformed messages ---------------------------------------------------------------------------


def _fresh_id(rng: random.Random, n: int) -> str:
    """Never collides with a simulator id (24 hex chars) nor with another malformed id."""
    return f"bad-{n:08x}-{rng.getrandbits(32):08x}"


def _doc(event: Mapping[str, Any], rng: random.Random, n: int) -> dict[str, Any]:
    """A deep copy of the event with a fresh event_id."""
    doc: dict[str, Any] = orjson.loads(orjson.dumps(dict(event)))
    doc["event_id"] = _fresh_id(rng, n)
    return doc


def _invalid_json(doc: dict[str, Any], rng: random.Random, event_ms: int) -> bytes:
    whole = orjson.dumps(doc)
    variant = rng.randrange(3)
    if variant == 0:
        return whole[: rng.randint(1, len(whole) - 1)]  # truncated: never a complete object
    if variant == 1:
        return whole.replace(b"{", b"{{", 1)  # a stray brace: UTF-8, but not JSON
    return b""


def _invalid_utf8(doc: dict[str, Any], rng: random.Random, event_ms: int) -> bytes:
    """A producer that cut a multi-byte character in half, or sent Latin-1: one byte that is
    not UTF-8 inside a string (anywhere, unknown fields included, is rejected)."""
    doc["attrs"] = {**doc.get("attrs", {}), "note": "caf@"}
    return orjson.dumps(doc).replace(b"caf@", rng.choice([b"caf\xe9", b"caf\xc3", b"\xff"]))


def _not_an_object(doc: dict[str, Any], rng: random.Random, event_ms: int) -> bytes:
    if rng.random() < 0.5:
        return orjson.dumps([doc])
    return str(rng.randint(-1000, 100_000)).encode()


def _missing_field(doc: dict[str, Any], rng: random.Random, event_ms: int) -> bytes:
    id_field = "contact_id" if str(doc.get("type", "")).startswith("cc.") else "session_id"
    del doc[rng.choice(("event_id", "type", "occurred_at", id_field))]
    return orjson.dumps(doc)


def _wrong_type(doc: dict[str, Any], rng: random.Random, event_ms: int) -> bytes:
    data = doc.get("data")
    options: list[Callable[[], None]] = [
        lambda: doc.__setitem__("event_id", rng.randint(1, 10**9)),
        lambda: doc.__setitem__("attrs", list((doc.get("attrs") or {}).values())),
        lambda: doc.__setitem__("attrs", {**(doc.get("attrs") or {}), "product_line": 7}),
        lambda: doc.__setitem__("occurred_at", parse_ms(doc["occurred_at"])),
    ]
    if isinstance(data, dict):
        if "eligible" in data:
            options.append(lambda: data.__setitem__("eligible", str(data["eligible"]).lower()))
        if "resolved" in data:
            options.append(lambda: data.__setitem__("resolved", "yes"))
        if "step" in data:
            options.append(lambda: data.__setitem__("step", 3))
        if data.get("csat") is not None:
            options.append(lambda: data.__setitem__("csat", str(data["csat"])))
    rng.choice(options)()
    return orjson.dumps(doc)


def _invalid_value(doc: dict[str, Any], rng: random.Random, event_ms: int) -> bytes:
    data = doc.get("data")
    options: list[Callable[[], None]] = [
        lambda: doc.__setitem__("event_id", doc["event_id"].ljust(rng.randint(65, 200), "x")),
        lambda: doc.__setitem__("occurred_at", format_ms(parse_ms(doc["occurred_at"]))[:-6]),
    ]
    if isinstance(data, dict):
        if "via" in data:
            options.append(lambda: data.__setitem__("via", "fax"))
        if "csat" in data:
            options.append(lambda: data.__setitem__("csat", 9))
        if "nps" in data:
            options.append(lambda: data.__setitem__("nps", 11))
        if "channel" in data:
            options.append(lambda: data.__setitem__("channel", "pigeon"))
        if doc.get("type") == "cc.ivr_completed":
            options.append(lambda: data.__setitem__("outcome", "hold_music"))
        if doc.get("type") == "portal.step_completed":
            options.append(lambda: data.__setitem__("outcome", "maybe"))
    rng.choice(options)()
    return orjson.dumps(doc)


def _unknown_type(doc: dict[str, Any], rng: random.Random, event_ms: int) -> bytes:
    """A portal-looking event of a type nobody defined (cc events are reshaped to portal)."""
    if "session_id" not in doc:
        doc.pop("contact_id", None)
        doc["session_id"] = f"s-bad-{rng.getrandbits(32):08x}"
    doc["type"] = "portal.teleported"
    doc["data"] = {"destination": "mars"}
    return orjson.dumps(doc)


def _unsupported_version(doc: dict[str, Any], rng: random.Random, event_ms: int) -> bytes:
    doc["schema_version"] = 2
    return orjson.dumps(doc)


def _too_old(doc: dict[str, Any], rng: random.Random, event_ms: int) -> bytes:
    doc["occurred_at"] = format_ms(event_ms - TOO_OLD_MS)
    return orjson.dumps(doc)


def _in_future(doc: dict[str, Any], rng: random.Random, event_ms: int) -> bytes:
    doc["occurred_at"] = format_ms(event_ms + IN_FUTURE_MS)
    return orjson.dumps(doc)


#: One fault per dead-letter reason of the contract (schemas.validate.REASONS) but too_large and
#: too_deep, which only bulk (64 KiB, deep nesting) would earn. Drawn uniformly, in this order.
_BUILDERS: dict[str, Callable[[dict[str, Any], random.Random, int], bytes]] = {
    "invalid_json": _invalid_json,
    "not_an_object": _not_an_object,
    "missing_field": _missing_field,
    "wrong_type": _wrong_type,
    "invalid_value": _invalid_value,
    "unknown_type": _unknown_type,
    "unsupported_version": _unsupported_version,
    "too_old": _too_old,
    "in_future": _in_future,
    "invalid_utf8": _invalid_utf8,
}
#: The reason codes malformed messages carry.
MALFORMED_REASONS: tuple[str, ...] = tuple(_BUILDERS)


def malformed_message(
    event: Mapping[str, Any], event_ms: int, rng: random.Random, n: int = 0
) -> Message:
    """One malformed message derived from `event`, with one fault and the reason it earns.

    Everything but the fault stays valid (fresh event_id, real fields), so the validator's reason
    is unambiguous whatever order it checks things in. `event_ms` is the event's real time, from
    which too_old / in_future stamps are shifted.
    """
    reason = rng.choice(MALFORMED_REASONS)
    doc = _doc(event, rng, n)
    topic, key = _route(event)
    if reason == "unknown_type":
        topic = PORTAL_TOPIC
    return Message(topic, key, _BUILDERS[reason](doc, rng, event_ms), "malformed", None, reason)
