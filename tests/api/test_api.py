"""The metrics API over simulated traffic: values equal the stored figures, auth, problems."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from cxpulse.api.app import create_api
from cxpulse.api.auth import ApiKeys, hash_key
from cxpulse.api.cache import ResultCache
from cxpulse.sinks import contact_queries, containment_queries, funnel_queries
from cxpulse.sinks.migrate import migrate
from cxpulse.sinks.store import ChdbStore, Row, Store
from cxpulse.streams.funnels import load_funnels
from cxpulse.streams.settings import Settings
from tests.streams.test_stage import _run, _traffic
from tests.support.rows import insert_sent_rows

KEY = "test-key-1"
OTHER = "test-key-2"
NOW = time.time_ns() // 1_000_000
HOUR = 3_600_000


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChdbStore]:
    raws, _ = _traffic(8000, seed=33)
    out = _run(raws, batch=2000)
    with ChdbStore(tmp_path_factory.mktemp("api") / "chdb", "cxpulse_api") as chdb:
        migrate(chdb)
        insert_sent_rows(chdb, out.messages)
        yield chdb


@pytest.fixture(scope="module")
def client(store: ChdbStore) -> TestClient:
    settings = Settings(data_dir=Path("var"), api_max_range_days=40, api_max_points=500)
    keys = ApiKeys.parse(f"{KEY},sha256:{hash_key(OTHER)}")
    return TestClient(create_api(store, load_funnels(), settings, keys))


AUTH = {"Authorization": f"Bearer {KEY}"}
# The simulated history of tests.streams.test_stage: 30 h before its fixed "now".
START, END = "2026-11-22T00:00:00+00:00", "2026-11-24T00:00:00+00:00"


def _ms(text: str) -> int:
    from datetime import datetime

    return int(datetime.fromisoformat(text).timestamp() * 1000)


def test_health_is_open_and_v1_needs_a_key(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    missing = client.get("/v1/funnels")
    assert missing.status_code == 401
    assert missing.headers["content-type"] == "application/problem+json"
    assert missing.headers["www-authenticate"] == "Bearer"
    assert missing.json()["status"] == 401
    wrong = client.get("/v1/funnels", headers={"Authorization": "Bearer nope"})
    assert (wrong.status_code, wrong.json()["title"]) == (401, "Unauthorized")  # RFC 6750
    assert wrong.headers["content-type"] == "application/problem+json"
    assert wrong.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    hashed = client.get("/v1/funnels", headers={"Authorization": f"Bearer {OTHER}"})
    assert hashed.status_code == 200  # configured only as its sha256
    assert client.get("/metrics").status_code == 200


def test_funnel_summary_equals_the_stored_figures(client: TestClient, store: ChdbStore) -> None:
    steps = [s.name for s in load_funnels()[0].steps]
    body = client.get("/v1/funnels/self_service/summary", params={"start": START, "end": END,
                      "device": "mobile"}, headers=AUTH).json()  # fmt: skip
    expected = funnel_queries.funnel_summary(store, "self_service", steps, _ms(START), _ms(END),
                                      {"device": "mobile"})  # fmt: skip
    assert body["journeys"] == expected["journeys"] > 0
    assert body["outcomes"] == expected["outcomes"]
    assert body["steps"] == expected["steps"]
    assert set(body["steps"][0]) == {
        "step", "reached", "conversion_from_previous", "conversion_from_start", "dropped",
        "escalated", "abandoned", "median_seconds_to_reach",
    }  # fmt: skip
    assert (body["funnel"], body["start"], body["end"]) == ("self_service", START, END)
    assert isinstance(body["freshness_seconds"], float)


def test_timeseries_breakdown_kpis_containment_freshness(
    client: TestClient, store: ChdbStore
) -> None:
    window = {"start": START, "end": END}
    series = client.get("/v1/funnels/self_service/timeseries",
                        params={**window, "interval": "1h", "step": "troubleshoot"},
                        headers=AUTH).json()  # fmt: skip
    total = client.get("/v1/funnels/self_service/summary", params=window, headers=AUTH).json()
    assert sum(p["journeys"] for p in series["points"]) == total["journeys"]
    assert sum(p["reached"] for p in series["points"]) == total["steps"][3]["reached"]
    by = client.get("/v1/funnels/self_service/breakdown", params={**window, "by": "tier"},
                    headers=AUTH).json()  # fmt: skip
    assert sum(v["journeys"] for v in by["values"]) == total["journeys"]
    kpis = client.get("/v1/contact-center/kpis", params={**window, "channel": "voice",
                      "interval": "6h"}, headers=AUTH).json()  # fmt: skip
    [expected] = contact_queries.contact_kpis(store, _ms(START), _ms(END), {"channel": "voice"})
    assert {k: kpis[k] for k in expected} == expected
    assert sum(p["counts"]["contacts"] for p in kpis["series"]) == kpis["counts"]["contacts"] > 0
    containment = client.get("/v1/self-service/containment", params=window, headers=AUTH).json()
    [expected] = containment_queries.containment(store, _ms(START), _ms(END))
    assert {k: containment[k] for k in expected} == expected
    assert containment["currency"] == "USD"
    fresh = client.get("/v1/freshness", headers=AUTH).json()
    assert {p["partition"] for p in fresh["partitions"]} == {0, 1, 2, 3}


@pytest.mark.parametrize(
    ("path", "params", "status", "says"),
    [
        ("/v1/funnels/nope/summary", {}, 404, "no funnel named"),
        ("/v1/funnels/self_service/summary", {"start": "yesterday"}, 400, "RFC 3339"),
        ("/v1/funnels/self_service/summary", {"start": "2026-11-01T00:00:00"}, 400, "UTC offset"),
        ("/v1/funnels/self_service/summary", {"start": END, "end": START}, 400, "after start"),
        ("/v1/funnels/self_service/summary", {"start": "2026-01-01T00:00:00Z"}, 400, "at most 40"),
        ("/v1/funnels/self_service/summary", {"bad name!": "x"}, 400, "segment attribute"),
        ("/v1/funnels/self_service/timeseries", {"interval": "30s"}, 400, "whole minutes"),
        ("/v1/funnels/self_service/timeseries", {"interval": "1m"}, 400, "at most 500"),
        ("/v1/funnels/self_service/timeseries", {"step": "nope"}, 400, "no step"),
        ("/v1/funnels/self_service/breakdown", {}, 422, "see errors"),
        ("/v1/contact-center/kpis", {"interval": "soon"}, 400, "not a duration"),
        ("/v1/contact-center/kpis", {"channel": "fax"}, 422, "see errors"),
    ],
)  # fmt: skip
def test_bad_requests_get_problem_details(
    client: TestClient, path: str, params: dict[str, str], status: int, says: str
) -> None:
    response = client.get(path, params=params, headers=AUTH)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == status
    assert says in (problem.get("detail") or "") + problem["title"]


def test_etag_and_gzip(client: TestClient) -> None:
    params = {"start": START, "end": END}
    first = client.get("/v1/funnels/self_service/summary", params=params, headers=AUTH)
    assert first.headers["cache-control"] == "private, max-age=5"
    again = client.get("/v1/funnels/self_service/summary", params=params,
                       headers={**AUTH, "If-None-Match": first.headers["etag"]})  # fmt: skip
    assert again.status_code == 304
    big = client.get("/v1/funnels/self_service/timeseries",
                     params={**params, "interval": "15m"},
                     headers={**AUTH, "Accept-Encoding": "gzip"})  # fmt: skip
    assert big.headers.get("content-encoding") == "gzip"


class CountingStore(Store):
    """A store that counts the funnel queries it is asked (from any thread)."""

    def __init__(self, inner: Store) -> None:
        self.inner, self.backend, self.database = inner, inner.backend, inner.database
        self.funnel_queries = 0
        self._lock = threading.Lock()

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        self.inner.execute(sql, params)

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        if "journey_funnels" in sql:
            with self._lock:
                self.funnel_queries += 1
        return self.inner.query(sql, params)

    def insert(self, table: str, rows: Iterable[Row]) -> int:
        return self.inner.insert(table, rows)


@pytest.mark.parametrize("cache_seconds", [2.0, 0.0])
def test_identical_requests_share_one_query_unless_the_cache_is_off(
    store: ChdbStore, cache_seconds: float
) -> None:
    """Concurrent requests for the same figures (filters in any order) cost one store query."""
    counting = CountingStore(store)
    settings = Settings(
        data_dir=Path("var"), api_max_range_days=40, api_cache_seconds=cache_seconds
    )
    app = create_api(counting, load_funnels(), settings, ApiKeys.parse(KEY))
    # A clock that stands still: every age is decided, whatever the machine's speed.
    app.state.context = dataclasses.replace(
        app.state.context, cache=ResultCache(cache_seconds, clock=lambda: 0.0)
    )
    path, window, n = "/v1/funnels/self_service/summary", {"start": START, "end": END}, 12

    async def burst() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api", headers=AUTH) as c:
            same = [c.get(path, params=window) for _ in range(n)]
            # the same filters in another order are the same figures; another segment is not
            other = [c.get(path, params={**window, "tier": "business", "device": "mobile"}),
                     c.get(path, params={"device": "mobile", "tier": "business", **window}),
                     c.get(path, params={**window, "device": "mobile"})]  # fmt: skip
            return await asyncio.gather(*same, *other)

    responses = asyncio.run(burst())
    assert [r.status_code for r in responses] == [200] * (n + 3)
    assert len({r.headers["etag"] for r in responses[:n]}) == 1
    assert responses[n].headers["etag"] == responses[n + 1].headers["etag"]
    assert len({r.headers["etag"] for r in responses}) == 3
    bodies = [{k: v for k, v in r.json().items() if k != "freshness_seconds"} for r in responses]
    assert all(body == bodies[0] for body in bodies[:n])
    assert all(isinstance(r.json()["freshness_seconds"], float) for r in responses)
    assert counting.funnel_queries == (3 if cache_seconds else n + 3)


def test_readyz_reports_stale_data(client: TestClient) -> None:
    response = client.get("/readyz")  # the simulated history ended days ago: not fresh
    assert response.status_code == 503
    assert "newest stored event" in response.json()["detail"]


def test_watch_renders_the_live_view_from_the_api(client: TestClient) -> None:
    from rich.console import Console

    from cxpulse.api.watch import fetch, render

    client.headers.update(AUTH)
    try:
        since_s = (time.time_ns() // 1_000_000 - _ms(START)) // 1000
        data = fetch(client, "self_service", since_s)
    finally:
        del client.headers["Authorization"]
    console = Console(record=True, width=120)
    console.print(render(data, "3d"))
    text = console.export_text()
    assert f"self_service: {data['summary']['journeys']} journeys, last 3d" in text
    assert "troubleshoot" in text
    assert "service level" in text
    assert "no alert firing" in text
    assert "data as of" in text
    firing = {"id": "x", "rule": "dropoff_rising", "funnel": "self_service", "step": "diagnose",
              "segment": {"device": "mobile"}, "current_rate": 0.5, "baseline_rate": 0.25,
              "started_at": "2026-11-23T10:00:00+00:00", "silenced_until": None,
              "recent_changes": [{"id": "copy-v2", "title": "Copy", "at": START}]}  # fmt: skip
    wide = Console(record=True, width=200)  # the alert's line in one piece
    wide.print(render({**data, "alerts": [firing]}, "3d"))
    text = wide.export_text()
    assert (
        "dropoff_rising at self_service diagnose (device=mobile):  50.0 % vs  25.0 %, since "
        "2026-11-23T10:00:00+00:00" in text
    )
    assert "after change copy-v2" in text


def test_alerts_list_and_silence(client: TestClient, store: ChdbStore) -> None:
    from cxpulse.schemas.times import ch_time

    def alert(alert_id: str, state: str, started: int) -> dict[str, Any]:
        return {
            "id": alert_id, "rule": "dropoff_rising", "state": state, "funnel": "self_service",
            "step": "troubleshoot", "segment": {"device": "mobile"}, "current_rate": 0.5,
            "baseline_rate": 0.3, "window_journeys": 120, "z": 4.2,
            "started_at": ch_time(started), "resolved_at": None if state == "firing" else
            ch_time(started + 600_000), "updated_at": ch_time(started),
        }  # fmt: skip

    store.insert("alerts", [alert("a-firing", "firing", NOW - HOUR),
                            alert("a-resolved", "resolved", NOW - 3 * HOUR)])  # fmt: skip
    listed = client.get("/v1/alerts", headers=AUTH).json()["alerts"]
    assert [a["id"] for a in listed] == ["a-firing", "a-resolved"]
    assert listed[0]["segment"] == {"device": "mobile"}
    assert set(listed[0]) == {
        "id", "rule", "state", "funnel", "step", "segment", "current_rate", "baseline_rate",
        "window_journeys", "z", "started_at", "resolved_at", "silenced_until", "recent_changes",
        "top_drivers",
    }  # fmt: skip
    assert listed[0]["recent_changes"] == []  # the column's default: no change named
    firing = client.get("/v1/alerts", params={"state": "firing"}, headers=AUTH).json()
    assert [a["id"] for a in firing["alerts"]] == ["a-firing"]

    silenced = client.post("/v1/alerts/a-firing/silence", json={"duration": "2h"}, headers=AUTH)
    assert silenced.status_code == 200, silenced.text
    body = silenced.json()
    assert body["state"] == "firing"
    assert body["silenced_until"] is not None
    until = _ms(body["silenced_until"])
    assert NOW + 2 * HOUR <= until <= time.time_ns() // 1_000_000 + 2 * HOUR
    again = client.get("/v1/alerts", params={"state": "firing"}, headers=AUTH).json()["alerts"]
    assert again[0]["silenced_until"] == body["silenced_until"]

    assert client.post("/v1/alerts/nope/silence", json={"duration": "1h"},
                       headers=AUTH).status_code == 404  # fmt: skip
    # Real ids hold slashes (rule/funnel/step/segment, design section 7), raw or encoded.
    slashed = "dropoff_rising/self_service/troubleshoot/device=mobile"
    store.insert("alerts", [alert(slashed, "firing", NOW - HOUR)])
    for path in (slashed, slashed.replace("/", "%2F")):
        answer = client.post(f"/v1/alerts/{path}/silence", json={"duration": "1h"}, headers=AUTH)
        assert answer.status_code == 200, answer.text
        assert answer.json()["id"] == slashed
    both = client.post("/v1/alerts/a-firing/silence", json={"duration": "1h",
                       "until": "2030-01-01T00:00:00Z"}, headers=AUTH)  # fmt: skip
    assert both.status_code == 400
    assert client.post("/v1/alerts/a-firing/silence", json={"duration": "60d"},
                       headers=AUTH).status_code == 400  # fmt: skip
    assert client.post("/v1/alerts/a-firing/silence", json={"duration": "1h"}).status_code == 401
