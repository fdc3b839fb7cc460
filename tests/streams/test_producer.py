"""The worker's producer reports only failed deliveries, and a failure must still surface."""

from __future__ import annotations

import pytest

from cxpulse.streams import topics
from cxpulse.streams.producer import JsonProducer


def test_a_message_kafka_refuses_makes_flush_raise(bootstrap: str) -> None:
    topics.ensure_topics(bootstrap, 4)
    producer = JsonProducer(bootstrap)
    producer.send(topics.STATE.name, "key", {"ok": True}, 0)
    producer.flush()  # delivered: no report, no error
    producer.send(topics.STATE.name, None, {"no": "key"}, 0)  # a compacted topic needs keys
    with pytest.raises(RuntimeError, match=r"Kafka rejected 1 messages.*INVALID_RECORD"):
        producer.flush()
    producer.flush()  # the error was reported once
