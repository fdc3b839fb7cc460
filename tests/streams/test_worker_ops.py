"""Operating a worker: its Prometheus metrics, JSON logs, a SIGTERM that finishes the work in
hand and commits it (so a restart re-reads nothing), and a refusal to start on partition counts
its state was not built with."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import orjson
import pytest
from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient, NewPartitions
from prometheus_client.parser import text_string_to_metric_families

from cxpulse.streams import topics
from cxpulse.streams.simulator.config import SimConfig
from cxpulse.streams.simulator.noise import NoiseConfig
from cxpulse.streams.simulator.output import send_to_kafka
from cxpulse.streams.simulator.run import Plan
from cxpulse.streams.topics import PartitionLayoutError
from tests.support.kafka import produce_raw
from tests.support.workers import wait_handled, workers


def _committed(admin: AdminClient, group: str, topic: str, partitions: int) -> list[int]:
    request = ConsumerGroupTopicPartitions(
        group, [TopicPartition(topic, p) for p in range(partitions)]
    )
    result = admin.list_consumer_group_offsets([request])[group].result()
    return [tp.offset for tp in sorted(result.topic_partitions, key=lambda tp: tp.partition)]


def _ends(admin: AdminClient, bootstrap: str, topic: str, partitions: int) -> list[int]:
    from confluent_kafka import Consumer

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "probe"})
    try:
        return [consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in range(partitions)]  # fmt: skip
    finally:
        consumer.close()


def _samples(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}  # fmt: skip


def test_metrics_json_logs_and_a_graceful_sigterm(
    fresh_env: dict[str, str], fresh_bootstrap: str, tmp_path: Path
) -> None:
    now = time.time_ns() // 1_000_000
    noise = NoiseConfig(malformed=0.02)
    messages = list(Plan(SimConfig(seed=5, start_ms=now - 3_600_000, rate=2.0), noise, 3000)
                    .messages())  # fmt: skip
    for _ in send_to_kafka(messages, fresh_bootstrap):
        pass
    env = {**fresh_env, "CXPULSE_LOG_FORMAT": "json"}
    with workers(env, tmp_path, 1) as ports:
        wait_handled(ports, len(messages), tmp_path)
        # Ingest reports its lag every 5 s; the journey agent, which may still be joining its
        # group on a loaded machine when ingest is done, reports it per message handled.
        deadline = time.monotonic() + 120
        while True:
            samples = _samples(ports[0])
            lags = {labels: v for (n, labels), v in samples.items()
                    if n == "cxpulse_consumer_lag_messages"}  # fmt: skip
            stages = {dict(labels)["stage"] for labels in lags}
            if stages == {"ingest", "journeys"} and not any(lags.values()):
                break
            assert time.monotonic() < deadline, lags  # everything is consumed, and said so
            time.sleep(0.5)
    # `workers` sent SIGTERM and asserted exit code 0.
    flat = {name: value for (name, _labels), value in samples.items()}
    assert flat["cxpulse_flush_seconds_count"] > 0
    assert flat["cxpulse_open_journeys"] >= 0
    assert flat["cxpulse_watermark_lag_seconds"] > 0
    dead = sum(v for (n, _), v in samples.items() if n == "cxpulse_dead_letters_total")
    assert dead == sum(1 for m in messages if m.kind == "malformed")
    # Every log line of the worker is one JSON object.
    lines = [line for line in (tmp_path / "worker-0.log").read_text().splitlines() if line]
    assert lines
    parsed = [orjson.loads(line) for line in lines if line.startswith("{")]
    assert len(parsed) == len(lines), [line for line in lines if not line.startswith("{")][:5]
    assert all({"levelname", "name", "message", "timestamp"} <= set(p) for p in parsed)
    # After SIGTERM, what was handled is committed: a restart would re-read nothing.
    admin = AdminClient({"bootstrap.servers": fresh_bootstrap})
    for group, topic in (("cxpulse-ingest", topics.PORTAL.name),
                         ("cxpulse-ingest", topics.CONTACT.name),
                         ("cxpulse", topics.KEYED.name)):  # fmt: skip
        ends = _ends(admin, fresh_bootstrap, topic, 4)
        assert _committed(admin, group, topic, 4) == ends, (group, topic)


def test_a_sigterm_while_starting_exits_cleanly(fresh_env: dict[str, str], tmp_path: Path) -> None:
    """An orchestrator may stop a worker that is still starting (before faust handles signals)."""
    log = tmp_path / "worker.log"
    command = [sys.executable, "-m", "cxpulse.deploy.cli", "worker", "--metrics-port", "0"]
    with log.open("wb") as out:
        proc = subprocess.Popen(command, env=fresh_env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while b"metrics on" not in log.read_bytes():  # faust is not running yet
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.01)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, log.read_text()
    finally:
        proc.kill()


def test_a_worker_refuses_partition_counts_its_state_was_not_built_with(
    fresh_env: dict[str, str], fresh_bootstrap: str, tmp_path: Path
) -> None:
    """Partitions added to cx.keyed.v1 would route keys away from their state: the worker exits
    non-zero before ingesting anything, naming the topics, the counts and the procedure; so does
    adding them to the state topic as well (the count the state was built with is recorded)."""
    produce_raw(fresh_bootstrap, topics.KEYED.name, 0, [b"[]"])  # the state has begun
    admin = AdminClient({"bootstrap.servers": fresh_bootstrap})
    admin.create_partitions([NewPartitions(topics.KEYED.name, 6)])[topics.KEYED.name].result()
    log = tmp_path / "worker.log"
    command = [sys.executable, "-m", "cxpulse.deploy.cli", "worker"]
    with log.open("wb") as out:
        code = subprocess.run(command, env=fresh_env, stdout=out, stderr=subprocess.STDOUT,
                              timeout=120).returncode  # fmt: skip
    text = log.read_text()
    assert code != 0, text
    assert "built for 4 partitions, but cx.keyed.v1 has 6 and cx.state.units.v2 has 4" in text
    assert "README.md" in text
    assert "Traceback" not in text
    # Nothing was ingested with the new count.
    committed = _committed(admin, "cxpulse-ingest", topics.PORTAL.name, 4)
    assert all(offset < 0 for offset in committed), committed
    # Growing the state topic to match does not make the state right.
    admin.create_partitions([NewPartitions(topics.STATE.name, 6)])[topics.STATE.name].result()
    time.sleep(1)  # metadata of the new partitions
    refused = r"built for 4 partitions, but cx\.keyed\.v1 has 6"
    with pytest.raises(PartitionLayoutError, match=refused):
        topics.check_layout(fresh_bootstrap)
