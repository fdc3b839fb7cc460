"""/v1/changes: create, read, list, remove; every refusal as problem+json; and the changes an
alert names in GET /v1/alerts."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cxpulse.api.app import create_api
from cxpulse.api.auth import ApiKeys
from cxpulse.api.cache import ResultCache
from cxpulse.api.change_models import cache_key
from cxpulse.sinks import alerts as alert_rows
from cxpulse.sinks.migrate import migrate
from cxpulse.sinks.store import ChdbStore
from cxpulse.streams.funnels import load_funnels
from cxpulse.streams.settings import Settings

KEY = "changes-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
COPY: dict[str, Any] = {
    "id": "copy-v2",
    "title": "New eligibility copy",
    "at": "2026-11-20T10:00:00Z",
    "funnel": "self_service",
    "step": "eligible",
    "filters": {"device": "mobile"},
    "notes": "A/B winner",
}
STORED = {**COPY, "at": "2026-11-20T10:00:00+00:00"}


@pytest.fixture
def client(chdb_store: ChdbStore) -> TestClient:
    migrate(chdb_store)
    settings = Settings(data_dir=Path("var"))
    return TestClient(create_api(chdb_store, load_funnels(), settings, ApiKeys.parse(KEY)))


def _iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat()


def test_create_list_get_and_remove(client: TestClient) -> None:
    created = client.post("/v1/changes", json=COPY, headers=AUTH)
    assert created.status_code == 201
    assert created.headers["location"] == "/v1/changes/copy-v2"
    assert created.json() == STORED
    release = {"id": "release-14", "title": "Portal 1.4", "at": "2026-11-20T09:00:00+01:00"}
    assert client.post("/v1/changes", json=release, headers=AUTH).status_code == 201
    release_stored = {**release, "at": "2026-11-20T08:00:00+00:00", "funnel": None,
                      "step": None, "filters": {}, "notes": ""}  # fmt: skip
    listed = client.get("/v1/changes", headers=AUTH)
    assert listed.json() == {"changes": [release_stored, STORED]}  # by time
    assert client.get("/v1/changes/copy-v2", headers=AUTH).json() == STORED
    assert client.get("/v1/changes", params={"funnel": "self_service"}, headers=AUTH).json() == {
        "changes": [release_stored, STORED]
    }
    removed = client.delete("/v1/changes/copy-v2", headers=AUTH)
    assert (removed.status_code, removed.content) == (204, b"")
    assert client.get("/v1/changes", headers=AUTH).json() == {"changes": [release_stored]}
    again = client.post("/v1/changes", json={**COPY, "title": "Second try"}, headers=AUTH)
    assert again.status_code == 201
    assert client.get("/v1/changes/copy-v2", headers=AUTH).json()["title"] == "Second try"


def test_at_defaults_to_now_and_may_be_up_to_5_minutes_ahead(client: TestClient) -> None:
    before = time.time()
    body = client.post("/v1/changes", json={"id": "now", "title": "Now"}, headers=AUTH).json()
    after = time.time()
    at = datetime.fromisoformat(body["at"]).timestamp()
    assert before - 0.001 <= at <= after
    soon = {"id": "soon", "title": "Soon", "at": _iso(time.time() + 290)}
    assert client.post("/v1/changes", json=soon, headers=AUTH).status_code == 201


def _problem(response: Any, status: int, detail: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["detail"] == detail


def test_a_duplicate_id_is_a_409_and_an_unknown_one_a_404(client: TestClient) -> None:
    client.post("/v1/changes", json=COPY, headers=AUTH)
    duplicate = client.post("/v1/changes", json={**COPY, "title": "Other"}, headers=AUTH)
    _problem(duplicate, 409, "a change 'copy-v2' exists; remove it first")
    assert client.get("/v1/changes/copy-v2", headers=AUTH).json() == STORED  # unchanged
    _problem(client.delete("/v1/changes/nope", headers=AUTH), 404, "no change 'nope'")
    _problem(client.get("/v1/changes/nope", headers=AUTH), 404, "no change 'nope'")


@pytest.mark.parametrize(
    ("change", "status", "detail"),
    [
        ({"at": "yesterday"}, 400, "at is not an RFC 3339 time: 'yesterday'"),
        ({"at": "2026-11-20T10:00:00"}, 400, "at needs a UTC offset, e.g. 2026-11-20T10:00:00Z"),
        ({"funnel": "nope", "step": None}, 422, "no funnel named 'nope'"),
        ({"step": "nope"}, 422, "funnel 'self_service' has no step 'nope'"),
        ({"funnel": None}, 422, "a step needs its funnel"),
    ],
)
def test_invalid_changes_are_refused_with_a_clear_detail(
    client: TestClient, change: dict[str, Any], status: int, detail: str
) -> None:
    _problem(client.post("/v1/changes", json={**COPY, **change}, headers=AUTH), status, detail)
    assert client.get("/v1/changes", headers=AUTH).json() == {"changes": []}


def test_a_change_more_than_5_minutes_ahead_is_refused(client: TestClient) -> None:
    late = {**COPY, "at": _iso(time.time() + 310)}
    response = client.post("/v1/changes", json=late, headers=AUTH)
    _problem(response, 422, "at is more than 5 minutes in the future")


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"id": "Copy!"}, "id", "String should match pattern '^[a-z0-9_-]{1,64}$'"),
        ({"id": "x" * 65}, "id", "String should match pattern '^[a-z0-9_-]{1,64}$'"),
        ({"title": ""}, "title", "String should have at least 1 character"),
        ({"title": "t" * 201}, "title", "String should have at most 200 characters"),
        ({"notes": "n" * 2001}, "notes", "String should have at most 2000 characters"),
        ({"filters": {"1device": "x"}}, "filters",
         "Value error, '1device' is not a segment attribute name"),
        ({"filters": {"device": "v" * 201}}, "filters",
         "Value error, the value of 'device' is over 200 characters"),
        ({"filters": {"device": ""}}, "filters", "Value error, the value of 'device' is empty"),
        ({"filters": {"device": "\udfff"}}, "filters",
         "Value error, the value of 'device' is not valid Unicode text"),
        ({"filters": {"device\n": "x"}}, "filters",
         "Value error, 'device\\n' is not a segment attribute name"),
        ({"filters": {f"a{i}": "x" for i in range(21)}}, "filters",
         "Dictionary should have at most 20 items after validation, not more"),
        ({"colour": "red"}, "colour", "Extra inputs are not permitted"),
    ],
)  # fmt: skip
def test_malformed_changes_are_a_422_naming_the_field(
    client: TestClient, change: dict[str, Any], field: str, message: str
) -> None:
    # json.dumps escapes a lone surrogate as \\udfff, as an attacker's client would send it.
    body = json.dumps({**COPY, **change})
    headers = {**AUTH, "Content-Type": "application/json"}
    response = client.post("/v1/changes", content=body, headers=headers)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"] == [{"loc": ["body", field], "msg": message}]


def test_bad_ids_and_funnels_in_the_path_and_query(client: TestClient) -> None:
    bad = client.delete("/v1/changes/Not-Valid", headers=AUTH)
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["loc"] == ["path", "change_id"]
    unknown = client.get("/v1/changes", params={"funnel": "nope"}, headers=AUTH)
    _problem(unknown, 400, "no funnel named 'nope'; see GET /v1/funnels")


def test_every_change_route_needs_a_key(client: TestClient) -> None:
    requests = [
        client.post("/v1/changes", json=COPY),
        client.get("/v1/changes"),
        client.get("/v1/changes/copy-v2"),
        client.delete("/v1/changes/copy-v2"),
        client.post("/v1/changes", json=COPY, headers={"Authorization": "Bearer wrong"}),
    ]
    assert [r.status_code for r in requests] == [401] * 5
    assert client.get("/v1/changes", headers=AUTH).json() == {"changes": []}


def test_alerts_show_the_changes_they_name(client: TestClient, chdb_store: ChdbStore) -> None:
    named = [{"id": "copy-v2", "title": "New eligibility copy", "at": "2026-11-20T10:00:00+00:00"}]
    alert = {
        "id": "dropoff_rising/self_service/eligible", "rule": "dropoff_rising",
        "state": "firing", "funnel": "self_service", "step": "eligible", "segment": {},
        "current_rate": 0.5, "baseline_rate": 0.25, "window_journeys": 120, "z": 4.2,
        "started_ms": 1_795_000_000_000, "resolved_ms": None, "recent_changes": named,
        "top_drivers": [],
    }  # fmt: skip
    alert_rows.record(chdb_store, [alert], 1_795_000_000_000)
    (shown,) = client.get("/v1/alerts", headers=AUTH).json()["alerts"]
    assert shown["recent_changes"] == named


def test_a_forgotten_key_is_computed_anew_and_a_stale_computation_not_kept() -> None:
    cache: ResultCache[str] = ResultCache(60)
    assert cache.get("k", lambda: "old") == "old"
    assert cache.get("k", lambda: "new") == "old"
    cache.forget("k")
    assert cache.get("k", lambda: "new") == "new"
    started, release = threading.Event(), threading.Event()

    def slow() -> str:
        started.set()
        release.wait(10)
        return "read before the write"

    reader = threading.Thread(target=cache.get, args=("j", slow))
    reader.start()
    assert started.wait(10)
    cache.forget("j")  # a write while the read runs
    release.set()
    reader.join(10)
    assert cache.get("j", lambda: "read after the write") == "read after the write"


def test_writes_drop_the_change_from_the_result_cache(chdb_store: ChdbStore) -> None:
    migrate(chdb_store)
    settings = Settings(data_dir=Path("var"), api_cache_seconds=5)
    app = create_api(chdb_store, load_funnels(), settings, ApiKeys.parse(KEY))
    client, cache = TestClient(app), app.state.context.cache
    lookups = []

    def lookup() -> str:
        lookups.append(1)
        return f"lookup {len(lookups)}"

    for request in (
        lambda: client.post("/v1/changes", json=COPY, headers=AUTH),
        lambda: client.delete("/v1/changes/copy-v2", headers=AUTH),
    ):
        cache.get(cache_key("copy-v2"), lookup)
        assert cache.get(cache_key("copy-v2"), lookup) == f"lookup {len(lookups)}"  # cached
        assert request().status_code in (201, 204)
        before = len(lookups)
        assert cache.get(cache_key("copy-v2"), lookup) == f"lookup {before + 1}"  # read anew
