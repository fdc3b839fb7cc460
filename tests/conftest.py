"""Session-scoped real services: one Apache Kafka broker for the whole run, chdb per test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from cxpulse.deploy.kafka import BrokerConfig, KafkaBroker, free_port
from cxpulse.sinks.store import ChdbStore, ServerStore, Store
from cxpulse.streams.settings import Settings
from tests.support.chdb_http import ChdbHttpServer

REPO = Path(__file__).resolve().parents[1]


def shared_libs_dir() -> Path:
    """The jars `make setup` fetched; every test broker runs from the same copy."""
    settings = Settings(data_dir=REPO / "var")
    return KafkaBroker(BrokerConfig(home=settings.kafka_home)).libs_dir


def make_broker(home: Path) -> KafkaBroker:
    return KafkaBroker(
        BrokerConfig(
            home=home, port=free_port(), controller_port=free_port(), libs_dir=shared_libs_dir()
        )
    )


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    broker = make_broker(tmp_path_factory.mktemp("kafka"))
    broker.start(attached=True)
    yield broker
    broker.stop()


@pytest.fixture
def fresh_bootstrap(tmp_path: Path) -> Iterator[str]:
    """A broker of its own (about 3 s to start) for tests that count everything on the topics."""
    broker = make_broker(tmp_path / "kafka")
    broker.start(attached=True)
    yield broker.config.bootstrap
    broker.stop()


@pytest.fixture(scope="session")
def bootstrap(kafka_broker: KafkaBroker) -> str:
    return kafka_broker.config.bootstrap


@pytest.fixture
def chdb_store(tmp_path: Path) -> Iterator[ChdbStore]:
    """A fresh embedded store; chdb admits one open database directory per process at a time."""
    store = ChdbStore(tmp_path / "chdb", "cxpulse_test")
    yield store
    store.close()


@pytest.fixture(params=["chdb", "clickhouse-server"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """Each backend in turn: embedded chdb, and clickhouse-connect over ClickHouse's HTTP API."""
    if request.param == "chdb":
        with ChdbStore(tmp_path / "chdb", "cxpulse_test") as embedded:
            yield embedded
        return
    with (
        ChdbHttpServer(tmp_path / "server") as server,
        ServerStore(server.url, "cxpulse_test") as remote,
    ):
        yield remote


@pytest.fixture
def cli_env(tmp_path: Path, bootstrap: str) -> dict[str, str]:
    """Environment for cxpulse subprocesses: their own data dir, the session broker."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CXPULSE_")}
    env.update({"CXPULSE_DATA_DIR": str(tmp_path / "var"), "CXPULSE_KAFKA_BOOTSTRAP": bootstrap})
    return env


@pytest.fixture
def fresh_env(cli_env: dict[str, str], fresh_bootstrap: str) -> dict[str, str]:
    """Environment for worker processes on the test's own broker, its topics created."""
    from cxpulse.streams import topics

    topics.ensure_topics(fresh_bootstrap, 4)
    return {**cli_env, "CXPULSE_KAFKA_BOOTSTRAP": fresh_bootstrap}
