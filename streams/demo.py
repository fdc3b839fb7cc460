"""A trivial producer loop for `cxpulse up`: a steady trickle of portal events.

Just enough traffic to see data flow end to end; the realistic simulator of the event-contract
issue replaces it.
"""

from __future__ import annotations

import itertools
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from cxpulse.streams import topics
from cxpulse.streams.producer import JsonProducer

_FLOW = (
    ("portal.session_started", {"entry": "support_home"}),
    ("portal.step_viewed", {"step": "identify_device"}),
    ("portal.step_completed", {"step": "identify_device", "outcome": None}),
    ("portal.session_ended", {}),
)


def demo_events() -> Iterator[dict[str, Any]]:
    for n in itertools.count():
        session_id = f"demo-{n}"
        for event_type, data in _FLOW:
            yield {
                "event_id": uuid.uuid4().hex,
                "schema_version": 1,
                "type": event_type,
                "occurred_at": datetime.now(UTC).isoformat(),
                "customer_id": None,
                "session_id": session_id,
                "attrs": {"product_line": "printers", "locale": "en-US"},
                "data": data,
            }


def run_demo_producer(bootstrap: str, rate_per_s: float, stop: threading.Event) -> None:
    producer = JsonProducer(bootstrap)
    for event in demo_events():
        if stop.wait(1 / rate_per_s):
            break
        producer.send(topics.PORTAL.name, event["session_id"], event)
        producer.flush()
    producer.flush()
