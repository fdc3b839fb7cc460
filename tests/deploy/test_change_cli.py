"""`cxpulse change add|list|rm` against a real metrics API (the CLI never opens the store), the
API's problem detail as the error, and `cxpulse watch` showing the latest changes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.deploy.test_watch import KEY, api_url  # noqa: F401 - the running API fixture


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CXPULSE_")}
    env.update(CXPULSE_DATA_DIR=str(tmp_path), CXPULSE_API_KEYS=KEY, COLUMNS="200")
    return env


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cxpulse.deploy.cli", *args],
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_add_list_and_remove_through_the_api(api_url: str, tmp_path: Path) -> None:  # noqa: F811
    added = _cli(
        tmp_path, "change", "add", "--url", api_url, "--id", "copy-v2", "--title", "New copy",
        "--at", "2026-11-20T10:00:00Z", "--funnel", "self_service", "--step", "eligible",
        "--filter", "device=mobile", "--filter", "tier=business", "--notes", "A/B winner",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert added.stdout == "added change copy-v2 at 2026-11-20T10:00:00+00:00\n"
    listed = _cli(tmp_path, "change", "list", "--url", api_url, "--json")
    assert json.loads(listed.stdout) == [
        {"id": "copy-v2", "title": "New copy", "at": "2026-11-20T10:00:00+00:00",
         "funnel": "self_service", "step": "eligible",
         "filters": {"device": "mobile", "tier": "business"}, "notes": "A/B winner"},
    ]  # fmt: skip
    table = _cli(tmp_path, "change", "list", "--url", api_url)
    assert "1 changes" in table.stdout
    assert "device=mobile, tier=business" in table.stdout
    removed = _cli(tmp_path, "change", "rm", "copy-v2", "--url", api_url)
    assert (removed.returncode, removed.stdout) == (0, "removed change copy-v2\n")
    assert json.loads(_cli(tmp_path, "change", "list", "--url", api_url, "--json").stdout) == []


def test_errors_are_the_apis_problem_detail(api_url: str, tmp_path: Path) -> None:  # noqa: F811
    cases = [
        (("add", "--id", "x", "--title", "X", "--funnel", "nope"),
         "error: Invalid change (422): no funnel named 'nope'"),
        (("add", "--id", "Bad!", "--title", "X"),
         "error: Invalid request (422): see errors; id: String should match pattern "
         "'^[a-z0-9_-]{1,64}$'"),
        (("add", "--id", "x", "--title", "X", "--filter", "device"),
         "error: --filter 'device' is not attr=value"),
        (("rm", "nope"), "error: Not found (404): no change 'nope'"),
        # The whole id is the path segment (unquoted, '#x' would be cut off: DELETE .../nope).
        (("rm", "nope#x"), "error: Invalid request (422): see errors; path.change_id: String "
         "should match pattern '^[a-z0-9_-]{1,64}$'"),
    ]  # fmt: skip
    for args, message in cases:
        result = _cli(tmp_path, "change", *args, "--url", api_url)
        assert result.returncode == 1, args
        assert result.stderr.replace("\n", "") == message, args


def test_watch_shows_the_latest_changes(api_url: str, tmp_path: Path) -> None:  # noqa: F811
    for index in range(6):
        at = f"2026-11-20T1{index}:00:00Z"
        args = ["--id", f"c{index}", "--title", f"Change {index}", "--at", at]
        result = _cli(
            tmp_path, "change", "add", "--url", api_url, *args, "--funnel", "self_service"
        )
        assert result.returncode == 0, result.stderr
    proc = subprocess.Popen(
        [sys.executable, "-m", "cxpulse.deploy.cli", "watch", "--url", api_url, "--every", "0.5"],
        env=_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(5)
    proc.send_signal(signal.SIGINT)
    out, errors = proc.communicate(timeout=30)
    assert proc.returncode == 0, errors
    assert "2026-11-20T15:00:00+00:00  c5: Change 5 (self_service)" in out
    assert "2026-11-20T11:00:00+00:00  c1: Change 1 (self_service)" in out
    assert "c0: Change 0" not in out  # the last 5 only
