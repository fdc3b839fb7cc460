"""Alerts name the portal changes made shortly before they started (design section 4b): the
evaluator on a real store with scripted observations, and what the webhook and Grafana receive."""

from __future__ import annotations

import math
from typing import Any

import pytest

from cxpulse.schemas.times import ch_time
from cxpulse.sinks import alert_queries
from cxpulse.sinks.changes import Change, add_change
from cxpulse.sinks.migrate import migrate
from cxpulse.sinks.store import ChdbStore
from cxpulse.streams.alert_context import on_firing
from cxpulse.streams.change_alerts import contradicts
from cxpulse.streams.funnels import load_funnels
from cxpulse.streams.notify import GrafanaAnnotationSink, WebhookSink
from tests.streams.test_evaluator import (
    RISING,
    T0,
    Recorder,
    Scripted,
    _evaluator,
    _fresh_until,
)
from tests.streams.test_notify import ALERT, FAST, receiver

STARTED = T0 + 30_000  # when RISING fires in the evaluator's script
HOUR = 3_600_000


class Published(Recorder):
    """The alerts themselves, as the sinks receive them."""

    def __init__(self) -> None:
        super().__init__()
        self.alerts: list[dict[str, Any]] = []

    def publish(self, change: str, alert: dict[str, Any], notify: bool) -> None:
        super().publish(change, alert, notify)
        self.alerts.append(alert)


def _fired(store: ChdbStore) -> tuple[Published, Scripted]:
    """The evaluator's script run until RISING has started firing (at STARTED)."""
    published = Published()
    evaluator = _evaluator(store, published, T0)
    _fresh_until(store, T0)
    evaluator.run_once()
    _fresh_until(store, T0 + 60_000)
    evaluator.run_once()
    evaluator.run_once()
    return published, evaluator


def test_a_firing_alert_names_the_changes_of_its_funnel_and_segment_within_2h(
    chdb_store: ChdbStore,
) -> None:
    migrate(chdb_store)
    for change in [
        Change("edge", "Exactly 2 h before", STARTED - 2 * HOUR, "self_service"),
        Change("too-old", "Just over 2 h before", STARTED - 2 * HOUR - 1, "self_service"),
        Change("all-funnels", "Portal release", STARTED - 600_000),
        Change("other-funnel", "Returns wording", STARTED - 300_000, "returns"),
        Change("desktop", "Desktop layout", STARTED - 300_000, "self_service", None,
               {"device": "desktop"}),
        Change("mobile-tier", "Mobile business copy", STARTED - 60_000, "self_service",
               "diagnose", {"device": "mobile", "tier": "business"}),
        Change("later", "After it started", STARTED + 1, "self_service"),
    ]:  # fmt: skip
        add_change(chdb_store, change)
    published, evaluator = _fired(chdb_store)
    named = [
        {"id": "edge", "title": "Exactly 2 h before", "at": "2026-09-21T12:14:00+00:00"},
        {"id": "all-funnels", "title": "Portal release", "at": "2026-09-21T14:04:00+00:00"},
        {"id": "mobile-tier", "title": "Mobile business copy",
         "at": "2026-09-21T14:13:00+00:00"},
    ]  # fmt: skip
    assert published.changes == [("firing", RISING.id, True)]
    assert published.alerts[0]["recent_changes"] == named
    assert alert_queries.alert(chdb_store, RISING.id)["recent_changes"] == named  # type: ignore[index]
    # Looked up once, when it started firing: a change added meanwhile is not named later.
    add_change(chdb_store, Change("meanwhile", "While firing", STARTED + 30_000))
    _fresh_until(chdb_store, T0 + 300_000)
    evaluator.run_once()
    evaluator.run_once()
    assert published.changes[1:] == [("resolved", RISING.id, True)]
    assert published.alerts[1]["recent_changes"] == named
    row = alert_queries.alert(chdb_store, RISING.id)
    assert row is not None
    assert (row["state"], row["recent_changes"]) == ("resolved", named)


def test_an_alert_without_changes_before_it_names_none(chdb_store: ChdbStore) -> None:
    migrate(chdb_store)
    add_change(chdb_store, Change("old", "Three hours before", STARTED - 3 * HOUR))
    published, _ = _fired(chdb_store)
    assert published.changes == [("firing", RISING.id, True)]
    assert published.alerts[0]["recent_changes"] == []


def test_filters_contradict_a_segment_only_on_a_shared_attribute() -> None:
    assert contradicts({"device": "desktop"}, {"device": "mobile"})
    assert not contradicts({"device": "mobile"}, {"device": "mobile"})
    assert not contradicts({"tier": "business"}, {"device": "mobile"})
    assert not contradicts({}, {"device": "mobile"})
    assert not contradicts({"device": "desktop"}, {})


NAMED = [
    {"id": "copy-v2", "title": "New eligibility copy", "at": "2026-09-21T13:00:00+00:00"},
    {"id": "release-14", "title": "Portal 1.4", "at": "2026-09-21T14:00:00+00:00"},
]


def test_the_webhook_payload_names_the_changes_in_an_annotation() -> None:
    with receiver([]) as (url, received):
        sink = WebhookSink(f"{url}/hook", "http://api.example:8000", **FAST)
        sink.publish("firing", {**ALERT, "recent_changes": NAMED}, notify=True)
        sink.publish("firing", ALERT, notify=True)
        received.wait_for(2)
        sink.close()
    text = (
        'copy-v2 "New eligibility copy" at 2026-09-21T13:00:00+00:00; '
        'release-14 "Portal 1.4" at 2026-09-21T14:00:00+00:00'
    )
    with_changes, without = (request[3] for request in received.requests)
    assert with_changes["alerts"][0]["annotations"]["recent_changes"] == text
    assert with_changes["commonAnnotations"]["recent_changes"] == text
    assert "recent_changes" not in with_changes["alerts"][0]["labels"]
    assert "recent_changes" not in without["alerts"][0]["annotations"]


