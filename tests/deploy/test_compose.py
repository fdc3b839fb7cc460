"""docker-compose.yml cannot run here (no Docker engine); check what can be checked statically:
it parses, images are pinned, mounts and provisioning refer to files that exist, and every
service runs a real cxpulse command with real settings."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from cxpulse.dashboards.build import CONTAINER_DASHBOARDS
from cxpulse.dashboards.config import PLUGIN_VERSION
from cxpulse.deploy.cli import app
from cxpulse.deploy.kafka.broker import kafka_version
from cxpulse.deploy.settings import Settings

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
#: Services without a healthcheck, and why: nothing to probe, or a one-shot job.
UNPROBED = {"migrate": "one-shot", "writer": "serves nothing", "simulator": "demo producer"}
#: Compose-only variables (not cxpulse settings) the services read.
COMPOSE_ONLY = {"CXPULSE_DEMO_RATE"}


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
    # The datasource's password comes from Grafana's environment: ClickHouse's own.
    source = (mounts["/etc/grafana/provisioning/datasources"] / "cxpulse.yaml").read_text()
    assert "password: $CLICKHOUSE_PASSWORD" in source
    assert (
        env["CLICKHOUSE_PASSWORD"] == services["clickhouse"]["environment"]["CLICKHOUSE_PASSWORD"]
    )
