"""Where simulated traffic goes: Kafka or a JSON-lines file, paced or as fast as possible.

A JSON-lines file holds one message per line as `{"topic", "key", "value"}` (`value_b64`
instead of `value` for bytes that are not UTF-8), so malformed traffic survives the round trip;
`cxpulse replay` also accepts plain event objects, one per line, routed by their type.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import orjson

from cxpulse.schemas.validate import Rejection, event_time_ms, validate
from cxpulse.streams import topics
from cxpulse.streams.producer import JsonProducer
from cxpulse.streams.simulator.noise import Message


def encode_line(message: Message) -> bytes:
    key = None if message.key is None else message.key.decode(errors="backslashreplace")
    doc: dict[str, Any] = {"topic": message.topic, "key": key}
    try:
        doc["value"] = message.value.decode()
    except UnicodeDecodeError:
        doc["value_b64"] = base64.b64encode(message.value).decode()
    return orjson.dumps(doc)


def decode_line(line: bytes) -> Message:
    doc = orjson.loads(line)
    if not isinstance(doc, dict):
        raise ValueError("expected a JSON object")
    if "topic" in doc and ("value" in doc or "value_b64" in doc):
        value = base64.b64decode(doc["value_b64"]) if "value_b64" in doc else doc["value"].encode()
        key = doc.get("key")
        return Message(doc["topic"], key.encode() if key else None, value, "event", None, None)
    # A plain event: route by its type, key by its session or contact.
    event_type = str(doc.get("type", ""))
    topic = topics.CONTACT.name if event_type.startswith("cc.") else topics.PORTAL.name
    key = doc.get("contact_id") or doc.get("session_id")
    value = line.strip()
    return Message(topic, str(key).encode() if key else None, value, "event", None, None)


def read_jsonl(path: Path) -> Iterator[Message]:
    with path.open("rb") as handle:
        for number, line in enumerate(handle, 1):
            if line.strip():
                try:
                    yield decode_line(line)
                except (KeyError, TypeError, AttributeError, ValueError) as exc:
                    raise ValueError(f"{path}:{number}: not a message or an event: {exc}") from exc


def write_jsonl(messages: Iterable[Message], handle: IO[bytes]) -> Iterator[Message]:
    for message in messages:
        handle.write(encode_line(message) + b"\n")
        yield message


def paced(messages: Iterable[Message], speed: float = 1.0) -> Iterator[Message]:
    """Release each message when the wall clock reaches its event time (scaled by `speed`).

    The first message with a valid event time sets the origin; messages without one (malformed)
    and those behind the origin go at once. speed=2 sends an hour of traffic in 30 minutes.
    """
    origin: tuple[int, float] | None = None
    for message in messages:
        event = validate(message.value, time.time_ns() // 1_000_000)
        if not isinstance(event, Rejection):
            occurred = event_time_ms(event)
            if origin is None:
                origin = (occurred, time.monotonic())
            delay = origin[1] + (occurred - origin[0]) / 1000 / speed - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        yield message


def send_to_kafka(messages: Iterable[Message], bootstrap: str) -> Iterator[Message]:
    """Produce each message; yields it once handed to the producer (flushes at the end)."""
    producer = JsonProducer(bootstrap)
    try:
        for message in messages:
            producer.send(message.topic, message.key, message.value)
            yield message
    finally:
        producer.flush()
