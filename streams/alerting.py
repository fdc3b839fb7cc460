"""Alert statistics and the alert state machine: pure functions, no Kafka, no clock.

The detector compares a windowed rate (timely drop-off at a funnel step, abandonment, ...)
with its trailing baseline by a two-proportion z-test (design section 7). An alert fires only
when the rise is significant (z), material (relative increase) and backed by enough volume;
it resolves after consecutive clean evaluations, so it does not flap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Thresholds:
    min_z: float = 3.0
    min_relative_increase: float = 0.20
    min_window: int = 30  # journeys (or contacts) in the window
    fire_after: int = 2  # consecutive breaching evaluations before firing
    resolve_after: int = 2  # consecutive clean evaluations before resolving


@dataclass(frozen=True)
class Verdict:
    breach: bool
    current_rate: float | None
    baseline_rate: float | None
    z: float | None
    window: int


def two_proportion_z(x1: int, n1: int, x2: int, n2: int) -> float | None:
    """z of p1 = x1/n1 against p2 = x2/n2 with the pooled standard error; None if undefined."""
    if n1 <= 0 or n2 <= 0:
        return None
    pooled = (x1 + x2) / (n1 + n2)
    variance = pooled * (1 - pooled) * (1 / n1 + 1 / n2)
    if variance <= 0:
        return None
    return (x1 / n1 - x2 / n2) / math.sqrt(variance)


def judge(
    window_hits: int, window_n: int, base_hits: int, base_n: int, t: Thresholds = Thresholds()
) -> Verdict:
    """Whether the window's rate rose significantly above the baseline's."""
    current = window_hits / window_n if window_n else None
    baseline = base_hits / base_n if base_n else None
    z = two_proportion_z(window_hits, window_n, base_hits, base_n)
    if current is None or baseline is None or z is None or window_n < t.min_window:
        return Verdict(False, current, baseline, z, window_n)
    if baseline == 0:
        material = current > 0
    else:
        # A hair of tolerance: +20 % exactly (0.6 vs 0.5) is 0.19999999999999996 in floats.
        material = (current - baseline) / baseline >= t.min_relative_increase - 1e-9
    return Verdict(z >= t.min_z and material, current, baseline, z, window_n)


@dataclass(frozen=True)
class AlertState:
    """One alert's life: inactive -> pending -> firing -> resolved (-> pending ...)."""

    state: str = "inactive"  # inactive | pending | firing | resolved
    breaches: int = 0  # consecutive breaching evaluations
    clean: int = 0  # consecutive clean evaluations while firing
    started_ms: int | None = None
    resolved_ms: int | None = None
    silenced_until_ms: int | None = None


@dataclass(frozen=True)
class Transition:
    state: AlertState
    notify: str | None  # "firing" or "resolved" when a notification is due, else None


def step(
    alert: AlertState, verdict: Verdict, now_ms: int, t: Thresholds = Thresholds()
) -> Transition:
    """Advance one evaluation. Notifications only on becoming firing or resolved, never twice,
    and not while silenced (the state still moves, so the alert resolves on time)."""
    silenced = alert.silenced_until_ms is not None and now_ms < alert.silenced_until_ms
    if verdict.breach:
        breaches = alert.breaches + 1
        if alert.state == "firing":
            return Transition(replace(alert, breaches=breaches, clean=0), None)
        if breaches >= t.fire_after:
            fired = replace(alert, state="firing", breaches=breaches, clean=0,
                            started_ms=now_ms, resolved_ms=None)  # fmt: skip
            return Transition(fired, None if silenced else "firing")
        return Transition(replace(alert, state="pending", breaches=breaches, clean=0), None)
    if alert.state == "firing":
        clean = alert.clean + 1
        if clean >= t.resolve_after:
            done = replace(alert, state="resolved", breaches=0, clean=0, resolved_ms=now_ms)
            return Transition(done, None if silenced else "resolved")
        return Transition(replace(alert, breaches=0, clean=clean), None)
    if alert.state == "pending":
        return Transition(replace(alert, state="inactive", breaches=0), None)
    return Transition(replace(alert, breaches=0), None)


def alert_id(rule: str, funnel: str | None, step_name: str | None, segment: dict[str, str]) -> str:
    """Stable per rule + step + segment: the same condition is always the same alert."""
    parts = [rule, funnel or "-", step_name or "-"]
    parts += [f"{k}={v}" for k, v in sorted(segment.items())]
    return "/".join(parts)