def test_the_grafana_annotation_names_the_changes() -> None:
    with receiver([]) as (url, received):
        sink = GrafanaAnnotationSink(url, "glsa_token", **FAST)
        sink.publish("firing", {**ALERT, "recent_changes": NAMED[:1]}, notify=True)
        received.wait_for(1)
        sink.close()
    assert received.requests[0][3]["text"] == (
        "firing: dropoff_rising at self_service diagnose (device=mobile): 50.0% vs baseline "
        '30.0% (after changes: copy-v2 "New eligibility copy" at 2026-09-21T13:00:00+00:00)'
    )


def test_a_firing_dropoff_alert_names_the_top_drivers_of_its_step(chdb_store: ChdbStore) -> None:
    """RISING is self_service / diagnose for device=mobile. In the 2 h before it fired, 80 closed
    mobile journeys reached identify_device: region emea dropped at diagnose 24 of 40 times,
    amer 4 of 40. Desktop journeys (other segment), older ones and open ones do not count."""
    migrate(chdb_store)

    def row(jid: str, at: int, region: str, dropped: bool, device: str = "mobile") -> Any:
        reach = [0, 10, None if dropped else 20, None, None, None, None]
        return {
            "funnel": "self_service", "journey_key": "k-" + jid, "journey_id": jid,
            "version": 1, "is_deleted": 0, "start_at": ch_time(at), "entered_at": ch_time(at),
            "closed": 1, "outcome": "abandoned", "attrs": {"device": device, "region": region},
            "reach_ms": reach, "last_step": 1 if dropped else 2, "dropped_step": -1,
            "escalated_step": -1, "abandoned_step": -1, "facts": [],
        }  # fmt: skip

    at = STARTED - HOUR
    rows = [row(f"e{i}", at + i, "emea", i < 24) for i in range(40)]
    rows += [row(f"a{i}", at + i, "amer", i < 4) for i in range(40)]
    rows += [row(f"d{i}", at + i, "amer", True, "desktop") for i in range(40)]
    rows += [row(f"o{i}", STARTED - 3 * HOUR, "amer", True) for i in range(40)]
    rows += [row("open", at, "amer", True) | {"closed": 0, "outcome": "in_progress"}]
    chdb_store.insert("journey_funnels", rows)
    published, _ = _fired(chdb_store)
    # By hand: pooled 28/80; z = (0.6 - 0.1) / sqrt(0.35 * 0.65 * (1/40 + 1/40)); three values
    # tested (device=mobile, region=emea, region=amer), so p_adjusted = 3 * erfc(z / sqrt 2).
    z = 0.5 / math.sqrt(0.35 * 0.65 * (2 / 40))
    (top,) = published.alerts[0]["top_drivers"]
    assert top == {
        "kind": "attr", "attr": "region", "value": "emea", "rate": 0.6, "rate_rest": 0.1,
        "excess": pytest.approx(20.0, rel=1e-12),
        "p_adjusted": pytest.approx(3 * math.erfc(z / math.sqrt(2)), rel=1e-9),
    }  # fmt: skip
    stored = alert_queries.alert(chdb_store, RISING.id)
    assert stored is not None
    assert stored["top_drivers"] == published.alerts[0]["top_drivers"]


def test_the_webhook_payload_and_the_grafana_annotation_name_the_top_drivers() -> None:
    top = [{"kind": "attr", "attr": "region", "value": "emea", "rate": 0.6, "rate_rest": 0.1,
            "excess": 20.0, "p_adjusted": 0.0001},
           {"kind": "eligibility_reason", "attr": "reason", "value": "out_of_warranty",
            "rate": 0.5, "rate_rest": 0.25, "excess": 7.5, "p_adjusted": 0.01}]  # fmt: skip
    text = (
        "region=emea 60.0% vs 10.0% (+20.0 journeys); "
        "eligibility_reason:reason=out_of_warranty 50.0% vs 25.0% (+7.5 journeys)"
    )
    with receiver([]) as (url, received):
        hook = WebhookSink(f"{url}/hook", "http://api.example:8000", **FAST)
        hook.publish("firing", {**ALERT, "top_drivers": top}, notify=True)
        received.wait_for(1)
        hook.close()
        grafana = GrafanaAnnotationSink(url, "glsa_token", **FAST)
        grafana.publish("firing", {**ALERT, "top_drivers": top[:1]}, notify=True)
        received.wait_for(2)
        grafana.close()
    payload, annotation = (request[3] for request in received.requests)
    assert payload["alerts"][0]["annotations"]["top_drivers"] == text
    assert "top_drivers" not in payload["alerts"][0]["labels"]
    assert annotation["text"].endswith("(top drivers: region=emea 60.0% vs 10.0% (+20.0 journeys))")


def test_a_failed_context_lookup_leaves_the_alert_without_context(
    chdb_store: ChdbStore, caplog: pytest.LogCaptureFixture
) -> None:
    """The store has no `changes` table (migrations not applied): the alert still fires, names
    nothing, and the failure is logged."""
    alert = {**ALERT, "started_ms": STARTED, "funnel": "self_service", "step": "diagnose"}
    context = on_firing(chdb_store, alert, load_funnels(), 2 * HOUR, 2 * HOUR)
    assert context == {"recent_changes": [], "top_drivers": []}
    assert "looking up the changes and drivers of alert" in caplog.text
