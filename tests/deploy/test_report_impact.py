"""`cxpulse report --change ID`: the change's impact from the store, as the API gives it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from cxpulse.sinks.changes import Change, add_change
from cxpulse.sinks.migrate import migrate
from cxpulse.sinks.store import ChdbStore
from tests.support.funnel_rows import Journey, store_journeys

AT = 1_795_000_020_000
DAY = 86_400_000


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cxpulse.deploy.cli", "report", *args], env=env,
                          capture_output=True, text=True)  # fmt: skip


def test_report_prints_a_changes_impact(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    # Before: 40 journeys, 10 escalated and 10 self-served; after: 50, 5 escalated, 25 self-served.
    journeys = [
        Journey("self_service", f"b{i}", AT - DAY + i * 1000, 7, 7 if i < 10 else 2,
                "self_served" if i < 10 else "escalated" if i < 20 else "abandoned")
        for i in range(40)
    ] + [
        Journey("self_service", f"a{i}", AT + i * 1000, 7, 7 if i < 25 else 3,
                "self_served" if i < 25 else "escalated" if i < 30 else "abandoned")
        for i in range(50)
    ]  # fmt: skip
    with ChdbStore(data_dir / "chdb", "cxpulse") as store:
        migrate(store)
        store_journeys(store, journeys)
        add_change(store, Change("wording", "Clearer wording", AT, "self_service"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CXPULSE_")}
    env.update(CXPULSE_DATA_DIR=str(data_dir), CXPULSE_CURRENCY="EUR")

    result = _cli(env, "--change", "wording", "--window", "1d", "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert (doc["change"], doc["window_seconds"], doc["provisional"]) == ("wording", 86_400, False)
    [block] = doc["funnels"]
    assert (block["before"]["journeys"], block["after"]["journeys"]) == (40, 50)
    escalated = block["outcomes"][1]
    assert (escalated["outcome"], escalated["before"]["count"], escalated["after"]["count"]) == (
        "escalated", 10, 5)  # fmt: skip
    assert escalated["diff"] == 5 / 50 - 10 / 40
    # (0.1 - 0.25) x 50 = -7.5 escalations, (0.5 - 0.25) x 50 = +12.5 self-served.
    assert block["cost"] == {"escalations_added": -7.5, "self_served_added": 12.5,
                             "cost_delta": -7.5 * 7.0 + 12.5 * 0.1, "currency": "EUR"}  # fmt: skip

    text = _cli(env, "--change", "wording", "--window", "1d")
    assert text.returncode == 0, text.stderr
    assert "wording (Clearer wording) on self_service, final" in text.stdout
    assert "added: escalations -7.5, self-served +12.5; cost to serve -51.25 EUR" in text.stdout

    unknown = _cli(env, "--change", "nope")
    assert unknown.returncode == 1
    assert "no change 'nope' in the store" in unknown.stderr
    bad = _cli(env, "--change", "wording", "--window", "0s")
    assert (bad.returncode, "window must be longer than 0" in bad.stderr) == (1, True)
