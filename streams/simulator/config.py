"""What to simulate: seed, start, rate, incidents, changes, experiments and behaviour, and the
CLI's text forms of them.

Kept apart from the model so that the CLI, the stack and the tests can build and validate a
configuration without loading the generator.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from cxpulse.schemas.durations import parse_duration_ms
from cxpulse.streams.simulator.behaviour import DEFAULT_BEHAVIOUR, Behaviour
from cxpulse.streams.simulator.clock import parse_ms
from cxpulse.streams.simulator.scenario import Experiment, Incident, SimChange, name_values

#: Simulated time zero when the caller gives none; a live producer passes the wall clock.
DEFAULT_START_MS = 1_795_392_000_000  # 2026-11-23T00:00:00Z


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
    changes: tuple[SimChange, ...] = ()
    experiments: tuple[Experiment, ...] = ()

    def __post_init__(self) -> None:
        if not self.rate > 0:
            raise ValueError("rate must be > 0")
        if not 0.0 <= self.anonymous_share <= 1.0:
            raise ValueError("anonymous_share must be within [0, 1]")
        ids = [change.id for change in self.changes]
        if len(set(ids)) != len(ids):
            raise ValueError(f"change ids must be unique, got {ids}")
        attrs = [experiment.attr for experiment in self.experiments]
        if len(set(attrs)) != len(attrs):
            raise ValueError(f"one experiment per attribute, got {attrs}")

    def dropoff_incidents(self) -> tuple[Incident, ...]:
        """Incidents, changes and experiment effects: all are extra drop-off at a step."""
        return (
            self.incidents
            + tuple(change.incident() for change in self.changes)
            + tuple(i for experiment in self.experiments for i in experiment.incidents())
        )


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
    fields = dict(name_values(text, "incident"))
    if "step" not in fields:
        raise ValueError("an incident needs step=<funnel step>")
    step = fields.pop("step")
    begin = parse_time_ms(fields.pop("start", "+0s"), now_ms, start_ms)
    end_text = fields.pop("end", None)
    end = parse_time_ms(end_text, now_ms, start_ms) if end_text else None
    extra = float(fields.pop("extra", "0.2"))
    return Incident(step=step, segment=fields, start_ms=begin, end_ms=end, extra_dropoff=extra)


def parse_change(text: str, number: int, now_ms: int) -> SimChange:
    """'at=-3d,step=diagnose,effect=-0.05[,id=wording-v2][,product_line=printers]'.

    `at` is relative to now (or RFC 3339); the id defaults to sim-change-<number>; every other
    key is an attribute filter."""
    fields = dict(name_values(text, "change"))
    missing = [name for name in ("at", "step", "effect") if name not in fields]
    if missing:
        raise ValueError(f"a change needs {', '.join(f'{m}=' for m in missing)}")
    return SimChange(
        id=fields.pop("id", f"sim-change-{number}"),
        at_ms=parse_time_ms(fields.pop("at"), now_ms),
        step=fields.pop("step"),
        effect=_number(fields.pop("effect"), "effect"),
        filters=fields,
    )


def parse_experiment(text: str) -> Experiment:
    """'attr=variant,values=A:B:C,step=troubleshoot,effect=B:0.1[,effect=C:-0.02]'."""
    fields: dict[str, str] = {}
    effects: dict[str, float] = {}
    for name, value in name_values(text, "experiment"):
        if name == "effect":
            variant, sep, amount = value.rpartition(":")
            if not sep or not variant:
                raise ValueError(f"experiment effect {value!r} is not <value>:<effect>")
            effects[variant] = _number(amount, "effect")
        elif name in ("attr", "values", "step"):
            fields[name] = value
        else:
            expected = "attr, values, step, effect"
            raise ValueError(f"unknown experiment part {name!r}; expected {expected}")
    missing = [name for name in ("attr", "values", "step") if name not in fields]
    if missing:
        raise ValueError(f"an experiment needs {', '.join(f'{m}=' for m in missing)}")
    values = tuple(v.strip() for v in fields["values"].split(":"))
    return Experiment(fields["attr"], values, fields["step"], effects)


def _number(text: str, what: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{what} {text!r} is not a number") from None
