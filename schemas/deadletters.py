"""The dead-letter contract (design section 3, `cx.dlq.v1`): why a message was refused, its
original bytes and where it came from. Every stage that refuses input (ingest, the journey
stage, the store writer) writes this one envelope."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson

from cxpulse.schemas.validate import Rejection

# Dead letters carry at most this much of the original (base64 grows it by a third).
MAX_DEAD_LETTER_ORIGINAL = 256 * 1024


@dataclass(frozen=True, slots=True)
class Source:
    """Where a message came from, carried into rows and dead letters for traceability."""

    topic: str
    partition: int
    offset: int


def dead_letter(rejection: Rejection, raw: bytes, source: Source, received_ms: int) -> bytes:
    """The DLQ message: reason, detail, the original bytes (base64) and where they came from.

    An original too large to carry is cut to MAX_DEAD_LETTER_ORIGINAL bytes; its size and SHA-256
    say what it was, and the source offset finds it in the input topic while that retains it.
    """
    kept = raw[:MAX_DEAD_LETTER_ORIGINAL]
    return orjson.dumps(
        {
            "reason": rejection.reason,
            "detail": rejection.detail,
            "source_topic": source.topic,
            "source_partition": source.partition,
            "source_offset": source.offset,
            "received_at": datetime.fromtimestamp(received_ms / 1000, UTC).isoformat(),
            "original_b64": base64.b64encode(kept).decode(),
            "original_size": len(raw),
            "original_sha256": hashlib.sha256(raw).hexdigest(),
            "original_truncated": len(kept) < len(raw),
        }
    )
