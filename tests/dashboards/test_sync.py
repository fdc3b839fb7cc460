"""`cxpulse grafana sync` against a real local HTTP server that answers like Grafana's HTTP API
and records every request: the paths, methods and payloads are Grafana's, and a second sync
writes nothing."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from cxpulse.dashboards.build import Documents, documents
from cxpulse.dashboards.config import BoardConfig
from cxpulse.dashboards.sync import SYNC_MESSAGE, GrafanaSync, connect
from cxpulse.deploy.cli import app
from cxpulse.streams.settings import Settings
from tests.support.fake_grafana import DEFAULT_GROUP_INTERVAL, FakeGrafana

TOKEN = "glsa_test_token"
CLICKHOUSE = "http://cxpulse:secret@clickhouse:8123"
DASHBOARDS = ["cxpulse-funnel-self_service", "cxpulse-contact-center", "cxpulse-oncall"]
RULES = ["cxpulse-dropoff-self_service", "cxpulse-service-level", "cxpulse-abandonment"]


@pytest.fixture
def grafana() -> Iterator[FakeGrafana]:
    with FakeGrafana() as server:
        yield server


@pytest.fixture(scope="module")
def docs() -> Documents:
    return documents(BoardConfig.from_settings(Settings()), CLICKHOUSE, "cxpulse")


def _reads(uid_paths: list[str]) -> list[tuple[str, str]]:
    return [("GET", p) for p in uid_paths]


READS = _reads(
    ["/api/folders/cxpulse", "/api/datasources/uid/cxpulse-clickhouse"]
    + [f"/api/dashboards/uid/{d}" for d in DASHBOARDS]
    + [f"/api/v1/provisioning/alert-rules/{r}" for r in RULES]
    + ["/api/v1/provisioning/folder/cxpulse/rule-groups/cxpulse"]
)


def test_first_sync_creates_everything_and_a_second_changes_nothing(
    grafana: FakeGrafana, docs: Documents
) -> None:
    syncer = GrafanaSync(connect(grafana.url, TOKEN), docs)

    planned = syncer.plan()  # the dry run: reads only
    assert [str(c) for c in planned] == [
        "create folder cxpulse (cxpulse)",
        "create datasource cxpulse-clickhouse (cxpulse ClickHouse)",
        "create dashboard cxpulse-funnel-self_service (Self-service: self_service)",
        "create dashboard cxpulse-contact-center (Contact center)",
        "create dashboard cxpulse-oncall (On-call)",
        "create alert rule cxpulse-dropoff-self_service (Drop-off rising: self_service)",
        "create alert rule cxpulse-service-level (Service level breach)",
        "create alert rule cxpulse-abandonment (Abandonment spike)",
        "update rule group cxpulse (every 30 s)",
    ]
    assert [(r.method, r.path) for r in grafana.state.requests] == READS
    assert grafana.writes() == []

    grafana.state.requests.clear()
    assert len(syncer.run()) == 9
    writes = grafana.writes()
    assert [(r.method, r.path) for r in writes] == [
        ("POST", "/api/folders"),
        ("POST", "/api/datasources"),
        *[("POST", "/api/dashboards/db")] * 3,
        *[("POST", "/api/v1/provisioning/alert-rules")] * 3,
        ("PUT", "/api/v1/provisioning/folder/cxpulse/rule-groups/cxpulse"),
    ]
    assert {r.authorization for r in grafana.state.requests} == {f"Bearer {TOKEN}"}
    assert writes[0].body == {"uid": "cxpulse", "title": "cxpulse"}
    assert writes[1].body == docs.datasource
    assert writes[1].body["type"] == "grafana-clickhouse-datasource"
    assert writes[1].body["jsonData"] == {
        "host": "clickhouse", "port": 8123, "protocol": "http", "secure": False,
        "username": "cxpulse", "defaultDatabase": "cxpulse",
    }  # fmt: skip
    assert writes[1].body["secureJsonData"] == {"password": "secret"}
    for request, board in zip(writes[2:5], docs.dashboards, strict=True):
        assert request.body == {"dashboard": {**board, "id": None}, "folderUid": "cxpulse",
                                "overwrite": True, "message": SYNC_MESSAGE}  # fmt: skip
        assert board["uid"] in DASHBOARDS
    for request, rule in zip(writes[5:8], docs.rules, strict=True):
        assert request.body == rule
        assert rule["folderUID"] == "cxpulse"
        assert rule["ruleGroup"] == "cxpulse"
        assert rule["orgID"] == 1
        assert rule["for"] == "30s"
        assert rule["condition"] == "B"
    group = writes[8].body
    assert group["interval"] == 30
    assert [r["uid"] for r in group["rules"]] == RULES
    assert grafana.state.groups[("cxpulse", "cxpulse")]["interval"] == 30

    grafana.state.requests.clear()
    assert syncer.run() == []
    assert [(r.method, r.path) for r in grafana.state.requests] == READS


def test_sync_updates_only_what_drifted(grafana: FakeGrafana, docs: Documents) -> None:
    syncer = GrafanaSync(connect(grafana.url, TOKEN), docs)
    syncer.run()
    state = grafana.state
    state.folders["cxpulse"]["title"] = "renamed by hand"
    state.dashboards["cxpulse-oncall"]["dashboard"]["panels"][0]["title"] = "edited in the UI"
    state.dashboards["cxpulse-contact-center"]["meta"]["folderUid"] = "elsewhere"
    state.rules["cxpulse-abandonment"]["for"] = "5m"
    state.datasources["cxpulse-clickhouse"]["secureJsonFields"] = {}  # password lost
    state.groups[("cxpulse", "cxpulse")]["interval"] = DEFAULT_GROUP_INTERVAL
    state.requests.clear()

    changes = [str(c) for c in syncer.run()]
    assert changes == [
        "update folder cxpulse (cxpulse)",
        "update datasource cxpulse-clickhouse (cxpulse ClickHouse)",
        "update dashboard cxpulse-contact-center (Contact center)",
        "update dashboard cxpulse-oncall (On-call)",
        "update alert rule cxpulse-abandonment (Abandonment spike)",
        "update rule group cxpulse (every 30 s)",
    ]
    assert [(r.method, r.path) for r in grafana.writes()] == [
        ("PUT", "/api/folders/cxpulse"),
        ("PUT", "/api/datasources/uid/cxpulse-clickhouse"),
        ("POST", "/api/dashboards/db"),
        ("POST", "/api/dashboards/db"),
        ("PUT", "/api/v1/provisioning/alert-rules/cxpulse-abandonment"),
        ("PUT", "/api/v1/provisioning/folder/cxpulse/rule-groups/cxpulse"),
    ]
    assert grafana.writes()[0].body == {"title": "cxpulse", "overwrite": True}
    assert state.dashboards["cxpulse-oncall"]["dashboard"]["version"] == 2
    assert state.rules["cxpulse-abandonment"]["for"] == "30s"
    state.requests.clear()
    assert syncer.run() == []
    assert grafana.writes() == []


def test_cli_dry_run_prints_the_changes_and_writes_nothing(grafana: FakeGrafana) -> None:
    env = {"CXPULSE_GRAFANA_URL": grafana.url, "CXPULSE_GRAFANA_TOKEN": TOKEN,
           "CXPULSE_CLICKHOUSE_URL": CLICKHOUSE,
           "CXPULSE_GRAFANA_CLICKHOUSE_URL": None}  # fmt: skip
    result = CliRunner().invoke(app, ["grafana", "sync", "--dry-run"], env=env)
    assert result.exit_code == 0, result.output
    assert "would create dashboard cxpulse-oncall (On-call)" in result.output
    assert "9 changes (dry run)." in result.output
    assert grafana.writes() == []

    result = CliRunner().invoke(app, ["grafana", "sync"], env=env)
    assert result.exit_code == 0, result.output
    assert len(grafana.writes()) == 9
    result = CliRunner().invoke(app, ["grafana", "sync"], env=env)
    assert result.output.strip() == "0 changes."


def test_cli_refuses_without_a_clickhouse_server_grafana_can_reach(grafana: FakeGrafana) -> None:
    env = {"CXPULSE_GRAFANA_URL": grafana.url, "CXPULSE_CLICKHOUSE_URL": None,
           "CXPULSE_GRAFANA_CLICKHOUSE_URL": None}  # fmt: skip
    result = CliRunner().invoke(app, ["grafana", "sync"], env=env)
    assert result.exit_code == 1
    assert "CXPULSE_GRAFANA_CLICKHOUSE_URL" in result.output
    assert grafana.state.requests == []
