"""Times as the store and the API write them: the lowest layer, shared by every package."""

from __future__ import annotations

import time
from datetime import UTC, datetime


def iso_time(epoch_ms: int) -> str:
    """Epoch ms as the RFC 3339 text the API and notifications show."""
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).isoformat()


_SECOND_TEXT: dict[int, str] = {}  # epoch second -> its text; rows cluster in time
_SECOND_TEXT_MAX = 100_000


def ch_time(epoch_ms: int) -> str:
    """Epoch milliseconds as DateTime64(3, 'UTC') text: exact and unambiguous on both backends.

    (A bare number is ambiguous: ClickHouse reads short ones such as "0.001" as dates.) The
    worker formats several times per event, so each second's text is formatted once and kept.
    """
    seconds, millis = divmod(epoch_ms, 1000)
    text = _SECOND_TEXT.get(seconds)
    if text is None:
        if len(_SECOND_TEXT) >= _SECOND_TEXT_MAX:
            _SECOND_TEXT.clear()
        text = _SECOND_TEXT[seconds] = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds))
    return f"{text}.{millis:03d}"


def now_ms() -> int:
    """The wall clock in epoch milliseconds (the default clock wherever a test passes its own)."""
    return time.time_ns() // 1_000_000
