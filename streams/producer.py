"""A thin confluent-kafka producer for rows and events leaving the worker.

confluent-kafka sends a small message in about 1.4 µs, far cheaper than faust's send path, so
agents hand their output here and `flush()` before their input is acknowledged: offsets are
committed only after what they produced is in Kafka.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import orjson
from confluent_kafka import KafkaError, KafkaException, Producer

from cxpulse.streams import metrics, topics

log = logging.getLogger(__name__)


def producer_config(bootstrap: str) -> dict[str, object]:
    return {
        "bootstrap.servers": bootstrap,
        # Idempotence: retries never duplicate or reorder within a partition.
        "enable.idempotence": True,
        # Never give up on a message: a flush blocks (and the input stays unacknowledged) until
        # Kafka has it, instead of dropping it after the default five minutes.
        "message.timeout.ms": 0,
        "linger.ms": 5,
        # Only failures call back into Python: a callback per delivered message costs about a
        # microsecond of the worker's one core, and success needs no handling (flush waits).
        "delivery.report.only.error": True,
        # A group of input can produce a few hundred thousand messages before its flush; a
        # full local queue would stall sends in 50 ms polls (BufferError below).
        "queue.buffering.max.messages": 1_000_000,
        "compression.type": "lz4",
        "batch.size": 1_000_000,
        "logger": logging.getLogger("librdkafka"),
    }


def _produce(
    producer: Producer,
    topic: str,
    key: str | bytes | None,
    payload: bytes | None,
    partition: int | None,
) -> None:
    """Hand one message to librdkafka, waiting while its local queue is full."""
    while True:
        try:
            if partition is None:
                producer.produce(topic, payload, key)
            else:
                producer.produce(topic, payload, key, partition=partition)
            return
        except BufferError:  # let librdkafka send some, then retry
            producer.poll(0.05)


class JsonProducer:
    """Produces JSON (dicts, or bytes already encoded; None is a tombstone).

    `flush()` returns only when everything sent is acknowledged.
    """

    def __init__(self, bootstrap: str) -> None:
        self._errors: list[KafkaError] = []
        # One delivery callback for the producer rather than one per message: half the cost of
        # a produce() call (0.8 vs 1.1-1.6 µs measured).
        self._producer = Producer({**producer_config(bootstrap), "on_delivery": self._on_delivery})

    def send(
        self, topic: str, key: str | bytes | None, value: object, partition: int | None = None
    ) -> None:
        payload = value if isinstance(value, bytes) or value is None else orjson.dumps(value)
        _produce(self._producer, topic, key, payload, partition)

    def _on_delivery(self, err: KafkaError | None, _msg: object) -> None:
        if err is not None:
            self._errors.append(err)

    def flush(self, log_every_s: float = 10.0) -> None:
        started = time.monotonic()
        while self._producer.flush(1.0) > 0:
            waited = time.monotonic() - started
            if waited >= log_every_s:
                log.warning("still waiting for Kafka to acknowledge output (%.0f s)", waited)
                started = time.monotonic()
        if self._errors:
            errors, self._errors = self._errors, []
            # With an infinite message timeout only fatal errors get here (e.g. a deleted topic).
            raise RuntimeError(f"Kafka rejected {len(errors)} messages, first: {errors[0]}")

    def flush_within(self, timeout_s: float) -> int:
        """Flush for at most `timeout_s` (shutdown with a broker that may be gone); returns how
        many messages are still unacknowledged."""
        return int(self._producer.flush(timeout_s))

    def partitions(self, topic: str) -> int:
        """Partition count of an existing topic (for explicit co-partitioning)."""
        metadata = self._producer.list_topics(topic, timeout=10).topics[topic]
        if metadata.error is not None:
            raise RuntimeError(f"topic {topic} is not available: {metadata.error}")
        return len(metadata.partitions)


class DeadLetterProducer:
    """Dead letters of a stage that sends them outside a transaction (the store writer, as
    `sinks.writer.DeadLetters`): to the dead-letter topic, counted per stage and reason."""

    def __init__(self, bootstrap: str, stage: str) -> None:
        self.stage = stage
        self._producer = JsonProducer(bootstrap)

    def send(self, reason: str, letter: bytes) -> None:
        self._producer.send(topics.DLQ.name, None, letter)
        metrics.DEAD_LETTERS.labels(self.stage, reason).inc()

    def flush(self) -> None:
        self._producer.flush()


#: Kafka's default limit on a message (broker `message.max.bytes`, 1 MiB) less room for the record
#: batch framing: output larger than this is dead-lettered rather than refused by the broker.
DEFAULT_MAX_MESSAGE_BYTES = 1_000_000
TRANSACTION_TIMEOUT_MS = 60_000
ROW_TOO_LARGE = "row_too_large"
STATE_TOO_LARGE = "state_too_large"


class TransactionFailed(RuntimeError):
    """The transaction cannot commit; when `fenced`, another producer took the transactional id
    over (the partition has a new owner) and this one must never write for it again."""

    def __init__(self, message: str, *, fenced: bool) -> None:
        super().__init__(message)
        self.fenced = fenced


_FENCED = {
    KafkaError._FENCED,
    KafkaError.PRODUCER_FENCED,
    KafkaError.INVALID_PRODUCER_EPOCH,
    KafkaError.INVALID_PRODUCER_ID_MAPPING,
}


def _failure(what: str, error: KafkaError) -> TransactionFailed:
    fenced = error.code() in _FENCED or (error.fatal() and "fenced" in error.str().lower())
    return TransactionFailed(f"{what}: {error}", fenced=fenced)


class TransactionalProducer:
    """The output of one keyed partition: everything its work produces (rows, dead letters,
    freshness, states) in one Kafka transaction per group of input, under a transactional id
    that belongs to the partition rather than to the process.

    `init()` fences every earlier producer of the same id (a worker that lost the partition but
    does not know it yet) and aborts its open transaction, so a read_committed reader never sees
    a write of the old owner made after the new owner restored. A message larger than
    `max_message_bytes` is dead-lettered (with its key) in the same transaction instead: a
    broker refusal would make the whole transaction abort and the work fail again on every
    retry.
    """

    def __init__(
        self,
        bootstrap: str,
        transactional_id: str,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        dead_letters: Callable[[str, str, str, bytes], bytes] | None = None,
    ) -> None:
        self.transactional_id = transactional_id
        self.max_message_bytes = max_message_bytes
        self._dead_letters = dead_letters
        self._open = False
        self._fatal: KafkaError | None = None
        config = {
            **producer_config(bootstrap),
            "transactional.id": transactional_id,
            "transaction.timeout.ms": TRANSACTION_TIMEOUT_MS,
            "message.timeout.ms": TRANSACTION_TIMEOUT_MS,
            # librdkafka refuses larger messages itself (MSG_SIZE_TOO_LARGE at produce()).
            "message.max.bytes": max_message_bytes + 64 * 1024,
            "batch.size": min(1_000_000, max_message_bytes),
            "error_cb": self._on_error,
        }
        self._producer = Producer(config)

    def init(self, timeout_s: float = 60.0) -> None:
        """Take the transactional id over (blocks: run it off the event loop)."""
        try:
            self._producer.init_transactions(timeout_s)
        except KafkaException as exc:
            raise self._failed(f"init_transactions({self.transactional_id})", exc.args[0]) from exc

    def send(
        self, topic: str, key: str | bytes | None, value: object, partition: int | None = None
    ) -> None:
        if not self._open:
            try:
                self._producer.begin_transaction()
            except KafkaException as exc:
                raise self._failed(
                    f"begin_transaction({self.transactional_id})", exc.args[0]
                ) from exc
            self._open = True
        payload = value if isinstance(value, bytes) or value is None else orjson.dumps(value)
        size = len(payload or b"") + len(key.encode() if isinstance(key, str) else key or b"")
        if size > self.max_message_bytes:
            self._too_large(topic, key, payload or b"", size)
            return
        try:
            _produce(self._producer, topic, key, payload, partition)
        except KafkaException as exc:
            error = exc.args[0]
            if error.code() != KafkaError.MSG_SIZE_TOO_LARGE:
                raise self._failed(f"produce to {topic}", error) from exc
            self._too_large(topic, key, payload or b"", size)

    def _too_large(self, topic: str, key: str | bytes | None, payload: bytes, size: int) -> None:
        if self._dead_letters is None:
            raise TransactionFailed(f"{topic}: a {size}-byte message is too large", fenced=False)
        text = key.decode("utf-8", "replace") if isinstance(key, bytes) else key
        reason = STATE_TOO_LARGE if topic == topics.STATE.name else ROW_TOO_LARGE
        detail = (
            f"{topic} message of key {text!r} is {size} bytes, more than the "
            f"{self.max_message_bytes} bytes Kafka accepts by default"
        )
        log.warning("dead-lettering output: %s", detail)
        letter = self._dead_letters(reason, detail, topic, payload)
        self._producer.produce(topics.DLQ.name, letter, key)

    def _on_error(self, err: KafkaError) -> None:
        if err.fatal():
            self._fatal = err

    def _failed(self, what: str, error: KafkaError) -> TransactionFailed:
        """A call failed: name the cause. A call that fails as `_FATAL` carries no reason;
        the producer's fatal error (served to `_on_error`) says whether it was fenced."""
        if error.code() == KafkaError._FATAL:
            self._producer.poll(0)
            error = self._fatal or error
        return _failure(what, error)

    def commit(self, retry_for_s: float = TRANSACTION_TIMEOUT_MS / 1000) -> bool:
        """Commit what was sent since the last commit (blocks); False when nothing was sent.

        Raises TransactionFailed when the transaction cannot commit: its writes are then never
        visible to read_committed readers, and the input that produced them must be redone.
        """
        if not self._open:
            return False
        deadline = time.monotonic() + retry_for_s
        while True:
            try:
                self._producer.commit_transaction(10.0)
                break
            except KafkaException as exc:
                error: KafkaError = exc.args[0]
                if error.retriable() and time.monotonic() < deadline:
                    log.warning("committing %s again: %s", self.transactional_id, error)
                    continue
                if error.txn_requires_abort():
                    self._abort()
                raise self._failed(f"commit_transaction({self.transactional_id})", error) from exc
        self._open = False  # a failed delivery fails the commit above
        return True

    def _abort(self) -> None:
        try:
            self._producer.abort_transaction(10.0)
        except KafkaException as exc:
            log.warning("aborting %s failed: %s", self.transactional_id, exc)
        self._open = False

    def close(self) -> None:
        """Give the id up: abort what is open (nothing is, between groups) and disconnect."""
        if self._open:
            self._abort()
        self._producer.flush(5.0)
