"""Security findings of issue 14 on the API: every /v1 route needs a key (RFC 6750 challenges),
open routes tell nothing about the store's failure, and no duration overflows into a 500."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cxpulse.api.app import create_api
from cxpulse.api.auth import ApiKeys
from cxpulse.schemas.durations import MAX_DURATION_MS, parse_duration_ms
from cxpulse.sinks.store import Row, Store, StoreError
from cxpulse.streams.funnels import load_funnels
from cxpulse.streams.settings import Settings
from tests.api.test_api import AUTH, END, START, client, store  # noqa: F401 - module fixtures

#: Durations that once overflowed (float('9' * 400) is inf; int(inf) raises OverflowError),
#: exceed the bounds, or are not durations at all.
HOSTILE_DURATIONS = [
    "9" * 400 + "s",
    "9" * 5000 + "d",  # past Python's 4,300-digit int() limit
    f"{10**30}s",
    "1e309",
    "1e309s",
    "inf",
    "nan",
    "-5m",
    "36501d",
    "0." + "1" * 400 + "h",
    "٣m",  # a digit, but not an ASCII one
]


def _v1_requests(client: TestClient) -> list[tuple[str, str]]:  # noqa: F811
    """Every /v1 operation the app documents, with its path parameters filled in."""
    paths = client.get("/openapi.json").json()["paths"]
    found = [
        (method.upper(), path.replace("{name}", "self_service").replace("{alert_id}", "x"))
        for path, operations in paths.items()
        if path.startswith("/v1")
        for method in operations
    ]
    assert ("GET", "/v1/freshness") in found
    assert len(found) >= 8
    return found


def test_every_v1_route_answers_401_without_an_accepted_key(client: TestClient) -> None:  # noqa: F811
    for method, path in _v1_requests(client):
        body = {"duration": "1h"} if method == "POST" else None
        missing = client.request(method, path, json=body)
        assert missing.status_code == 401, (method, path)
        assert missing.headers["www-authenticate"] == "Bearer"
        assert missing.headers["content-type"] == "application/problem+json"
        for header in ("Bearer unknown-key", "Bearer ", "Basic dXNlcjpwYXNz"):
            wrong = client.request(method, path, json=body, headers={"Authorization": header})
            assert wrong.status_code == 401, (method, path, header)
            assert wrong.json()["status"] == 401
            assert wrong.headers["content-type"] == "application/problem+json"
            if header == "Bearer unknown-key":  # RFC 6750 section 3.1
                assert wrong.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert client.get("/v1/freshness", headers=AUTH).status_code == 200


def test_the_openapi_document_says_which_routes_need_a_key(client: TestClient) -> None:  # noqa: F811
    paths = client.get("/openapi.json").json()["paths"]
    for path, operations in paths.items():
        for operation in operations.values():
            secured = bool(operation.get("security"))
            assert secured == path.startswith("/v1"), path
            assert "403" not in operation["responses"], path
    challenge = paths["/v1/freshness"]["get"]["responses"]["401"]["headers"]
    assert "WWW-Authenticate" in challenge


class FailingStore(Store):
    """A store whose every query fails with text an attacker must not see."""

    backend, database = "clickhouse", "cxpulse"
    SECRET = "cannot reach ClickHouse: http://cxpulse:hunter2@10.1.2.3:8123 (user cxpulse)"

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        raise StoreError(self.SECRET)

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        raise StoreError(self.SECRET)

    def insert(self, table: str, rows: Iterable[Row]) -> int:
        raise StoreError(self.SECRET)


def test_readyz_tells_the_log_not_the_caller_why_the_store_fails(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = Settings(data_dir=Path("var"))
    app = create_api(FailingStore(), load_funnels(), settings, ApiKeys.parse("k"))
    with caplog.at_level(logging.WARNING):
        response = TestClient(app).get("/readyz")
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json() == {
        "type": "about:blank", "title": "Not ready", "status": 503,
        "detail": "the store does not answer",
    }  # fmt: skip
    for secret in ("hunter2", "10.1.2.3", "cxpulse", "ClickHouse"):
        assert secret not in response.text
    assert FailingStore.SECRET in caplog.text  # for the operator


@pytest.mark.parametrize("interval", HOSTILE_DURATIONS)
@pytest.mark.parametrize(
    "path",
    [
        "/v1/funnels/self_service/timeseries",
        "/v1/contact-center/kpis",
        "/v1/self-service/containment",
    ],
)
def test_hostile_intervals_get_a_400_problem(
    client: TestClient,  # noqa: F811
    path: str,
    interval: str,
) -> None:
    params = {"start": START, "end": END, "interval": interval}
    response = client.get(path, params=params, headers=AUTH)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == 400
    assert len(response.text) < 1000  # the detail does not echo hundreds of digits


def test_an_interval_longer_than_any_range_is_refused(client: TestClient) -> None:  # noqa: F811
    params = {"start": START, "end": END, "interval": "36500d"}
    response = client.get("/v1/funnels/self_service/timeseries", params=params, headers=AUTH)
    assert response.status_code == 400, response.text
    assert "at most 40d" in response.json()["detail"]


@pytest.mark.parametrize("duration", HOSTILE_DURATIONS)
def test_hostile_silence_durations_get_a_400_problem(client: TestClient, duration: str) -> None:  # noqa: F811
    response = client.post("/v1/alerts/x/silence", json={"duration": duration}, headers=AUTH)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b'{"duration": 1e309}', 422),  # a number (inf once parsed), not a duration text
        (b'{"duration": ' + str(10**30).encode() + b"}", 422),
        (b'{"until": "99999-01-01T00:00:00Z"}', 400),
        (b'{"until": "2026-01-01T00:00:00' + b"9" * 400 + b'Z"}', 400),
    ],
)
def test_hostile_silence_bodies_get_a_4xx_problem(
    client: TestClient,  # noqa: F811
    body: bytes,
    status: int,
) -> None:
    headers = {**AUTH, "Content-Type": "application/json"}
    response = client.post("/v1/alerts/x/silence", content=body, headers=headers)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"


def test_durations_parse_exactly_within_bounds() -> None:
    assert parse_duration_ms("90s") == 90_000
    assert parse_duration_ms(" 1.5h ") == 5_400_000
    assert parse_duration_ms("0.001s") == 1
    assert parse_duration_ms("0.0005s") == 0  # below a millisecond: dropped
    assert parse_duration_ms("250ms") == 250
    assert parse_duration_ms("0" * 100 + "7d") == 7 * 86_400_000
    assert parse_duration_ms("36500d") == MAX_DURATION_MS
    for text in [*HOSTILE_DURATIONS, "", "5", "m", "5 m", "5m\n5m", ".5s", "3.s", "5M"]:
        with pytest.raises(ValueError, match="duration"):
            parse_duration_ms(text)
