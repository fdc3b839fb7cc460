"""Alert statistics and the alert state machine: pure functions, no Kafka, no clock.

The detector compares a windowed rate (timely drop-off at a funnel step, abandonment, ...)
with its trailing baseline by a two-proportion z-test (design section 7). An alert fires only
when the rise is significant (z), material (relative increase) and backed by enough volume;
it resolves after consecutive clean evaluations, so it does not flap. The no_data rule fires
when a funnel's first step saw no journey for a while although its baseline rate makes that
silence improbable: a broken portal or a dead producer sends nothing, which no rate can show.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from statistics import NormalDist
from typing import Any

_NORMAL = NormalDist()


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
    """z of p1 = x1/n1 against p2 = x2/n2: pooled standard error and Yates' continuity
    correction (a window of 30 journeys is small enough for the plain normal approximation to
    overstate z); None if undefined."""
    if n1 <= 0 or n2 <= 0:
        return None
    pooled = (x1 + x2) / (n1 + n2)
    variance = pooled * (1 - pooled) * (1 / n1 + 1 / n2)
    if variance <= 0:
        return None
    diff = x1 / n1 - x2 / n2
    corrected = max(0.0, abs(diff) - 0.5 * (1 / n1 + 1 / n2))
    return math.copysign(corrected, diff) / math.sqrt(variance)


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


def tau_ms(p90_ms: int | None, cap_ms: int) -> int:
    """The timely drop-off deadline: the baseline's p90 step-to-step time in whole seconds
    (rounded up), capped; the cap when the baseline has no journey that made the step."""
    if p90_ms is None:
        return cap_ms
    return min(cap_ms, -(-max(p90_ms, 1) // 1000) * 1000)


@dataclass(frozen=True)
class AlertState:
    """One alert's life: inactive -> pending -> firing -> resolved (-> pending ...)."""

    state: str = "inactive"  # inactive | pending | firing | resolved
    breaches: int = 0  # consecutive breaching evaluations
    clean: int = 0  # consecutive clean evaluations while firing
    started_ms: int | None = None
    resolved_ms: int | None = None


@dataclass(frozen=True)
class Transition:
    state: AlertState
    changed: str | None  # "firing" or "resolved" when the alert just became so, else None
    notify: str | None  # the same, unless silenced: what notifications announce


def step(
    alert: AlertState,
    verdict: Verdict,
    now_ms: int,
    t: Thresholds = Thresholds(),
    silenced: bool = False,
) -> Transition:
    """Advance one evaluation. Changes only on becoming firing or resolved, never twice; a
    silence mutes notifications, not the state, so a silenced alert still resolves on time."""
    if verdict.breach:
        breaches = alert.breaches + 1
        if alert.state == "firing":
            return Transition(replace(alert, breaches=breaches, clean=0), None, None)
        if breaches >= t.fire_after:
            fired = replace(
                alert,
                state="firing",
                breaches=breaches,
                clean=0,
                started_ms=now_ms,
                resolved_ms=None,
            )
            return Transition(fired, "firing", None if silenced else "firing")
        pending = replace(alert, state="pending", breaches=breaches, clean=0)
        return Transition(pending, None, None)
    if alert.state == "firing":
        clean = alert.clean + 1
        if clean >= t.resolve_after:
            done = replace(alert, state="resolved", breaches=0, clean=0, resolved_ms=now_ms)
            return Transition(done, "resolved", None if silenced else "resolved")
        return Transition(replace(alert, breaches=0, clean=clean), None, None)
    if alert.state == "pending":
        return Transition(replace(alert, state="inactive", breaches=0), None, None)
    return Transition(replace(alert, breaches=0), None, None)


def alert_id(rule: str, funnel: str | None, step_name: str | None, segment: dict[str, str]) -> str:
    """Stable per rule + step + segment: the same condition is always the same alert."""
    parts = [rule, funnel or "-", step_name or "-"]
    parts += [f"{k}={v}" for k, v in sorted(segment.items())]
    return "/".join(parts)


DROPOFF = "dropoff_rising"
SERVICE_LEVEL = "service_level_breach"
ABANDONMENT = "abandonment_spike"
NO_DATA = "no_data"


@dataclass(frozen=True)
class Observation:
    """One rule's window and baseline counts for one step and segment at one evaluation."""

    rule: str
    funnel: str | None
    step: str | None
    segment: dict[str, str]
    window_hits: int
    window_n: int
    base_hits: int
    base_n: int
    gate: bool = True  # a condition the rule adds to the test (service level below target)
    # Silence rules (no_data): the journeys the baseline rate expects in the window. The rule is
    # judged by `judge_silence`, not by the two-proportion test, and is not one of its tests.
    expected: float | None = None

    @property
    def id(self) -> str:
        return alert_id(self.rule, self.funnel, self.step, self.segment)


def dropoff_observations(
    funnel: str, steps: Sequence[str], rows: Iterable[Mapping[str, Any]]
) -> list[Observation]:
    """Timely drop-off counts (`alert_queries.timely_dropoff` rows) as observations per step k."""
    return [
        Observation(
            DROPOFF,
            funnel,
            steps[int(r["k"])],
            _segment(r),
            int(r["window_hits"]),
            int(r["window_n"]),
            int(r["base_hits"]),
            int(r["base_n"]),
        )
        for r in rows
    ]


