"""Alert statistics and state machine on hand-computed cases (design section 7)."""

from __future__ import annotations

import pytest

from cxpulse.streams.alerting import (
    ABANDONMENT,
    DROPOFF,
    NO_DATA,
    SERVICE_LEVEL,
    AlertState,
    Observation,
    Thresholds,
    Verdict,
    alert_id,
    contact_observations,
    critical_z,
    dropoff_observations,
    evaluate,
    judge,
    judge_silence,
    no_data_observation,
    silence_z,
    step,
    tau_ms,
    two_proportion_z,
)


def test_two_proportion_z_by_hand() -> None:
    # p1 = 0.3 (30/100), p2 = 0.2 (200/1000); pooled 230/1100 = 0.2090909;
    # se = sqrt(0.2090909 * 0.7909091 * (1/100 + 1/1000)) = 0.0426508; continuity correction
    # 0.5 * (1/100 + 1/1000) = 0.0055; z = (0.1 - 0.0055) / se = 2.21567
    assert two_proportion_z(30, 100, 200, 1000) == pytest.approx(2.21567, abs=1e-4)
    # Falls: pooled 210/1100, se 0.0412190, z = -(0.1 - 0.0055) / se = -2.29257
    assert two_proportion_z(10, 100, 200, 1000) == pytest.approx(-2.29257, abs=1e-4)
    assert two_proportion_z(20, 100, 200, 1000) == pytest.approx(0.0)
    assert two_proportion_z(21, 100, 20, 100) == pytest.approx(0.0)  # within the correction
    assert two_proportion_z(0, 100, 0, 1000) is None  # no variance: no test
    assert two_proportion_z(1, 0, 1, 10) is None


def test_volume_significance_and_size_all_required() -> None:
    assert not judge(29, 29, 0, 10_000).breach  # 100 % vs 0 %, but below 30 journeys
    assert judge(30, 30, 0, 10_000).breach
    # +20 % exactly (0.6 vs 0.5), z about 8.5: a breach.
    rising = judge(1200, 2000, 10_000, 20_000)
    assert rising.breach
    assert (rising.current_rate, rising.baseline_rate) == (0.6, 0.5)
    assert rising.z == pytest.approx(8.51, abs=0.01)
    # +18 % (0.59 vs 0.5): significant but not material.
    assert not judge(1180, 2000, 10_000, 20_000).breach
    # +40 % on small numbers (0.7 vs 0.5 over 30): material but z = 2.0 < 3.
    small = judge(21, 30, 5000, 10_000)
    assert small.z == pytest.approx(2.01, abs=0.01)
    assert not small.breach


BREACH = Verdict(True, 0.6, 0.5, 5.0, 100)
CLEAN = Verdict(False, 0.5, 0.5, 0.0, 100)


def _run(
    verdicts: list[Verdict], silenced_until: int | None = None
) -> list[tuple[str, str | None]]:
    alert = AlertState()
    out = []
    for minute, verdict in enumerate(verdicts):
        silenced = silenced_until is not None and minute * 60_000 < silenced_until
        moved = step(alert, verdict, now_ms=minute * 60_000, t=Thresholds(), silenced=silenced)
        assert moved.notify in (None, moved.changed)
        alert = moved.state
        out.append((alert.state, moved.notify))
    return out


def test_fires_after_two_breaches_notifies_once_and_resolves_after_two_clean() -> None:
    assert _run([BREACH, BREACH, BREACH, CLEAN, BREACH, CLEAN, CLEAN, CLEAN]) == [
        ("pending", None),
        ("firing", "firing"),
        ("firing", None),  # no duplicate notification
        ("firing", None),  # one clean evaluation is not enough (hysteresis)
        ("firing", None),
        ("firing", None),
        ("resolved", "resolved"),
        ("resolved", None),
    ]


def test_a_single_breach_only_pends() -> None:
    assert _run([BREACH, CLEAN, BREACH, CLEAN]) == [
        ("pending", None), ("inactive", None), ("pending", None), ("inactive", None),
    ]  # fmt: skip


