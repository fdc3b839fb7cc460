"""GET /v1/funnels/{name}/drivers over hand-made snapshot rows: the figures counted by hand
(tests/support/drivers.py), the significant_only filter, segment filters and the problems."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cxpulse.api.app import create_api
from cxpulse.api.auth import ApiKeys
from cxpulse.schemas.times import iso_time
from cxpulse.sinks.migrate import migrate
from cxpulse.sinks.store import ChdbStore
from cxpulse.streams.funnels import FunnelSpec, StepSpec
from cxpulse.streams.settings import Settings
from tests.support import drivers as data

AUTH = {"Authorization": "Bearer drivers-key"}
FUNNEL = FunnelSpec("f", [StepSpec(f"s{k}", "portal.session_started") for k in range(3)])
URL = "/v1/funnels/f/drivers"
RANGE = {"start": iso_time(data.START), "end": iso_time(data.END)}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    with ChdbStore(tmp_path_factory.mktemp("drivers") / "chdb", "cxpulse_drivers") as store:
        migrate(store)
        store.insert("journey_funnels", data.rows())
        settings = Settings(data_dir=Path("var"), api_max_range_days=40)
        yield TestClient(create_api(store, [FUNNEL], settings, ApiKeys.parse("drivers-key")))


def _get(client: TestClient, **params: str) -> Any:
    return client.get(URL, params={**RANGE, **params}, headers=AUTH)


def test_drivers_of_a_step_are_the_figures_counted_by_hand(client: TestClient) -> None:
    body = _get(client, step="s2").json()
    freshness = body.pop("freshness_seconds")
    assert freshness is None  # no freshness rows stored
    assert body == {"funnel": "f", "step": "s2", **RANGE, **data.expected(data.population())}


def test_significant_only_and_segment_filters(client: TestClient) -> None:
    body = _get(client, step="s2", significant_only="true").json()
    assert [(d["attr"], d["value"]) for d in body["drivers"]] == [
        ("entry", "email"),
        ("device", "mobile"),
    ]
    assert body["population"] == 130
    desktop = [j for j in data.population() if j.attrs["device"] == "desktop"]
    filtered = _get(client, step="s2", device="desktop").json()
    assert filtered["drivers"] == data.expected(desktop)["drivers"]
    assert (filtered["population"], filtered["dropped"]) == (60, 6)


@pytest.mark.parametrize(
    ("path", "params", "status", "detail"),
    [
        ("/v1/funnels/nope/drivers", {"step": "s2"}, 404, "no funnel named 'nope'"),
        (URL, {"step": "s9"}, 422, "f has no step 's9'"),
        (URL, {"step": "s0"}, 422, "'s0' is the first step"),
        (URL, {}, 422, "see errors"),  # step is required
        (URL, {"step": "s2", "end": RANGE["start"]}, 400, "end must be after start"),
        (URL, {"step": "s2", "bad name": "x"}, 400, "is not a segment attribute name"),
    ],
)
def test_problems(
    client: TestClient, path: str, params: dict[str, str], status: int, detail: str
) -> None:
    response = client.get(path, params={**RANGE, **params}, headers=AUTH)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    assert detail in response.json()["detail"]
    assert client.get(URL, params={**RANGE, "step": "s2"}).status_code == 401
