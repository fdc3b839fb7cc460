"""`cxpulse report` reads the store through the query module and prints the figures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from cxpulse.sinks.store import ChdbStore
from tests.streams.test_contact_kpis import T0, Fixture, S


def test_report_prints_the_stored_kpis(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    fixture = Fixture()
    fixture.queued_call("c1", T0, "cust-1")
    fixture.cc("c1", T0 + 20 * S, "cc.answered", "cust-1", agent_id="a", team="blue")
    fixture.queued_call("c2", T0 + 3600 * S, "cust-2")
    with ChdbStore(data_dir / "chdb", "cxpulse") as store:
        fixture.store(store)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CXPULSE_")}
    env.update(CXPULSE_DATA_DIR=str(data_dir), CXPULSE_CURRENCY="EUR")
    result = subprocess.run(
        [sys.executable, "-m", "cxpulse.deploy.cli", "report", "--since", "60d", "--json"],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    report = json.loads(result.stdout)
    assert report["kpis"]["counts"]["contacts"] == 2
    assert report["kpis"]["counts"]["answered"] == 1
    assert report["kpis"]["service_level"] == 1.0  # 9 s wait: within SL; c2 still waiting
    assert report["containment"]["currency"] == "EUR"
    assert [f["funnel"] for f in report["funnels"]] == ["self_service"]
    text = subprocess.run(
        [sys.executable, "-m", "cxpulse.deploy.cli", "report", "--since", "60d"],
        env=env, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "contacts 2  service level 100.0 %" in text
    assert "containment - of 0 closed journeys" in text
