"""docker-compose.yml cannot run here (no Docker engine); check what can be checked statically."""

from __future__ import annotations

from pathlib import Path

import yaml

from cxpulse.deploy.kafka.broker import kafka_version

COMPOSE = Path(__file__).resolve().parents[2] / "docker-compose.yml"


def test_compose_parses_and_pins_images() -> None:
    doc = yaml.safe_load(COMPOSE.read_text())
    services = doc["services"]
    assert {"kafka", "clickhouse"} <= set(services)
    for name, service in services.items():
        image = service["image"]
        repo, _, tag = image.rpartition(":")
        assert repo, f"{name}: image {image!r} has no tag"
        assert tag not in {"latest", ""}, f"{name}: image {image!r} is not pinned"
        assert "healthcheck" in service, f"{name} has no healthcheck"
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
    # The compose broker is the same Kafka release the local runner and the tests use.
    assert services["kafka"]["image"] == f"apache/kafka:{kafka_version()}"