def test_silence_suppresses_notifications_until_it_expires() -> None:
    # Silenced until minute 3: firing at minute 1 is not notified, resolving at minute 5 is.
    states = _run([BREACH, BREACH, BREACH, CLEAN, CLEAN, CLEAN], silenced_until=3 * 60_000)
    assert states[1] == ("firing", None)
    assert states[4] == ("resolved", "resolved")
    # The change itself is still recorded while silenced (for the alerts topic and table).
    fired = step(AlertState(state="pending", breaches=1), BREACH, 60_000, silenced=True)
    assert (fired.state.state, fired.changed, fired.notify) == ("firing", "firing", None)


def test_tau_is_the_p90_in_whole_seconds_capped() -> None:
    assert tau_ms(83_781, 600_000) == 84_000
    assert tau_ms(84_000, 600_000) == 84_000
    assert tau_ms(0, 600_000) == 1_000  # never 0: a step reached at once still gets a second
    assert tau_ms(900_000, 600_000) == 600_000
    assert tau_ms(None, 600_000) == 600_000


def test_alert_ids_are_stable_per_rule_step_and_segment() -> None:
    a = alert_id("dropoff_rising", "self_service", "troubleshoot", {"tier": "b", "device": "m"})
    b = alert_id("dropoff_rising", "self_service", "troubleshoot", {"device": "m", "tier": "b"})
    assert a == b == "dropoff_rising/self_service/troubleshoot/device=m/tier=b"
    assert alert_id("service_level", None, None, {}) == "service_level/-/-"


def test_critical_z_keeps_one_tests_false_alarm_rate_for_the_whole_evaluation() -> None:
    assert critical_z(3.0, 1) == 3.0
    # alpha = 1 - Phi(3) = 0.0013499; / 100 tests -> Phi^-1(1 - 1.3499e-5) = 4.1981
    assert critical_z(3.0, 100) == pytest.approx(4.1981, abs=1e-3)
    assert critical_z(3.0, 100) > critical_z(3.0, 10) > 3.0


def _obs(
    step_name: str, segment: dict[str, str], hits: int, n: int, gate: bool = True
) -> Observation:
    return Observation(DROPOFF, "self_service", step_name, segment, hits, n, 3000, 10_000, gate)


def test_evaluate_raises_the_bar_with_the_number_of_tests() -> None:
    # 0.40 vs 0.30 over 400: z = 4.21 (with continuity correction): a breach alone...
    alone = [_obs("diagnose", {}, 160, 400)]
    states: dict[str, AlertState] = {}
    assert evaluate(alone, states, 0, Thresholds(fire_after=1), set())[0].verdict.breach
    # ... but not among 200 tests (critical z 4.35); tests below the volume floor do not count.
    crowd = alone + [_obs(f"s{i}", {}, 90, 300) for i in range(199)]
    crowd += [_obs(f"t{i}", {}, 1, 10) for i in range(1000)]
    outcomes = evaluate(crowd, {}, 0, Thresholds(fire_after=1), set())
    assert outcomes == []  # nothing pending or firing


def test_evaluate_keeps_only_live_alerts_and_resolves_those_without_data() -> None:
    t = Thresholds(fire_after=1, resolve_after=2)
    states: dict[str, AlertState] = {}
    rising = _obs("diagnose", {"device": "mobile"}, 200, 400)
    first = evaluate([rising, _obs("diagnose", {}, 300, 1000)], states, 1_000, t, set())
    assert [(o.id, o.transition.changed) for o in first] == [(rising.id, "firing")]
    assert set(states) == {rising.id}
    # The segment has no data at all for two evaluations: clean twice, so it resolves.
    assert [o.transition.changed for o in evaluate([], states, 2_000, t, set())] == [None]
    last = evaluate([], states, 3_000, t, set())
    assert [(o.id, o.transition.changed, o.transition.state.resolved_ms) for o in last] == [
        (rising.id, "resolved", 3_000)
    ]
    assert states == {}


def test_a_silenced_alert_changes_state_without_notifying() -> None:
    rising = _obs("diagnose", {}, 200, 400)
    (outcome,) = evaluate([rising], {}, 0, Thresholds(fire_after=1), {rising.id})
    assert (outcome.transition.changed, outcome.transition.notify) == ("firing", None)


def test_gated_observations_never_breach() -> None:
    t = Thresholds(fire_after=1)
    assert evaluate([_obs("diagnose", {}, 200, 400, gate=False)], {}, 0, t, set()) == []
    assert evaluate([_obs("diagnose", {}, 200, 400, gate=True)], {}, 0, t, set()) != []


