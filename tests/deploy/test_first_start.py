"""A new user's first start: `up` seeds history only when nothing is stored yet, and its banner
ends with what to try next (the run itself: tests/deploy/test_up.py)."""

from __future__ import annotations

import pytest

from cxpulse.dashboards.build import GRAFANA_DIR
from cxpulse.deploy.stack import next_steps
from cxpulse.deploy.traffic import history_to_send_ms

HOUR_MS = 3_600_000


@pytest.mark.parametrize(
    ("simulator", "events_stored", "expected"),
    [(True, False, 3 * HOUR_MS), (True, True, 0), (False, False, 0), (False, True, 0)],
)
def test_history_is_sent_on_a_first_start_with_the_simulator_only(
    simulator: bool, events_stored: bool, expected: int
) -> None:
    assert history_to_send_ms(3 * HOUR_MS, simulator, events_stored) == expected


def test_no_history_when_none_is_asked_for() -> None:
    assert history_to_send_ms(0, simulator=True, events_stored=False) == 0


def test_next_steps_with_embedded_chdb() -> None:
    lines = next_steps("http://127.0.0.1:8000", "k3y", "self_service", server_store=False)
    assert lines[:3] == [
        "Try next:",
        "  cxpulse watch  (in another terminal: the funnel, contact-center KPIs and alerts, live)",
        "  curl -H 'Authorization: Bearer k3y' "
        "'http://127.0.0.1:8000/v1/funnels/self_service/summary'",
    ]
    (dashboards,) = lines[3:]
    assert f"Grafana JSON in {GRAFANA_DIR / 'dashboards'} " in dashboards
    assert (GRAFANA_DIR / "dashboards" / "cxpulse-funnel-self_service.json").exists()
    assert "`docker compose --profile demo up -d` serves them on http://127.0.0.1:3000" in (
        dashboards
    )


def test_next_steps_with_configured_keys_and_a_clickhouse_server() -> None:
    lines = next_steps("http://10.0.0.5:8000", None, "renewals", server_store=True)
    assert lines[2] == (
        "  curl -H 'Authorization: Bearer <a key of CXPULSE_API_KEYS>' "
        "'http://10.0.0.5:8000/v1/funnels/renewals/summary'"
    )
    assert lines[3].endswith("`cxpulse grafana sync --url <Grafana URL>` loads them onto a Grafana")
