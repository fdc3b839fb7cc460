"""Everything Grafana needs, as documents: dashboards, datasource, alert rules; and the committed
files under `dashboards/grafana/` that the compose stack's Grafana provisions from.

`cxpulse grafana build` rewrites those files; `tests/dashboards` fails while they are stale.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from cxpulse.dashboards import boards, rules
from cxpulse.dashboards.config import DATASOURCE_TYPE, BoardConfig

GRAFANA_DIR = Path(__file__).resolve().parent / "grafana"
#: Where the compose stack mounts the dashboards' JSON inside the Grafana container.
CONTAINER_DASHBOARDS = "/var/lib/grafana/dashboards/cxpulse"
#: The compose stack's ClickHouse as Grafana reaches it: as the read-only `grafana` user
#: (deploy/clickhouse/users.d/grafana.xml), password from Grafana's environment.
COMPOSE_CLICKHOUSE = "http://grafana:$GRAFANA_CLICKHOUSE_PASSWORD@clickhouse:8123"


@dataclass(frozen=True)
class Documents:
    """What `grafana sync` writes and the provisioning files hold."""

    folder: dict[str, str]
    datasource: dict[str, Any]
    dashboards: list[dict[str, Any]]
    rules: list[dict[str, Any]]  # provisioning API format (ProvisionedAlertRule)
    rule_interval_seconds: int


def datasource(config: BoardConfig, clickhouse_url: str, database: str) -> dict[str, Any]:
    """The ClickHouse datasource (HTTP protocol, as cxpulse itself talks to ClickHouse)."""
    url = urlsplit(clickhouse_url)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise ValueError(f"not an http(s) ClickHouse URL: {clickhouse_url!r}")
    secure = url.scheme == "https"
    document: dict[str, Any] = {
        "uid": config.datasource_uid,
        "name": "cxpulse ClickHouse",
        "type": DATASOURCE_TYPE,
        "access": "proxy",
        "isDefault": False,
        "jsonData": {
            "host": url.hostname,
            "port": url.port or (8443 if secure else 8123),
            "protocol": "http",
            "secure": secure,
            "username": url.username or "default",
            "defaultDatabase": database,
        },
    }
    if url.password:
        document["secureJsonData"] = {"password": url.password}
    return document


def documents(config: BoardConfig, clickhouse_url: str, database: str) -> Documents:
    return Documents(
        folder={"uid": config.folder_uid, "title": config.folder_title},
        datasource=datasource(config, clickhouse_url, database),
        dashboards=[boards.to_json(b) for b in boards.all_dashboards(config)],
        rules=[_plain(r.build()) for r in rules.rules(config)],
        rule_interval_seconds=config.evaluation_seconds,
    )


def _plain(model: Any) -> dict[str, Any]:
    from grafana_foundation_sdk.cog.encoder import JSONEncoder

    plain: dict[str, Any] = json.loads(json.dumps(model, cls=JSONEncoder))
    return plain


def provisioning_files(config: BoardConfig, database: str = "cxpulse") -> dict[str, str]:
    """Relative path under `dashboards/grafana/` -> content, for the compose stack."""
    docs = documents(config, COMPOSE_CLICKHOUSE, database)
    files = {
        f"dashboards/{d['uid']}.json": json.dumps(d, indent=2, ensure_ascii=False) + "\n"
        for d in docs.dashboards
    }
    source = {k: v for k, v in docs.datasource.items() if k != "isDefault"}
    files["provisioning/datasources/cxpulse.yaml"] = _yaml(
        "The cxpulse ClickHouse datasource (fixed uid: dashboards and alert rules refer to it).",
        {"apiVersion": 1, "datasources": [{**source, "orgId": 1, "editable": False}]},
    )
    files["provisioning/dashboards/cxpulse.yaml"] = _yaml(
        "The cxpulse dashboards, read from the JSON files mounted at " + CONTAINER_DASHBOARDS + ".",
        {
            "apiVersion": 1,
            "providers": [
                {
                    "name": "cxpulse",
                    "orgId": 1,
                    "folder": config.folder_title,
                    "folderUid": config.folder_uid,
                    "type": "file",
                    "disableDeletion": True,
                    "allowUiUpdates": False,
                    "updateIntervalSeconds": 30,
                    "options": {"path": CONTAINER_DASHBOARDS},
                }
            ],
        },
    )
    files["provisioning/alerting/cxpulse.yaml"] = _yaml(
        "Grafana-managed alert rules mirroring the cxpulse worker's rules (dashboards/rules.py).",
        {
            "apiVersion": 1,
            "groups": [
                {
                    "orgId": 1,
                    "name": rules.RULE_GROUP,
                    "folder": config.folder_title,
                    "interval": f"{docs.rule_interval_seconds}s",
                    "rules": [_file_rule(r) for r in docs.rules],
                }
            ],
        },
    )
    return files


def _file_rule(rule: dict[str, Any]) -> dict[str, Any]:
    """A provisioning-API rule in the file-provisioning format (group fields live on the group)."""
    keep = (
        "uid",
        "title",
        "condition",
        "data",
        "noDataState",
        "execErrState",
        "for",
        "labels",
        "annotations",
    )
    return {k: rule[k] for k in keep if k in rule} | {"isPaused": False}


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (the SQL) as literal blocks, so the files read like the SQL."""


def _string(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_Dumper.add_representer(str, _string)


def _yaml(comment: str, document: dict[str, Any]) -> str:
    header = (
        f"# Generated by `cxpulse grafana build` (dashboards/build.py); do not edit.\n# {comment}\n"
    )
    body = yaml.dump(document, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)
    return header + body


def write(config: BoardConfig, root: Path = GRAFANA_DIR) -> list[Path]:
    """Write the provisioning files; returns those that changed."""
    changed = []
    for relative, content in provisioning_files(config).items():
        path = root / relative
        if not path.exists() or path.read_text() != content:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
            changed.append(path)
    return changed
