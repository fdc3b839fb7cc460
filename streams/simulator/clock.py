"""Simulated time: units in epoch milliseconds and the RFC 3339 text every event carries.

Formatting and parsing are hand-rolled (cached minute prefixes, string tables) because datetime
formatting per event would be a large share of generation time, and the noise stage and the
tests parse every event.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import lru_cache

SECOND_MS = 1_000
MINUTE_MS = 60 * SECOND_MS
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@lru_cache(maxsize=8192)
def _minute_text(minute: int) -> str:
    """'YYYY-MM-DDTHH:MM:' of an epoch minute; cached since journeys revisit the same minutes."""
    return (_EPOCH + timedelta(minutes=minute)).strftime("%Y-%m-%dT%H:%M:")


def format_ms(ms: int) -> str:
    """Epoch ms -> RFC 3339 UTC with milliseconds, e.g. 2026-11-23T10:00:00.250+00:00."""
    minute, rem = divmod(ms, MINUTE_MS)
    return _minute_text(minute) + _SECONDS[rem // 1000] + _MILLIS[rem % 1000]


_SECONDS = tuple(f"{s:02d}." for s in range(60))
_MILLIS = tuple(f"{m:03d}+00:00" for m in range(1000))


def _parse_iso_ms(text: str) -> int:
    stamp = datetime.fromisoformat(text)
    if stamp.tzinfo is None:
        raise ValueError(f"no UTC offset in {text!r}")
    return (stamp - _EPOCH) // timedelta(milliseconds=1)


@lru_cache(maxsize=8192)
def _minute_ms(prefix: str) -> int:
    return _parse_iso_ms(f"{prefix}00+00:00")


def parse_ms(text: str) -> int:
    """RFC 3339 with an offset -> epoch ms (exact integer arithmetic, no float rounding).

    Text in our own format (see format_ms) takes a cached fast path; anything else goes through
    datetime.fromisoformat.
    """
    if (
        len(text) == 29
        and text[19] == "."
        and text[16] == ":"
        and text.endswith("+00:00")
        and text[17:19].isdigit()
        and text[20:23].isdigit()
        and text[17] < "6"
    ):
        return _minute_ms(text[:17]) + int(text[17:19]) * 1000 + int(text[20:23])
    return _parse_iso_ms(text)
