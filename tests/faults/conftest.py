"""Fixtures of the fault tests: a broker of the test's own that the test may stop and start, and
the environment of the worker processes it kills."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from cxpulse.deploy.kafka import KafkaBroker
from cxpulse.streams import topics
from tests.conftest import make_broker

PARTITIONS = 4


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[KafkaBroker]:
    """A broker of this test only (data and ports survive its stop() and start())."""
    own = make_broker(tmp_path / "kafka")
    own.start(attached=True)
    yield own
    own.stop()


@pytest.fixture
def bootstrap(broker: KafkaBroker) -> str:
    """Overrides the session broker's: every client of a fault test talks to its own broker."""
    topics.ensure_topics(broker.config.bootstrap, PARTITIONS)
    return broker.config.bootstrap


@pytest.fixture
def worker_env(tmp_path: Path, bootstrap: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CXPULSE_")}
    env.update(
        {
            "CXPULSE_DATA_DIR": str(tmp_path / "var"),
            "CXPULSE_KAFKA_BOOTSTRAP": bootstrap,
            "CXPULSE_TOPIC_PARTITIONS": str(PARTITIONS),
        }
    )
    return env
