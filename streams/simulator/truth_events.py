"""Accepted events as the ground truth reads them, and what all its figures share.

Integer event times (no float can round a boundary), journey keys, dedup by event_id and the one
(time, event_id) order; the configuration of design section 4 and the null-ratio rule.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

#: A journey's outcomes (design section 4), in the order every summary lists them.
OUTCOMES = ("self_served", "escalated", "abandoned", "in_progress")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)
_FRACTION = re.compile(r"[T ]\d\d:\d\d:\d\d\.(\d+)")


@dataclass(frozen=True)
class GroundTruthConfig:
    """The bracketed defaults of design section 4; tests shrink or move them to pin edges."""

    gap_ms: int = 30 * 60_000  # portal journey inactivity gap
    escalation_window_ms: int = 72 * 3_600_000
    ivr_followup_ms: int = 24 * 3_600_000
    fcr_window_ms: int = 7 * 24 * 3_600_000
    short_abandon_ms: int = 5_000
    service_level_ms: int = 20_000
    assisted_cost: float = 7.00
    self_service_cost: float = 0.10


DEFAULT_CONFIG = GroundTruthConfig()


def epoch_ms(occurred_at: str) -> int:
    """RFC 3339 text to epoch milliseconds with integer arithmetic, so no float can round a
    boundary (a gap of exactly 30 min must stay exactly 1,800,000 ms).

    The contract's resolution (docs/decisions.md): read to the microsecond, a 7th fractional
    digit of 5 or more rounding up, then the milliseconds truncated."""
    # RFC 3339 allows a lower-case "t" and "z"; fromisoformat wants them upper case.
    text = occurred_at.upper()
    round_up = False
    fraction = _FRACTION.search(text)
    if fraction is not None and len(fraction.group(1)) > 6:
        round_up = fraction.group(1)[6] >= "5"
        text = text[: fraction.start(1) + 6] + text[fraction.end(1) :]
    stamp = datetime.fromisoformat(text)
    if stamp.tzinfo is None:
        raise ValueError(f"occurred_at has no UTC offset: {occurred_at!r}")
    if round_up:
        stamp += timedelta(microseconds=1)
    return (stamp - _EPOCH) // _ONE_MS


def journey_key(customer_id: str | None, session_id: str | None) -> str:
    """customer_id when known, else the session (decided per event, docs/decisions.md); a
    customer id starting "s:" or "~" is escaped with "~" so it never names a session."""
    if customer_id:
        escape = customer_id[:2] == "s:" or customer_id[:1] == "~"
        return "~" + customer_id if escape else customer_id
    return f"s:{session_id or ''}"


@dataclass(frozen=True, slots=True)
class ParsedEvent:
    """One accepted event with its time already in epoch ms."""

    ms: int
    event_id: str
    type: str
    key: str
    customer_id: str | None
    session_id: str | None
    contact_id: str | None
    attrs: Mapping[str, Any]
    data: Mapping[str, Any]


def parse_events(events: Iterable[Mapping[str, Any]]) -> list[ParsedEvent]:
    """Drop duplicate event_ids (identical copies) and sort by (time, event_id), once."""
    unique: dict[str, Mapping[str, Any]] = {}
    for raw in events:
        unique.setdefault(str(raw["event_id"]), raw)
    parsed = [
        ParsedEvent(
            ms=epoch_ms(raw["occurred_at"]),
            event_id=event_id,
            type=str(raw["type"]),
            key=journey_key(raw.get("customer_id"), raw.get("session_id")),
            customer_id=raw.get("customer_id") or None,
            session_id=raw.get("session_id"),
            contact_id=raw.get("contact_id"),
            attrs=raw.get("attrs") or {},
            data=raw.get("data") or {},
        )
        for event_id, raw in unique.items()
    ]
    parsed.sort(key=lambda e: (e.ms, e.event_id))
    return parsed


def first_of_type(events: Sequence[ParsedEvent], event_type: str) -> ParsedEvent | None:
    """The first event of a type in an already sorted list."""
    return next((e for e in events if e.type == event_type), None)


def ratio(numerator: float, denominator: float) -> float | None:
    """A ratio whose denominator is 0 is null (design section 8)."""
    return None if denominator == 0 else numerator / denominator
