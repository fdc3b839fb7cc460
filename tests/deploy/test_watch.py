"""`cxpulse watch` against a real metrics API: its view holds the figures and no library's log
lines (httpx logs every request at INFO, which pushed the live view down and repeated it)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cxpulse.api.app import create_api
from cxpulse.api.auth import ApiKeys
from cxpulse.api.server import BackgroundApi
from cxpulse.deploy.kafka import free_port
from cxpulse.sinks.migrate import migrate
from cxpulse.sinks.store import ChdbStore
from cxpulse.streams.funnels import load_funnels
from cxpulse.streams.settings import Settings

KEY = "watch-test-key"


@pytest.fixture
def api_url(tmp_path: Path) -> Iterator[str]:
    settings = Settings(data_dir=tmp_path, api_host="127.0.0.1", api_port=free_port())
    with ChdbStore(tmp_path / "chdb", settings.clickhouse_database) as store:
        migrate(store)
        app = create_api(store, load_funnels(), settings, ApiKeys.parse(KEY))
        api = BackgroundApi(app, settings)
        api.start()
        try:
            yield api.url
        finally:
            api.stop()


def test_watch_shows_the_figures_without_library_logs(api_url: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CXPULSE_")}
    env.update(CXPULSE_DATA_DIR=str(tmp_path), CXPULSE_API_KEYS=KEY, CXPULSE_LOG_LEVEL="debug")
    command = ["watch", "--url", api_url, "--every", "0.5"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "cxpulse.deploy.cli", *command],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(6)  # startup, then several refreshes
    proc.send_signal(signal.SIGINT)  # what Ctrl-C does
    out, errors = proc.communicate(timeout=30)
    assert proc.returncode == 0, errors
    assert "self_service: 0 journeys, last 1h" in out
    assert "containment - of 0 closed journeys" in out
    assert "no alert firing" in out
    for text in (out, errors):
        assert "HTTP Request" not in text
        assert "httpx" not in text
        assert "httpcore" not in text