def test_contact_rows_become_service_level_and_abandonment_observations() -> None:
    row = {"attr": "queue", "value": "billing", "window_sl_n": 100, "window_sl_misses": 30,
           "base_sl_n": 1000, "base_sl_misses": 150, "window_queued": 120,
           "window_abandoned": 12, "base_queued": 1200, "base_abandoned": 60}  # fmt: skip
    sl, abandon = contact_observations([row], sl_target=0.8)
    assert (sl.rule, sl.segment, sl.window_hits, sl.window_n, sl.base_hits, sl.base_n, sl.gate) == (
        SERVICE_LEVEL, {"queue": "billing"}, 30, 100, 150, 1000, True)  # fmt: skip
    assert sl.id == "service_level_breach/-/-/queue=billing"
    assert (abandon.rule, abandon.window_hits, abandon.window_n) == (ABANDONMENT, 12, 120)
    # Service level 0.85 is above its 0.8 target: no breach, however it moved.
    (fine, _) = contact_observations(
        [{**row, "attr": "", "value": "", "window_sl_misses": 15}], 0.8
    )
    assert (fine.segment, fine.gate) == ({}, False)


def test_dropoff_rows_name_their_step() -> None:
    rows = [{"k": 2, "attr": "", "value": "", "window_hits": 5, "window_n": 50,
             "base_hits": 100, "base_n": 1000}]  # fmt: skip
    (obs,) = dropoff_observations("self_service", ["a", "b", "c"], rows)
    assert (obs.step, obs.segment, obs.id) == ("c", {}, "dropoff_rising/self_service/c")


def test_silence_z_is_the_normal_quantile_of_seeing_nothing() -> None:
    # P(0 | Poisson(10)) = exp(-10) = 4.54e-5 -> z = Phi^-1(1 - 4.54e-5) = 3.9139
    assert silence_z(0, 10.0) == pytest.approx(3.9139, abs=1e-3)
    # z >= 3 needs -ln(1 - Phi(3)) = 6.6077 expected journeys.
    assert silence_z(0, 6.60) < 3.0 < silence_z(0, 6.61)  # type: ignore[operator]
    assert silence_z(0, 5000.0) == pytest.approx(37.05, abs=0.01)  # no underflow
    assert silence_z(1, 1000.0) is None  # something arrived
    assert silence_z(0, 0.0) is None  # nothing was due


def test_no_data_breaches_only_on_silence_where_traffic_was_due() -> None:
    obs = no_data_observation("self_service", "session_started", 0, 2880, 300_000, 86_400_000)
    assert (obs.rule, obs.step, obs.segment, obs.window_n, obs.base_n) == (
        NO_DATA, "session_started", {}, 0, 2880)  # fmt: skip
    assert obs.id == "no_data/self_service/session_started"
    assert obs.expected == 10.0  # 2,880 a day: 10 per 5 minutes
    silent = judge_silence(0, 10.0)
    assert (silent.breach, silent.current_rate, silent.baseline_rate, silent.window) == (
        True, 0.0, 1.0, 0)  # fmt: skip
    back = judge_silence(12, 10.0)  # one journey is not silence; 12 are 120 % of the usual
    assert (back.breach, back.current_rate, back.baseline_rate, back.z) == (False, 1.2, 1.0, None)
    assert not judge_silence(0, 6.0).breach  # too little traffic for silence to mean much
    assert not judge_silence(0, 10.0, Thresholds(min_z=4.0)).breach


def test_no_data_fires_resolves_and_does_not_raise_the_bar_of_the_rate_rules() -> None:
    t = Thresholds(fire_after=2, resolve_after=2)
    silent = no_data_observation("f", "start", 0, 2880, 300_000, 86_400_000)
    back = no_data_observation("f", "start", 12, 2880, 300_000, 86_400_000)
    # 0.40 vs 0.30 over 400: z = 4.21, a breach alone; a no_data test beside it is not counted
    # as one of the rate tests (it would raise the critical z).
    rising = _obs("diagnose", {}, 160, 400)
    states: dict[str, AlertState] = {}
    changes = []
    for at, obs in enumerate([silent, silent, silent, back, back]):
        outcomes = evaluate([rising, obs], states, at, t, set())
        changes += [(o.id, o.transition.changed) for o in outcomes if o.transition.changed]
    assert changes == [(rising.id, "firing"), (silent.id, "firing"), (silent.id, "resolved")]
    assert set(states) == {rising.id}
