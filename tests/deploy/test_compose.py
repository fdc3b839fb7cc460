"""docker-compose.yml cannot run here (no Docker engine); check what can be checked statically:
it parses, images are pinned, mounts and provisioning refer to files that exist, and every
service runs a real cxpulse command with real settings."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest
import typer
import yaml

from cxpulse.dashboards.build import CONTAINER_DASHBOARDS
from cxpulse.dashboards.config import PLUGIN_VERSION
from cxpulse.deploy.cli import app
from cxpulse.deploy.kafka.broker import kafka_version
from cxpulse.streams.settings import Settings

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
#: Services without a healthcheck, and why: nothing to probe, or a one-shot job.
UNPROBED = {"migrate": "one-shot", "writer": "serves nothing", "simulator": "demo producer"}
#: Compose-only variables (not cxpulse settings) the services read.
COMPOSE_ONLY = {"CXPULSE_DEMO_RATE"}
#: Environment variables that hold a secret: never given a default in the compose file.
SECRET_NAME = re.compile(r"PASSWORD|KEYS?$|TOKEN|SECRET")
#: ClickHouse's read-only user for Grafana, defined in users.d and mounted into ClickHouse.
READ_ONLY_USER = "grafana"
USERS_XML = REPO / "deploy/clickhouse/users.d/grafana.xml"


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    doc = yaml.safe_load(COMPOSE.read_text())
    assert set(doc["volumes"]) == {"kafka-data", "clickhouse-data", "grafana-data"}
    return dict(doc["services"])


def test_compose_parses_and_pins_images(services: dict[str, Any]) -> None:
    assert set(services) == {"kafka", "clickhouse", "migrate", "worker", "writer", "api",
                             "grafana", "simulator"}  # fmt: skip
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    for name, service in services.items():
        image = service["image"]
        repo, _, tag = image.rpartition(":")
        assert repo, f"{name}: image {image!r} has no tag"
        assert tag not in {"latest", ""}, f"{name}: image {image!r} is not pinned"
        if "build" in service:  # the cxpulse image, built from this checkout
            assert (service["build"], image) == (".", f"cxpulse:{version}"), name
        if name not in UNPROBED:
            assert "healthcheck" in service, f"{name} has no healthcheck"
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown {dependency}"
    # The compose broker is the same Kafka release the local runner and the tests use.
    assert services["kafka"]["image"] == f"apache/kafka:{kafka_version()}"
    assert re.fullmatch(r"grafana/grafana:\d+\.\d+\.\d+", services["grafana"]["image"])
    # Workers scale (`--scale worker=N`): nothing that two replicas could not share.
    assert "ports" not in services["worker"]
    assert "container_name" not in services["worker"]
    assert services["simulator"]["profiles"] == ["demo"]
    assert services["migrate"]["restart"] == "no"


def test_dockerfile_pins_python_and_installs_with_the_constraints() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    (base,) = re.findall(r"^FROM (\S+)$", dockerfile, re.M)
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", base)
    assert "pip install -c deploy/constraints.txt ." in dockerfile
    for folder in re.findall(r"^COPY (\w+) \1$", dockerfile, re.M):
        assert (REPO / folder / "__init__.py").exists(), folder
    packages = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    copied = set(re.findall(r"^COPY (\w+) \1$", dockerfile, re.M))
    assert {d.split("/")[0] for d in packages["package-dir"].values()} == copied


def test_services_run_real_commands_with_real_settings(services: dict[str, Any]) -> None:
    commands = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    settings = {f"CXPULSE_{name.upper()}" for name in Settings.model_fields}
    for name, service in services.items():
        if "build" not in service:
            continue
        command = service["command"]
        text = (
            command[0]
            if service.get("entrypoint") == ["sh", "-c"]
            else "cxpulse " + " ".join(command)
        )
        for invocation in re.findall(r"cxpulse (\w+)", text):
            assert invocation in commands, f"{name}: `cxpulse {invocation}` does not exist"
        for variable in service["environment"]:
            assert variable in settings | COMPOSE_ONLY, f"{name}: {variable} is not a setting"
    worker = services["worker"]
    assert worker["command"] == ["worker", "--metrics-port", "9100"]
    assert "9100/metrics" in " ".join(worker["healthcheck"]["test"])
    assert services["api"]["environment"]["CXPULSE_API_HOST"] == "0.0.0.0"


def test_grafana_mounts_the_generated_provisioning(services: dict[str, Any]) -> None:
    grafana = services["grafana"]
    env = grafana["environment"]
    assert env["GF_PLUGINS_PREINSTALL_SYNC"] == f"grafana-clickhouse-datasource@{PLUGIN_VERSION}"
    mounts = {}
    for volume in grafana["volumes"]:
        source, target, *mode = volume.split(":")
        if source.startswith("./"):
            assert (REPO / source).is_dir(), f"{source} does not exist"
            assert mode == ["ro"], volume
            mounts[target] = REPO / source
    for kind in ("datasources", "dashboards", "alerting"):
        files = list(mounts[f"/etc/grafana/provisioning/{kind}"].glob("*.yaml"))
        assert files, f"nothing to provision in {kind}"
        for path in files:
            assert yaml.safe_load(path.read_text())["apiVersion"] == 1
    provider = yaml.safe_load(
        (mounts["/etc/grafana/provisioning/dashboards"] / "cxpulse.yaml").read_text()
    )["providers"][0]
    assert provider["options"]["path"] == CONTAINER_DASHBOARDS
    home = Path(env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"])
    assert (mounts[CONTAINER_DASHBOARDS] / home.relative_to(CONTAINER_DASHBOARDS)).is_file()
    # The datasource logs in as ClickHouse's read-only user, with the password ClickHouse
    # gives that user (both from the same required compose variable).
    source = (mounts["/etc/grafana/provisioning/datasources"] / "cxpulse.yaml").read_text()
    (datasource,) = yaml.safe_load(source)["datasources"]
    assert datasource["jsonData"]["username"] == READ_ONLY_USER
    assert datasource["secureJsonData"] == {"password": "$GRAFANA_CLICKHOUSE_PASSWORD"}
    clickhouse_env = services["clickhouse"]["environment"]
    assert env["GRAFANA_CLICKHOUSE_PASSWORD"] == clickhouse_env["GRAFANA_CLICKHOUSE_PASSWORD"]
    assert _required(env["GRAFANA_CLICKHOUSE_PASSWORD"]) == "GRAFANA_CLICKHOUSE_PASSWORD"
    assert clickhouse_env["CLICKHOUSE_USER"] != READ_ONLY_USER  # not the user that writes


def _required(value: str) -> str | None:
    """The variable a value is made of when compose must be given it (`${VAR:?message}`)."""
    match = re.fullmatch(r"\$\{(\w+):\?[^}]+\}", value)
    return match.group(1) if match else None


def test_no_secret_ships_with_the_stack(services: dict[str, Any]) -> None:
    """Passwords and keys are required from the environment, never defaulted: a stack started
    without them stops with a message instead of running with a password anyone knows."""
    text = COMPOSE.read_text()
    for known in ("cxpulse-demo-key", "cxpulse:cxpulse@", ":-admin", "PASSWORD: cxpulse"):
        assert known not in text, known
    # No interpolation with a default (`${VAR:-x}` / `${VAR-x}`) for anything secret.
    for name, default in re.findall(r"\$\{(\w+):?-([^}]*)\}", text):
        assert not SECRET_NAME.search(name), f"{name} defaults to {default!r}"
    secrets = {}
    for service_name, service in services.items():
        for variable, value in (service.get("environment") or {}).items():
            value = str(value)
            if SECRET_NAME.search(variable):
                secrets[f"{service_name}.{variable}"] = _required(value)
            userinfo = re.match(r"\w+://([^@/]+)@", value)
            if userinfo:  # a URL with a password: that password is required too
                _, _, password = userinfo.group(1).partition(":")
                secrets[f"{service_name}.{variable} (URL)"] = _required(password)
    assert secrets == {
        "clickhouse.CLICKHOUSE_PASSWORD": "CLICKHOUSE_PASSWORD",
        "clickhouse.GRAFANA_CLICKHOUSE_PASSWORD": "GRAFANA_CLICKHOUSE_PASSWORD",
        "grafana.GF_SECURITY_ADMIN_PASSWORD": "GRAFANA_ADMIN_PASSWORD",
        "grafana.GRAFANA_CLICKHOUSE_PASSWORD": "GRAFANA_CLICKHOUSE_PASSWORD",
        "api.CXPULSE_API_KEYS": "CXPULSE_API_KEYS",
        **{
            f"{name}.CXPULSE_CLICKHOUSE_URL (URL)": "CLICKHOUSE_PASSWORD"
            for name in ("migrate", "worker", "writer", "api", "simulator")
        },
    }
    # The header documents every required variable.
    header = text.split("\nname:", 1)[0]
    for variable in set(secrets.values()):
        assert re.search(rf"^#\s+{variable}\s+required:", header, re.M), variable


def test_grafanas_clickhouse_user_may_only_select(services: dict[str, Any]) -> None:
    clickhouse = services["clickhouse"]
    mounted = {}
    for volume in clickhouse["volumes"]:
        source, target, *mode = volume.split(":")
        if source.startswith("./"):
            assert mode == ["ro"], volume
            mounted[target] = REPO / source
    users_file = mounted["/etc/clickhouse-server/users.d/grafana.xml"]
    assert users_file == USERS_XML
    assert users_file.is_file()
    root = ElementTree.parse(users_file).getroot()
    assert root.tag == "clickhouse"
    (user,) = root.findall(f"users/{READ_ONLY_USER}")
    assert {child.tag for child in user} == {"password", "profile", "quota", "networks", "grants"}
    # The password comes from the container's environment (required by compose), not the file.
    password = user.find("password")
    assert password is not None
    assert not (password.text or "").strip()
    assert password.attrib == {"from_env": "GRAFANA_CLICKHOUSE_PASSWORD"}
    assert "GRAFANA_CLICKHOUSE_PASSWORD" in clickhouse["environment"]
    # Grants: SELECT on the cxpulse database, nothing else (no access management, no roles).
    grants = [q.text.strip() for q in user.findall("grants/query") if q.text]
    assert grants == [f"GRANT SELECT ON {clickhouse['environment']['CLICKHOUSE_DB']}.*"]
    # Its profile is read-only (2: the Grafana plugin sets max_execution_time on each query).
    profile = root.find(f"profiles/{user.findtext('profile')}")
    assert profile is not None
    assert profile.findtext("readonly") == "2"
    assert profile.findtext("allow_ddl") == "0"
