"""What the broker knows about a run: end offsets, committed offsets and group assignments of
cxpulse's consumer groups, and a producer thread that sends traffic while a test breaks things.

Counters of a worker die with it, so after a kill the broker's committed offsets are the one
record of progress that survives: a run is finished when every group has committed the end of
its topics.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from cxpulse.streams import topics
from cxpulse.streams.app import APP_ID
from cxpulse.streams.simulator.noise import Message
from cxpulse.streams.simulator.output import send_to_kafka
from tests.support.rows import row_count

INGEST_GROUP = "cxpulse-ingest"  # streams/ingest_stage.py
JOURNEYS_GROUP = APP_ID  # faust's group id is the app id
WRITER_GROUP = "cxpulse-store-writer"  # sinks/writer.py
STORE_TOPICS = tuple(topics.STORE_TABLES)
# Each consumer group of the pipeline and the topics it must have committed to the end.
PIPELINE: tuple[tuple[str, tuple[str, ...]], ...] = (
    (INGEST_GROUP, tuple(t.name for t in topics.INPUT_TOPICS)),
    (JOURNEYS_GROUP, (topics.KEYED.name,)),
    (WRITER_GROUP, STORE_TOPICS),
)

Offsets = dict[tuple[str, int], int]


def end_offsets(bootstrap: str, names: Iterable[str], partitions: int = 4) -> Offsets:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "offsets-probe"})
    try:
        return {
            (name, p): consumer.get_watermark_offsets(TopicPartition(name, p), timeout=10)[1]
            for name in names
            for p in range(partitions)
        }
    finally:
        consumer.close()


def produced(bootstrap: str, topic: str) -> int:
    """Messages written to `topic` so far (the sum of its end offsets). On a topic the journey
    stage writes in transactions this also counts one commit marker per transaction and
    partition (and aborted messages): a measure of progress, not an exact count. Not of rows on a
    store topic, whose messages may hold many: see `RowsProduced`."""
    return sum(end_offsets(bootstrap, [topic]).values())


class RowsProduced:
    """Rows written to a store topic so far (aborted writes included, as `produced`), read on
    from where the last call stopped. A store message holds one row or, from the row batcher,
    several (one per line), so its offsets do not count rows. Close it (or use `with`)."""

    def __init__(self, bootstrap: str, topic: str, partitions: int = 4) -> None:
        self.rows = 0
        self._consumer = Consumer(
            {"bootstrap.servers": bootstrap, "group.id": "rows-produced-probe",
             "enable.auto.commit": False, "isolation.level": "read_uncommitted"}
        )  # fmt: skip
        self._consumer.assign(
            [TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)]
        )

    def __call__(self) -> int:
        """The rows so far (what has reached this reader: a lower bound, soon exact)."""
        for message in self._consumer.consume(10_000, timeout=0.05):
            if message.error() is None:
                self.rows += row_count(message.value())
        return self.rows

    def close(self) -> None:
        self._consumer.close()

    def __enter__(self) -> RowsProduced:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def committed_offsets(
    bootstrap: str, group: str, names: Iterable[str], partitions: int = 4, timeout_s: float = 30
) -> Offsets:
    """The group's committed offsets (-1001, Kafka's "none", where it never committed).

    Asked through a consumer of the group that never joins it (no subscribe, no assign): an
    admin client dropped after a timed-out group request (the offsets topic still loading on a
    fresh broker) crashed the interpreter with SIGSEGV (confluent-kafka 2.16)."""
    wanted = [TopicPartition(name, p) for name in names for p in range(partitions)]
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False}
    )
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            try:
                found = consumer.committed(wanted, timeout=5)
            except KafkaException:  # the coordinator is still loading: ask again
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
                continue
            return {(tp.topic, tp.partition): tp.offset for tp in found}
    finally:
        consumer.close()


def behind(bootstrap: str, group: str, names: Sequence[str]) -> Offsets:
    """Partitions whose end the group has not committed yet, and by how many offsets.

    Transaction markers (and aborted messages) occupy offsets but are never delivered, so a
    reader that commits last message + 1 (the store writer) stays short of the end by them: a
    partition counts as behind only while a committed message lies between its committed
    offset and its end (or a transaction there is still open)."""
    ends = end_offsets(bootstrap, names)
    done = committed_offsets(bootstrap, group, names)
    short = {tp: (at, end) for tp, end in ends.items() if (at := max(done.get(tp, 0), 0)) < end}
    unread = _with_messages(bootstrap, short)
    return {tp: end - at for tp, (at, end) in short.items() if tp in unread}


def _with_messages(
    bootstrap: str, ranges: dict[tuple[str, int], tuple[int, int]], timeout_s: float = 5.0
) -> set[tuple[str, int]]:
    """The partitions with a committed message in [start, end), as a read_committed reader sees
    them (one whose range cannot be read to its end in time counts as having one)."""
    if not ranges:
        return set()
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "drained-probe",
         "enable.auto.commit": False, "isolation.level": "read_committed"}
    )  # fmt: skip
    found: set[tuple[str, int]] = set()
    try:
        consumer.assign([TopicPartition(t, p, start) for (t, p), (start, _) in ranges.items()])
        pending = set(ranges)
        deadline = time.monotonic() + timeout_s
        while pending and time.monotonic() < deadline:
            for message in consumer.consume(1000, timeout=0.2):
                tp = (message.topic(), message.partition())
                if message.error() is None and tp in pending and message.offset() < ranges[tp][1]:
                    found.add(tp)
                    pending.discard(tp)
            positions = consumer.position([TopicPartition(t, p) for t, p in pending])
            pending -= {(tp.topic, tp.partition) for tp in positions
                        if tp.offset >= ranges[(tp.topic, tp.partition)][1]}  # fmt: skip
        return found | pending
    finally:
        consumer.close()


def wait_drained(
    bootstrap: str,
    timeout_s: float,
    check: Callable[[], None] = lambda: None,
    groups: Sequence[tuple[str, Sequence[str]]] = PIPELINE,
) -> None:
    """Until every group has committed the end of its topics twice in a row, 1 s apart (so
    output still on its way, such as a closing tick's rows, is included). `check` runs every
    round and raises when a process the test relies on has died."""
    deadline = time.monotonic() + timeout_s
    clean = 0
    lagging: dict[str, Offsets] = {}
    while time.monotonic() < deadline:
        check()
        try:
            lagging = {g: lag for g, names in groups if (lag := behind(bootstrap, g, names))}
        except Exception as exc:  # the broker may be coming back: not an answer yet
            lagging = {"(broker)": {(str(exc), -1): -1}}
        clean = 0 if lagging else clean + 1
        if clean >= 2:
            return
        time.sleep(1.0)
    raise AssertionError(f"the pipeline did not drain within {timeout_s:.0f} s: {lagging}")


def assignments(bootstrap: str, group: str) -> dict[str, set[tuple[str, int]]]:
    """Member id -> the partitions the group coordinator assigned it (a stable group only)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    description = admin.describe_consumer_groups([group], request_timeout=10)[group].result()
    return {
        member.member_id: {(tp.topic, tp.partition) for tp in member.assignment.topic_partitions}
        for member in description.members
    }


class TrafficThread(threading.Thread):
    """Sends `messages` over about `seconds` (in 50 steps), so faults hit a run in flight."""

    def __init__(self, messages: Sequence[Message], bootstrap: str, seconds: float) -> None:
        super().__init__(name="traffic", daemon=True)
        self.messages = messages
        self.bootstrap = bootstrap
        self.pause_s = seconds / 50
        self.sent = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        step = max(1, len(self.messages) // 50)
        try:
            for n, _ in enumerate(send_to_kafka(self.messages, self.bootstrap), 1):
                self.sent = n
                if n % step == 0:
                    time.sleep(self.pause_s)
        except BaseException as exc:  # reported by finish()
            self.error = exc

    def finish(self, timeout_s: float = 120) -> None:
        """Wait until everything is sent and acknowledged (the producer never gives up)."""
        self.join(timeout_s)
        assert not self.is_alive(), f"traffic still sending after {timeout_s} s"
        assert self.error is None, self.error
        assert self.sent == len(self.messages)


def produce_raw(
    bootstrap: str, topic: str, partition: int, values: Sequence[bytes | None]
) -> list[int]:
    """Write `values` as they are to one partition (None: a message without a value); returns
    their offsets."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    offsets: dict[int, int] = {}

    def delivered(err: object, msg: object, n: int) -> None:
        assert err is None, err
        offsets[n] = msg.offset()  # type: ignore[attr-defined]

    for n, value in enumerate(values):
        producer.produce(
            topic, value, partition=partition, on_delivery=lambda e, m, n=n: delivered(e, m, n)
        )
        producer.flush(30)
    assert len(offsets) == len(values)
    return [offsets[n] for n in range(len(values))]
