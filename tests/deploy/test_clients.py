"""Both Kafka clients cxpulse uses work against the pinned broker, compressed batches included.

faust consumes through aiokafka; producers, the store writer and tools use confluent-kafka.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic


def _topic(bootstrap: str) -> str:
    name = f"test.clients.{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(name, num_partitions=2, replication_factor=1)])[name].result()
    return name


async def _aiokafka_read(bootstrap: str, topic: str, count: int) -> list[bytes]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    try:
        seen: list[bytes] = []
        async with asyncio.timeout(30):
            while len(seen) < count:
                batches = await consumer.getmany(timeout_ms=500)
                seen.extend(m.value for msgs in batches.values() for m in msgs)
        return seen
    finally:
        await consumer.stop()


@pytest.mark.parametrize("codec", ["none", "gzip", "lz4", "zstd", "snappy"])
def test_confluent_produces_aiokafka_consumes(bootstrap: str, codec: str) -> None:
    topic = _topic(bootstrap)
    producer = Producer({"bootstrap.servers": bootstrap, "compression.type": codec})
    sent = [f"{codec}-{i}".encode() for i in range(200)]
    for value in sent:
        producer.produce(topic, value)
    assert producer.flush(30) == 0
    assert sorted(asyncio.run(_aiokafka_read(bootstrap, topic, len(sent)))) == sorted(sent)


def test_aiokafka_produces_confluent_consumes(bootstrap: str) -> None:
    topic = _topic(bootstrap)
    sent = [f"aio-{i}".encode() for i in range(100)]

    async def produce() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, compression_type="lz4")
        await producer.start()
        try:
            for value in sent:
                await producer.send(topic, value)
            await producer.flush()
        finally:
            await producer.stop()

    asyncio.run(produce())
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": topic, "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([topic])
    seen: list[bytes] = []
    for _ in range(60):
        seen.extend(m.value() for m in consumer.consume(100, timeout=0.5) if m.error() is None)
        if len(seen) >= len(sent):
            break
    consumer.close()
    assert sorted(seen) == sorted(sent)
