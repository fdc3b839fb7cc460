"""End to end on a real broker: a simulated change and experiment, replayed into a running
worker and store, give exactly the ground truth's impact, comparison and drivers through the API.

`cxpulse simulate` writes three days of history with a change (diagnose drop-off -0.08, two days
ago), a recent change without effect (its impact is still provisional) and an experiment whose
variant B drops off 0.16 more at troubleshoot (about 20 % fewer B journeys complete it) while C
has no effect; `cxpulse replay` sends it, two workers and the store writer process it, the changes
are registered through POST /v1/changes, and every figure of GET impact / compare / drivers
equals the `--ground-truth` file (integers exactly, floats to 1e-9 relative).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson
from fastapi.testclient import TestClient

from cxpulse.api.app import create_api
from cxpulse.api.auth import ApiKeys
from cxpulse.sinks.migrate import migrate
from cxpulse.sinks.store import ChdbStore
from cxpulse.streams.funnels import load_funnels
from cxpulse.streams.settings import Settings
from cxpulse.streams.simulator.clock import parse_ms
from cxpulse.streams.simulator.output import read_jsonl
from cxpulse.streams.simulator.truth_funnels import load_funnels as funnel_specs
from cxpulse.streams.simulator.truth_scenario import impact
from tests.support.truth import assert_same
from tests.support.workers import store_writer, wait_handled, wait_quiet, workers

KEY = "e2e-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
DAY_MS = 86_400_000
TIMES = {"start", "end", "at"}


def _as_truth(got: Any, expected: Any) -> Any:
    """The API's document cut to the ground truth's fields (the API may add more), with its
    times as epoch ms like the truth's after `_times`."""
    if isinstance(expected, Mapping):
        return {k: _as_truth(got[k], v) for k, v in expected.items()}
    if isinstance(expected, list) and isinstance(got, list) and len(got) == len(expected):
        return [_as_truth(g, e) for g, e in zip(got, expected, strict=True)]
    return got


def _times(doc: Any) -> Any:
    """RFC 3339 texts under start/end/at keys as epoch ms (the two sides format them alike only
    up to the offset's spelling)."""
    if isinstance(doc, Mapping):
        return {
            k: parse_ms(v) if k in TIMES and isinstance(v, str) else _times(v)
            for k, v in doc.items()
        }
    if isinstance(doc, list):
        return [_times(v) for v in doc]
    return doc


def _equal(got: Any, expected: Any) -> None:
    assert_same(_times(_as_truth(got, expected)), _times(expected))


def test_simulated_change_and_experiment_equal_the_ground_truth(
    fresh_env: dict[str, str], chdb_store: ChdbStore, tmp_path: Path
) -> None:
    history_file, truth_file = tmp_path / "history.jsonl", tmp_path / "truth.json"
    subprocess.run(
        [sys.executable, "-m", "cxpulse.deploy.cli", "simulate", "--output", str(history_file),
         "--fast", "--start", "-75h", "--count", "30000", "--rate", "0.115", "--seed", "11",
         "--duplicates", "0.02", "--out-of-order", "0.02",
         "--change", "at=-2d,step=diagnose,effect=-0.08",
         "--change", "id=recent,at=-8h,step=troubleshoot,effect=0",
         "--experiment", "attr=variant,values=A:B:C,step=troubleshoot,effect=B:0.16",
         "--impact-window", "1d", "--ground-truth", str(truth_file)],
        env=fresh_env, check=True, capture_output=True,
    )  # fmt: skip
    truth = orjson.loads(truth_file.read_bytes())
    messages = list(read_jsonl(history_file))
    migrate(chdb_store)
    subprocess.run(
        [sys.executable, "-m", "cxpulse.deploy.cli", "replay", str(history_file)],
        env=fresh_env, check=True, capture_output=True,
    )  # fmt: skip
    with (
        store_writer(chdb_store, fresh_env["CXPULSE_KAFKA_BOOTSTRAP"]) as writer,
        workers(fresh_env, tmp_path, 2) as ports,
    ):
        wait_handled(ports, len(messages), tmp_path)
        wait_quiet(writer)
    assert all(j["closed"] for j in truth["journeys"])  # the history ended hours ago

    api = TestClient(
        create_api(chdb_store, load_funnels(), Settings(data_dir=tmp_path), ApiKeys.parse(KEY))
    )
    for change in truth["changes"]:
        created = api.post("/v1/changes", json=change, headers=AUTH)
        assert created.status_code == 201, created.text

    settled, recent = truth["changes"]
    body = api.get(f"/v1/changes/{settled['id']}/impact", params={"window": "1d"}, headers=AUTH)
    assert body.status_code == 200, body.text
    expected = truth["impact"][0]
    assert expected["provisional"] is False
    _equal(body.json(), expected)
    diagnose = expected["funnels"][0]["steps"][1]
    assert diagnose["step"] == "diagnose"
    assert diagnose["significant"]
    assert diagnose["after"]["rate"] > diagnose["before"]["rate"]

    # Provisional: L is the whole minutes since the change as of the API's clock, so the truth is
    # recomputed for that clock (retried if a minute turns during the request).
    for _ in range(3):
        before_ms = time.time_ns() // 1_000_000
        response = api.get(
            f"/v1/changes/{recent['id']}/impact", params={"window": "1d"}, headers=AUTH
        )
        after_ms = time.time_ns() // 1_000_000
        if before_ms // 60_000 == after_ms // 60_000:
            break
    expected = impact(truth["journeys"], recent, funnel_specs(), DAY_MS, before_ms)
    assert expected["provisional"] is True
    _equal(response.json(), expected)

    (compared,) = truth["compare"]
    span = {"start": compared["start"], "end": compared["end"]}
    body = api.get(
        "/v1/funnels/self_service/compare",
        params={"by": "variant", "control": "A", **span},
        headers=AUTH,
    )
    assert body.status_code == 200, body.text
    _equal(body.json(), compared)
    groups = {g["value"]: {s["step"]: s for s in g["steps"]} for g in compared["groups"]}
    worse = groups["B"]["troubleshoot"]
    assert worse["significant"]
    assert -0.3 < worse["relative"] < -0.12
    assert not any(s["significant"] for s in groups["C"].values())
    assert not compared["srm"]["mismatch"]

    assert [d["step"] for d in truth["drivers"]] == ["diagnose", "troubleshoot"]
    for expected in truth["drivers"]:
        params = {"step": expected["step"], "start": expected["start"], "end": expected["end"]}
        body = api.get("/v1/funnels/self_service/drivers", params=params, headers=AUTH)
        assert body.status_code == 200, body.text
        named = [(d["kind"], d["attr"], d["value"]) for d in body.json()["drivers"]]
        assert named == [(d["kind"], d["attr"], d["value"]) for d in expected["drivers"]]
        _equal(body.json(), expected)
    top = truth["drivers"][1]["drivers"][0]
    assert (top["attr"], top["value"], top["significant"]) == ("device", "mobile", True)
