"""`cxpulse up` (what `make run` runs): starts everything, stores journeys, stops cleanly."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from cxpulse.deploy.kafka import free_port
from tests.conftest import shared_libs_dir
from tests.deploy.test_kafka_broker import _alive, _wait_dead


def _get(url: str, key: str) -> dict:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def _api_serves_the_figures(stack: dict, data_dir: Path) -> bool:
    key = (data_dir / "api_key").read_text().strip()
    body = _get(f"{stack['api_url']}/v1/funnels/self_service/summary", key)
    return body["funnel"] == "self_service" and body["journeys"] >= 0


def _history_closes_journeys(stack: dict, data_dir: Path) -> bool:
    """The history a first start sends closes journeys soon: live traffic alone closes none for
    its first half hour."""
    key = (data_dir / "api_key").read_text().strip()
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if _get(f"{stack['api_url']}/v1/self-service/containment", key)["closed"] > 0:
            return True
        time.sleep(2)
    return False


#: Input that once stopped `up` for good ("the worker exited with code 70"), and its reasons.
HOSTILE = {
    b'{"event_id": "h1", "schema_version": 1, "type": "portal.step_viewed", "occurred_at": '
    b'"2026-01-01T00:00:00Z", "session_id": "s", "data": {"step": "x"}, "note": "\xff"}': (
        "invalid_utf8"
    ),
    b'{"event_id": "h2\xc0\xaf"}': "invalid_utf8",
    b'{"event_id": "h3\\ud800"}': "invalid_json",
    b'{"pad": "' + b"x" * 70_000 + b'"}': "too_large",
}


def _survives_hostile_input(bootstrap: str, proc: subprocess.Popen[str]) -> None:
    """The hostile messages are dead-lettered with their reasons and the stack stays up."""
    from cxpulse.streams import topics
    from cxpulse.streams.dlq import read_dead_letters
    from tests.support.kafka import produce_raw

    produce_raw(bootstrap, topics.PORTAL.name, 0, list(HOSTILE))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        got = {d.original: d.reason for d in read_dead_letters(bootstrap) if d.original in HOSTILE}
        if got == HOSTILE:
            break
        time.sleep(1)
    assert got == HOSTILE
    time.sleep(2)  # a worker that died on them would be reported by now
    assert proc.poll() is None, "cxpulse up stopped on hostile input"


def test_up_runs_the_stack_and_ctrl_c_leaves_nothing(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    # Reuse the fetched jars instead of copying them into this data dir.
    (data_dir / "kafka").mkdir(parents=True)
    (data_dir / "kafka" / shared_libs_dir().name).symlink_to(shared_libs_dir())
    env = {k: v for k, v in os.environ.items() if not k.startswith("CXPULSE_")}
    env.update(
        CXPULSE_DATA_DIR=str(data_dir),
        CXPULSE_KAFKA_PORT=str(free_port()),
        CXPULSE_KAFKA_CONTROLLER_PORT=str(free_port()),
        CXPULSE_WRITER_FLUSH_SECONDS="0.5",
        CXPULSE_API_PORT=str(free_port()),
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "cxpulse.deploy.cli", "up", "--rate", "20", "--history", "1h"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    output: list[str] = []
    stack: dict = {}
    api_checked = history_checked = False
    deadline = time.monotonic() + 120
    try:
        for line in proc.stdout:
            output.append(line)
            if not stack and (data_dir / "stack.json").exists():
                stack = json.loads((data_dir / "stack.json").read_text())
            stored = re.search(r"journeys=(\d+)", line)
            if line.startswith("rows stored:") and stored and int(stored.group(1)) > 0:
                api_checked = _api_serves_the_figures(stack, data_dir)
                history_checked = _history_closes_journeys(stack, data_dir)
                _survives_hostile_input(stack["kafka_bootstrap"], proc)
                break
            assert time.monotonic() < deadline, "".join(output)
        else:
            raise AssertionError("up exited early:\n" + "".join(output))
    finally:
        proc.send_signal(signal.SIGINT)  # what Ctrl-C does
        rest, _ = proc.communicate(timeout=90)
        output.append(rest)
    text = "".join(output)
    assert proc.returncode == 0, text
    assert api_checked, text
    assert history_checked, text
    assert "cxpulse is running" in text
    assert "1 h of history first (a first start), then live traffic" in text
    assert "Try next:\n  cxpulse watch" in text
    [(key, url)] = re.findall(r"^  curl -H 'Authorization: Bearer (\S+)' '(\S+)'$", text, re.M)
    assert key == (data_dir / "api_key").read_text().strip()
    assert url == f"{stack['api_url']}/v1/funnels/self_service/summary"
    assert "no process left running" in text
    pids = [stack["broker_pid"], *stack["worker_pids"]]
    assert all(isinstance(pid, int) for pid in pids)
    assert all(_wait_dead(pid, 10) for pid in pids), [p for p in pids if _alive(p)]
    assert not (data_dir / "stack.json").exists()