def contact_observations(rows: Iterable[Mapping[str, Any]], sl_target: float) -> list[Observation]:
    """Service-level misses and abandonment (sinks.alert_queries.contact_alert_counts rows).

    Service-level alerts need both a significant rise of misses and a window service level
    below its target: a dip from 97 % to 95 % is a change, not a breach.
    """
    out = []
    for r in rows:
        n, misses = int(r["window_sl_n"]), int(r["window_sl_misses"])
        below = n > 0 and (n - misses) / n < sl_target
        out.append(
            Observation(
                SERVICE_LEVEL,
                None,
                None,
                _segment(r),
                misses,
                n,
                int(r["base_sl_misses"]),
                int(r["base_sl_n"]),
                gate=below,
            )
        )
        out.append(
            Observation(
                ABANDONMENT,
                None,
                None,
                _segment(r),
                int(r["window_abandoned"]),
                int(r["window_queued"]),
                int(r["base_abandoned"]),
                int(r["base_queued"]),
            )
        )
    return out


def no_data_observation(
    funnel: str, first_step: str, seen: int, base: int, span_ms: int, baseline_ms: int
) -> Observation:
    """The no_data rule of one funnel: `seen` journeys reached its first step in the last
    `span_ms`, `base` in the `baseline_ms` before that (so base * span / baseline expected)."""
    expected = base * span_ms / baseline_ms if baseline_ms > 0 else 0.0
    return Observation(NO_DATA, funnel, first_step, {}, 0, seen, 0, base, expected=expected)


def silence_z(seen: int, expected: float) -> float | None:
    """How surprising it is that nothing arrived where `expected` journeys were due at the
    baseline rate: the normal quantile of the Poisson probability of none, exp(-expected), so
    the same min_z bounds false alarms as for the rate rules (z >= 3 needs about 6.6 expected
    journeys). None when something arrived or nothing was expected."""
    if seen > 0 or expected <= 0:
        return None
    return -_NORMAL.inv_cdf(max(math.exp(-expected), 1e-300))


def judge_silence(seen: int, expected: float, t: Thresholds = Thresholds()) -> Verdict:
    """The no_data verdict. Its rates are relative to the baseline's traffic (seen ÷ expected
    against 1.0), so notifications and dashboards that show rates as percentages read "0 % of
    the usual traffic"."""
    z = silence_z(seen, expected)
    current, baseline = (seen / expected, 1.0) if expected > 0 else (None, None)
    return Verdict(z is not None and z >= t.min_z, current, baseline, z, seen)


def _segment(row: Mapping[str, Any]) -> dict[str, str]:
    return {str(row["attr"]): str(row["value"])} if row["attr"] else {}


@dataclass(frozen=True)
class Outcome:
    id: str
    observation: Observation | None  # None: the alert's segment had no data this time
    verdict: Verdict
    transition: Transition


def critical_z(min_z: float, tests: int) -> float:
    """The z each of `tests` simultaneous tests needs so that the whole evaluation raises a
    false alarm no more often than one test at `min_z` would (Bonferroni). Without it, ~100
    step x segment tests every 15 minutes fire a few false alarms a day on steady traffic."""
    if tests <= 1:
        return min_z
    alpha = 1 - _NORMAL.cdf(min_z)
    return max(min_z, _NORMAL.inv_cdf(1 - alpha / tests))


def evaluate(
    observations: list[Observation],
    states: dict[str, AlertState],
    now_ms: int,
    t: Thresholds,
    silenced: set[str],
) -> list[Outcome]:
    """One evaluation of every observation, and of live alerts that have none this time (they
    count as clean, so they resolve). Updates `states`, keeping only pending and firing alerts;
    returns an outcome for every alert that is, or just stopped being, firing or pending."""
    rates = [o for o in observations if o.expected is None]
    tests = sum(1 for o in rates if o.window_n >= t.min_window and o.base_n > 0)
    raised = replace(t, min_z=critical_z(t.min_z, tests))
    outcomes = []
    seen = set()
    for obs in observations:
        if obs.expected is not None:  # one test per funnel: the unraised z
            verdict = judge_silence(obs.window_n, obs.expected, t)
        else:
            verdict = judge(obs.window_hits, obs.window_n, obs.base_hits, obs.base_n, raised)
        if not obs.gate:
            verdict = replace(verdict, breach=False)
        seen.add(obs.id)
        outcomes.append(_advance(obs.id, obs, verdict, states, now_ms, t, silenced))
    for alert in [a for a in states if a not in seen]:
        outcomes.append(
            _advance(alert, None, Verdict(False, None, None, None, 0), states, now_ms, t, silenced)
        )
    return [o for o in outcomes if o.transition.state.state != "inactive" or o.transition.changed]


def _advance(
    alert: str,
    obs: Observation | None,
    verdict: Verdict,
    states: dict[str, AlertState],
    now_ms: int,
    t: Thresholds,
    silenced: set[str],
) -> Outcome:
    moved = step(states.get(alert, AlertState()), verdict, now_ms, t, alert in silenced)
    if moved.state.state in ("pending", "firing"):
        states[alert] = moved.state
    else:
        states.pop(alert, None)
    return Outcome(alert, obs, verdict, moved)
