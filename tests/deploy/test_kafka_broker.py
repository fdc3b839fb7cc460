"""The local broker: it really runs, refuses clearly, and leaves no process behind."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from cxpulse.deploy.kafka import BrokerConfig, KafkaBroker, KafkaError, free_port
from cxpulse.deploy.kafka.broker import kafka_version
from tests.conftest import make_broker, shared_libs_dir


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait_dead(pid: int, timeout_s: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.1)
    return False


def test_session_broker_accepts_clients(kafka_broker: KafkaBroker) -> None:
    status = kafka_broker.status()
    assert status["running"] is True
    assert status["accepting_clients"] is True
    assert status["version"] == kafka_version()
    assert kafka_version().startswith("4.")
    assert "Kafka Server started" in (kafka_broker.logs_dir / "server.log").read_text()


def test_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        config = replace(make_broker(tmp_path).config, port=squatter.getsockname()[1])
        broker = KafkaBroker(config)
        with pytest.raises(KafkaError, match=r"port \d+ on 127\.0\.0\.1 .* already in use"):
            broker.start(attached=True)
    assert broker.running_pid() is None


def test_missing_java_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty directory: no java, no mvn
    with pytest.raises(KafkaError, match="'java' was not found on PATH"):
        make_broker(tmp_path / "home").start(attached=True)


def test_missing_maven_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    broker = KafkaBroker(BrokerConfig(home=tmp_path / "fresh"))
    with pytest.raises(KafkaError, match=r"'mvn' was not found on PATH.*Maven"):
        broker.fetch(progress=False)


def test_detached_start_then_stop_leaves_no_process(tmp_path: Path) -> None:
    broker = make_broker(tmp_path)
    broker.start(attached=False)
    pid = broker.running_pid()
    assert pid is not None
    # A second handle (like a later `cxpulse kafka stop`) finds and stops it by its pid file.
    assert KafkaBroker(broker.config).stop() is True
    assert _wait_dead(pid)
    assert not broker.pid_file.exists()
    assert KafkaBroker(broker.config).status()["running"] is False


def test_attached_broker_dies_with_its_parent(tmp_path: Path) -> None:
    """kill -9 of the process that started it must not orphan the JVM."""
    port, controller = free_port(), free_port()
    script = f"""
import sys, time
from pathlib import Path
from cxpulse.deploy.kafka import BrokerConfig, KafkaBroker
b = KafkaBroker(BrokerConfig(home=Path({str(tmp_path)!r}), port={port},
                controller_port={controller}, libs_dir=Path({str(shared_libs_dir())!r})))
b.start(attached=True)
print(b.running_pid(), flush=True)
time.sleep(600)
"""
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    broker_pid = int(parent.stdout.readline())
    assert _alive(broker_pid)
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    assert _wait_dead(broker_pid), "the broker outlived the process that started it"


def test_cluster_ids_never_look_like_options() -> None:
    from cxpulse.deploy.kafka.broker import new_cluster_id

    ids = [new_cluster_id() for _ in range(2000)]
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)
    assert len(set(ids)) == 2000
