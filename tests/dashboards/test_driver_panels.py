"""The on-call board's drop-off drivers over simulated history, with Grafana's macros and
variables expanded: the step variable opens on the step of a firing drop-off alert, and the
panel shows the API's top drivers of the selected step, segment filters included."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from cxpulse.dashboards import driver_panels
from cxpulse.dashboards.boards import oncall_dashboard, to_json
from cxpulse.dashboards.config import BoardConfig
from cxpulse.schemas.times import ch_time
from cxpulse.schemas.vocabulary import SEGMENT_ATTRS
from cxpulse.sinks import driver_queries
from cxpulse.sinks.store import ChdbStore
from cxpulse.streams.funnels import load_funnels
from cxpulse.streams.settings import Settings
from cxpulse.streams.simulator.config import Incident, SimConfig
from tests.support.grafana import expand
from tests.support.history import load_history

NOW = 1_795_600_000_000
HOUR = 3_600_000
START, END = NOW - 3 * HOUR, NOW
FUNNEL = load_funnels()[0]
STEPS = [s.name for s in FUNNEL.steps]
ALL: dict[str, list[str] | None] = dict.fromkeys(SEGMENT_ATTRS)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChdbStore]:
    """3 h of traffic at 4 events/s; in the last 2 h the troubleshoot step fails on mobile."""
    incident = Incident(
        step="troubleshoot", segment={"device": "mobile"}, start_ms=NOW - 2 * HOUR,
        extra_dropoff=0.5,
    )  # fmt: skip
    config = SimConfig(seed=8, start_ms=START, rate=4.0, incidents=(incident,))
    with ChdbStore(tmp_path_factory.mktemp("drivers") / "chdb", "cxpulse_drivers") as chdb:
        load_history(chdb, config, 3 * HOUR, NOW + HOUR, [FUNNEL])  # an hour on: all closed
        yield chdb


@pytest.fixture(scope="module")
def board() -> dict[str, Any]:
    return to_json(oncall_dashboard(BoardConfig.from_settings(Settings())))


def _run(store: ChdbStore, sql: str, **variables: list[str]) -> list[dict[str, Any]]:
    return store.query(expand(sql, START, END, 60, {**ALL, **variables}))


def test_step_variable_opens_on_the_alerting_step(store: ChdbStore, board: dict[str, Any]) -> None:
    (variable,) = [v for v in board["templating"]["list"] if v["name"] == "dropoff_step"]
    values_sql = variable["query"]["rawSql"]
    assert [r["value"] for r in _run(store, values_sql)] == STEPS[1:]
    alert = {
        "id": "dropoff_rising/self_service/troubleshoot/device=mobile", "rule": "dropoff_rising",
        "state": "firing", "funnel": FUNNEL.name, "step": "troubleshoot",
        "segment": {"device": "mobile"}, "current_rate": 0.8, "baseline_rate": 0.4,
        "window_journeys": 80, "z": 5.0, "started_at": ch_time(NOW - HOUR),
        "resolved_at": None, "silenced_until": None, "updated_at": ch_time(NOW),
    }  # fmt: skip
    store.insert("alerts", [alert])
    values = [r["value"] for r in _run(store, values_sql)]
    assert values == ["troubleshoot", *[s for s in STEPS[1:] if s != "troubleshoot"]]
    store.execute("TRUNCATE TABLE alerts")


@pytest.mark.parametrize(
    ("step", "filters"),
    [("troubleshoot", {}), ("eligible", {}), ("troubleshoot", {"tier": "consumer"})],
)
def test_panel_shows_the_api_top_drivers(
    store: ChdbStore, board: dict[str, Any], step: str, filters: dict[str, str]
) -> None:
    title = f"{driver_panels.TITLE}: {FUNNEL.name}"
    (panel,) = [p for p in board["panels"] if p["title"] == title]
    variables = {"dropoff_step": [step], **{k: [v] for k, v in filters.items()}}
    rows = _run(store, panel["targets"][0]["rawSql"], **variables)
    api = driver_queries.drivers(store, FUNNEL.name, STEPS.index(step), START, END, filters)
    assert api["population"] > 300
    assert len(rows) == min(driver_panels.TOP, len(api["drivers"]))
    assert [r | {"significant": bool(r["significant"])} for r in rows] == api["drivers"][
        : len(rows)
    ]
    if step == "troubleshoot" and not filters:  # the incident's segment leads
        assert (rows[0]["attr"], rows[0]["value"], rows[0]["significant"]) == (
            "device",
            "mobile",
            1,
        )
    if step == "eligible":  # why customers were refused
        assert any(r["kind"] == "eligibility_reason" for r in rows)


def test_a_step_not_in_the_funnel_shows_nothing(store: ChdbStore, board: dict[str, Any]) -> None:
    (panel,) = [p for p in board["panels"] if p["title"].startswith(driver_panels.TITLE)]
    sql = panel["targets"][0]["rawSql"]
    assert _run(store, sql, dropoff_step=["session_started"]) == []
    assert _run(store, sql, dropoff_step=["nope"]) == []
