"""The Change impact and Experiment comparison panels, run on chdb as Grafana sends them, give
the API's figures for the same change, window, attribute, control and filters."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cxpulse.api.app import create_api
from cxpulse.api.auth import ApiKeys
from cxpulse.dashboards.build import Documents, documents
from cxpulse.dashboards.config import BoardConfig
from cxpulse.schemas.vocabulary import SEGMENT_ATTRS
from cxpulse.sinks.changes import Change, add_change
from cxpulse.sinks.migrate import migrate
from cxpulse.sinks.store import ChdbStore
from cxpulse.streams.funnels import load_funnels
from cxpulse.streams.settings import Settings
from tests.api import test_compare, test_impact
from tests.support.funnel_rows import store_journeys
from tests.support.grafana import expand

KEY = "panel-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
UID = "cxpulse-funnel-self_service"
AT = test_impact.AT
SETTINGS = Settings(data_dir=Path("var"), assisted_cost=6.5, self_service_cost=0.25)
STATS = ("diff", "relative", "z", "p_value")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChdbStore]:
    with ChdbStore(tmp_path_factory.mktemp("panels") / "chdb", "cxpulse_panels") as chdb:
        migrate(chdb)
        store_journeys(chdb, [j for j in test_impact.JOURNEYS if j.funnel == "self_service"])
        store_journeys(chdb, test_compare.JOURNEYS)
        add_change(chdb, Change("all-funnels", "New wording", AT))
        add_change(chdb, Change("mobile", "Mobile layout", AT, "self_service", None,
                                {"device": "mobile"}))  # fmt: skip
        add_change(chdb, Change("elsewhere", "Another funnel", AT, "checkout"))
        yield chdb


@pytest.fixture(scope="module")
def client(store: ChdbStore) -> TestClient:
    return TestClient(create_api(store, load_funnels(), SETTINGS, ApiKeys.parse(KEY)))


@pytest.fixture(scope="module")
def docs() -> Documents:
    return documents(BoardConfig.from_settings(SETTINGS), "http://u:p@clickhouse:8123", "cxpulse")


def _board(docs: Documents) -> dict[str, Any]:
    return next(b for b in docs.dashboards if b["uid"] == UID)


def run(store: ChdbStore, docs: Documents, title: str, start: int, end: int,
        **variables: list[str]) -> list[dict[str, Any]]:  # fmt: skip
    panel = next(p for p in _board(docs)["panels"] if p["title"] == title)
    values = {**dict.fromkeys(SEGMENT_ATTRS), "breakdown": ["device"], **variables}
    return store.query(expand(panel["targets"][0]["rawSql"], start, end, 60, values))


def _variable(store: ChdbStore, docs: Documents, name: str, **variables: list[str]) -> list[str]:
    variable = next(v for v in _board(docs)["templating"]["list"] if v["name"] == name)
    sql = expand(variable["query"]["rawSql"], test_compare.START, test_compare.END, 60, variables)
    return [r["value"] for r in store.query(sql)]


def _close(got: float | None, want: float | None) -> bool:
    return got == want if got is None or want is None else got == pytest.approx(want, rel=1e-9)


@pytest.mark.parametrize(("change", "window"), [("all-funnels", "86400"), ("mobile", "604800")])
def test_change_impact_panels_equal_the_api(
    store: ChdbStore, docs: Documents, client: TestClient, change: str, window: str
) -> None:
    api = client.get(f"/v1/changes/{change}/impact", params={"window": f"{window}s"},
                     headers=AUTH).json()  # fmt: skip
    [block] = api["funnels"]
    assert api["provisional"] is False  # the wall clock is far past the change in both
    rows = run(store, docs, "Change impact", 0, 1, change=[change], window=[window])
    expected = [*block["steps"], *block["outcomes"]]
    assert [r["measure"] for r in rows] == [e.get("step", e.get("outcome")) for e in expected]
    for row, want in zip(rows, expected, strict=True):
        count = "reached" if "step" in want else "count"
        assert row["window_seconds"] == api["window_seconds"]
        assert (row["before_journeys"], row["after_journeys"]) == (
            block["before"]["journeys"], block["after"]["journeys"])  # fmt: skip
        assert (row["before_count"], row["after_count"]) == (
            want["before"][count], want["after"][count])  # fmt: skip
        assert _close(row["before_rate"], want["before"]["rate"])
        assert _close(row["after_rate"], want["after"]["rate"])
        for name in STATS:
            assert _close(row[name], want[name]), name
        interval = None if row["ci95_low"] is None else [row["ci95_low"], row["ci95_high"]]
        assert (interval is None) is (want["ci95"] is None)
        if interval is not None:
            assert interval == pytest.approx(want["ci95"], rel=1e-9)
        assert bool(row["significant"]) is want["significant"]
    assert block["before"]["journeys"] > 100
    [cost] = run(store, docs, "Change impact: cost", 0, 1, change=[change], window=[window])
    for name in ("escalations_added", "self_served_added", "cost_delta"):
        assert _close(cost[name], block["cost"][name]), name
    assert block["cost"]["cost_delta"] is not None


def test_the_change_variable_lists_the_funnels_changes(store: ChdbStore, docs: Documents) -> None:
    assert _variable(store, docs, "change") == ["all-funnels", "mobile"]


@pytest.mark.parametrize("filters", [{}, {"device": "mobile"}])
def test_experiment_panel_equals_the_api(
    store: ChdbStore, docs: Documents, client: TestClient, filters: dict[str, str]
) -> None:
    api = client.get("/v1/funnels/self_service/compare", headers=AUTH,
                     params={**test_compare.RANGE, "by": "variant", "control": "B",
                             **filters}).json()  # fmt: skip
    rows = run(store, docs, "Experiment comparison", test_compare.START, test_compare.END,
               variant_by=["variant"], control=["B"],
               **{k: [v] for k, v in filters.items()})  # fmt: skip
    expected = [(g, s) for g in api["groups"] for s in g["steps"]]
    assert [(r["value"], r["step"]) for r in rows] == [(g["value"], s["step"]) for g, s in expected]
    assert len(api["groups"]) == 3
    for row, (group, step) in zip(rows, expected, strict=True):
        assert (row["journeys"], row["reached"]) == (group["journeys"], step["reached"])
        assert _close(row["rate"], step["rate"])
        for name in (*STATS, "p_adjusted"):
            assert _close(row[name], step[name]), name
        interval = None if row["ci95_low"] is None else [row["ci95_low"], row["ci95_high"]]
        assert interval == (None if step["ci95"] is None else pytest.approx(step["ci95"], rel=1e-9))
        assert row["significant"] == (None if step["significant"] is None
                                      else int(step["significant"]))  # fmt: skip


def test_experiment_variables_offer_attributes_and_groups(
    store: ChdbStore, docs: Documents
) -> None:
    assert {"variant", "device"} <= set(_variable(store, docs, "variant_by"))
    assert _variable(store, docs, "control", variant_by=["variant"]) == ["A", "B", "C"]
