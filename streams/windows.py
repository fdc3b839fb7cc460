"""The time windows of the metric definitions (design section 4), as one value passed down.

The design's defaults in brackets are configuration (`CXPULSE_*_SECONDS`, `Settings.windows`);
the stage hands one `Windows` to the pure functions, which take the values they need as
arguments, so no module holds a second copy of a default.
"""

from __future__ import annotations

from dataclasses import astuple, dataclass

from cxpulse.schemas.validate import MAX_EVENT_AGE_MS
from cxpulse.streams import topics

#: How long an event may wait in cx.keyed.v1 before the journey stage sees it.
KEYED_RETENTION_MS = int(topics.KEYED.config["retention.ms"])


@dataclass(frozen=True, slots=True)
class Windows:
    """Every window a row's figures depend on (besides each funnel's conversion window)."""

    gap_ms: int  # a portal journey ends after this much inactivity
    escalation_window_ms: int  # a contact escalates a journey this long after its last event
    short_abandon_ms: int  # abandoned after waiting less: left out of the service level
    service_level_ms: int  # answered after waiting at most this: within service level
    ivr_followup_ms: int  # IVR contained when no other contact of the customer within this
    fcr_window_ms: int  # first-contact resolution when no other contact within this


_HOUR_MS = 3_600_000
DEFAULT_WINDOWS = Windows(
    gap_ms=30 * 60_000,
    escalation_window_ms=72 * _HOUR_MS,
    short_abandon_ms=5_000,
    service_level_ms=20_000,
    ivr_followup_ms=24 * _HOUR_MS,
    fcr_window_ms=7 * 24 * _HOUR_MS,
)


def lookback_ms(windows: Windows) -> int:
    """How long a key keeps events: a new event is at most MAX_EVENT_AGE_MS old at ingest, may
    wait in the keyed topic up to its retention, and then looks back at most the longest
    window; anything older can no longer interact with an event still to come."""
    return MAX_EVENT_AGE_MS + KEYED_RETENTION_MS + max(astuple(windows))
