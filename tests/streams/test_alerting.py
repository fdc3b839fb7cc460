"""Alert statistics and state machine on hand-computed cases (design section 7)."""

from __future__ import annotations

import pytest

from cxpulse.streams.alerting import (
    AlertState,
    Thresholds,
    Verdict,
    alert_id,
    judge,
    step,
    two_proportion_z,
)


def test_two_proportion_z_by_hand() -> None:
    # p1 = 0.3 (30/100), p2 = 0.2 (200/1000); pooled 230/1100 = 0.2090909;
    # se = sqrt(0.2090909 * 0.7909091 * (1/100 + 1/1000)) = 0.0426508; z = 0.1 / se = 2.34462
    assert two_proportion_z(30, 100, 200, 1000) == pytest.approx(2.34462, abs=1e-4)
    assert two_proportion_z(20, 100, 200, 1000) == pytest.approx(0.0)
    assert two_proportion_z(0, 100, 0, 1000) is None  # no variance: no test
    assert two_proportion_z(1, 0, 1, 10) is None


def test_volume_significance_and_size_all_required() -> None:
    assert not judge(29, 29, 0, 10_000).breach  # 100 % vs 0 %, but below 30 journeys
    assert judge(30, 30, 0, 10_000).breach
    # +20 % exactly (0.6 vs 0.5), z about 8.5: a breach.
    rising = judge(1200, 2000, 10_000, 20_000)
    assert rising.breach
    assert (rising.current_rate, rising.baseline_rate) == (0.6, 0.5)
    assert rising.z == pytest.approx(8.53, abs=0.01)
    # +18 % (0.59 vs 0.5): significant but not material.
    assert not judge(1180, 2000, 10_000, 20_000).breach
    # +40 % on small numbers (0.7 vs 0.5 over 30): material but z = 2.2 < 3.
    small = judge(21, 30, 5000, 10_000)
    assert small.z == pytest.approx(2.19, abs=0.01)
    assert not small.breach


BREACH = Verdict(True, 0.6, 0.5, 5.0, 100)
CLEAN = Verdict(False, 0.5, 0.5, 0.0, 100)


def _run(
    verdicts: list[Verdict], silenced_until: int | None = None
) -> list[tuple[str, str | None]]:
    alert = AlertState(silenced_until_ms=silenced_until)
    out = []
    for minute, verdict in enumerate(verdicts):
        moved = step(alert, verdict, now_ms=minute * 60_000, t=Thresholds())
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


def test_alert_ids_are_stable_per_rule_step_and_segment() -> None:
    a = alert_id("dropoff_rising", "self_service", "troubleshoot", {"tier": "b", "device": "m"})
    b = alert_id("dropoff_rising", "self_service", "troubleshoot", {"device": "m", "tier": "b"})
    assert a == b == "dropoff_rising/self_service/troubleshoot/device=m/tier=b"
    assert alert_id("service_level", None, None, {}) == "service_level/-/-"
