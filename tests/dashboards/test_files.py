"""The committed Grafana files are what the code generates, and they are well-formed."""

from __future__ import annotations

import json

import pytest
import yaml

from cxpulse.dashboards.build import GRAFANA_DIR, provisioning_files
from cxpulse.dashboards.config import BoardConfig
from cxpulse.streams.settings import Settings


def test_committed_files_are_current(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in Settings.model_fields:
        monkeypatch.delenv(f"CXPULSE_{name.upper()}", raising=False)
    expected = provisioning_files(BoardConfig.from_settings(Settings()))
    committed = {
        str(p.relative_to(GRAFANA_DIR)): p.read_text()
        for p in sorted(GRAFANA_DIR.rglob("*"))
        if p.is_file()
    }
    assert sorted(committed) == sorted(expected), "run `cxpulse grafana build`"
    for relative, content in expected.items():
        assert committed[relative] == content, f"{relative} is stale: run `cxpulse grafana build`"


def test_files_parse_and_refer_to_one_datasource() -> None:
    uids = set()
    for path in sorted((GRAFANA_DIR / "dashboards").glob("*.json")):
        board = json.loads(path.read_text())
        assert path.stem == board["uid"]
        assert len(board["uid"]) <= 40
        uids.add(board["uid"])
        for panel in board["panels"]:
            assert panel["datasource"]["uid"] == "cxpulse-clickhouse"
            assert [t["datasource"]["uid"] for t in panel["targets"]] == ["cxpulse-clickhouse"]
    assert uids == {"cxpulse-funnel-self_service", "cxpulse-contact-center", "cxpulse-oncall"}
    provisioning = GRAFANA_DIR / "provisioning"
    (source,) = yaml.safe_load((provisioning / "datasources/cxpulse.yaml").read_text())[
        "datasources"
    ]
    assert (source["uid"], source["type"]) == (
        "cxpulse-clickhouse",
        "grafana-clickhouse-datasource",
    )
    (group,) = yaml.safe_load((provisioning / "alerting/cxpulse.yaml").read_text())["groups"]
    assert (group["folder"], group["interval"]) == ("cxpulse", "30s")
    for rule in group["rules"]:
        assert rule["data"][0]["datasourceUid"] == "cxpulse-clickhouse"
        assert rule["annotations"]["__dashboardUid__"] in uids
    (provider,) = yaml.safe_load((provisioning / "dashboards/cxpulse.yaml").read_text())[
        "providers"
    ]
    assert provider["folderUid"] == "cxpulse"
    assert provider["type"] == "file"
