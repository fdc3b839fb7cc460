"""What to simulate: seed, start, rate, incidents and behaviour, and the CLI's text forms of them.

Kept apart from the model so that the CLI, the stack and the tests can build and validate a
configuration without loading the generator.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from cxpulse.schemas.durations import parse_duration_ms
from cxpulse.streams.simulator.behaviour import DEFAULT_BEHAVIOUR, FLOW_STEPS, Behaviour
from cxpulse.streams.simulator.clock import parse_ms

#: Simulated time zero when the caller gives none; a live producer passes the wall clock.
DEFAULT_START_MS = 1_795_392_000_000  # 2026-11-23T00:00:00Z


@dataclass(frozen=True)
class Incident:
    """A broken step for a segment: drop-off there rises while it is active.

    `step` is a flow step (FLOW_STEPS). In funnel terms (streams/funnels.yaml) an incident at
    identify_device/diagnose/troubleshoot raises drop-off at the funnel step of the same name, at
    `eligibility` it hits `eligibility_checked`, and at part_selection/shipping/confirm it hits
    `order_placed`. Active when start_ms <= (time the journey views the step) < end_ms.
    """

    step: str
    segment: Mapping[str, str] = field(default_factory=dict)
    start_ms: int = 0
    end_ms: int | None = None
    extra_dropoff: float = 0.2

    def __post_init__(self) -> None:
        if self.step not in FLOW_STEPS:
            raise ValueError(f"unknown step {self.step!r}; expected one of {FLOW_STEPS}")
        if self.end_ms is not None and self.end_ms < self.start_ms:
            raise ValueError("incident ends before it starts")

    def active(self, at_ms: int, attrs: Mapping[str, str]) -> bool:
        if at_ms < self.start_ms or (self.end_ms is not None and at_ms >= self.end_ms):
            return False
        return all(attrs.get(k) == v for k, v in self.segment.items())


@dataclass(frozen=True)
class SimConfig:
    """What to simulate. `rate` is the mean of all events (portal + contact center) per
    simulated second; the arrival rate of new customers is derived from it (see `Simulator`)."""

    seed: int = 42
    start_ms: int = DEFAULT_START_MS
    rate: float = 50.0
    incidents: tuple[Incident, ...] = ()
    anonymous_share: float = 0.15
    behaviour: Behaviour = DEFAULT_BEHAVIOUR

    def __post_init__(self) -> None:
        if not self.rate > 0:
            raise ValueError("rate must be > 0")
        if not 0.0 <= self.anonymous_share <= 1.0:
            raise ValueError("anonymous_share must be within [0, 1]")


def parse_time_ms(text: str, now_ms: int, relative_to: int | None = None) -> int:
    """'now', '-2h' / '+30m' (relative to `relative_to`, default now) or RFC 3339 with offset."""
    text = text.strip()
    if text == "now":
        return now_ms
    if text[:1] in "+-":
        sign = -1 if text[0] == "-" else 1
        return (now_ms if relative_to is None else relative_to) + sign * parse_duration_ms(text[1:])
    stamp = datetime.fromisoformat(text)
    if stamp.tzinfo is None:
        raise ValueError(f"{text!r} needs a UTC offset, e.g. 2026-11-23T10:00:00+00:00")
    return parse_ms(stamp.isoformat())


def parse_incident(text: str, start_ms: int, now_ms: int) -> Incident:
    """'step=troubleshoot,start=+30m,end=+90m,extra=0.2,product_line=printers'.

    start/end are relative to the simulation start (or absolute RFC 3339); every key other than
    step/start/end/extra selects the segment.
    """
    fields: dict[str, str] = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"incident part {part!r} is not name=value")
        fields[name.strip()] = value.strip()
    if "step" not in fields:
        raise ValueError("an incident needs step=<funnel step>")
    step = fields.pop("step")
    begin = parse_time_ms(fields.pop("start", "+0s"), now_ms, start_ms)
    end_text = fields.pop("end", None)
    end = parse_time_ms(end_text, now_ms, start_ms) if end_text else None
    extra = float(fields.pop("extra", "0.2"))
    return Incident(step=step, segment=fields, start_ms=begin, end_ms=end, extra_dropoff=extra)
