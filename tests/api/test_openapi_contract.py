"""schemathesis against the app's own OpenAPI document: no 5xx, every response as documented.

(schemathesis' pytest plugin does not run under pytest 9, so operations are driven directly.)
The response models of api/models.py are the contract (design section 8): a renamed, missing or
undocumented field fails here.
"""

from __future__ import annotations

from typing import Any, get_args, get_type_hints

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis import checks

from cxpulse.api.routes.contact_center import Channel
from cxpulse.schemas.events import ContactStartedData
from cxpulse.sinks import alerts as alert_rows
from cxpulse.sinks import funnel_queries
from cxpulse.sinks.store import ChdbStore
from tests.api.test_api import AUTH, END, NOW, START, client, store  # noqa: F401 - module fixtures

CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
]


def closed(schema: Any) -> Any:
    """The document with every object that lists its properties closed to any other, so that
    conformance also fails on a field the models do not document (a renamed optional one, say).
    The published document stays open: the design lets fields be added."""
    if isinstance(schema, list):
        return [closed(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    result = {key: closed(value) for key, value in schema.items()}
    if "properties" in result:
        result.setdefault("additionalProperties", False)
    return result


def _schema(client: TestClient) -> schemathesis.BaseSchema:  # noqa: F811
    schema = schemathesis.openapi.from_dict(closed(client.get("/openapi.json").json()))
    schema.app = client.app
    return schema


def test_every_operation_keeps_its_contract(client: TestClient) -> None:  # noqa: F811
    operations = [result.ok() for result in _schema(client).get_all_operations()]
    assert len(operations) >= 8
    for operation in operations:
        # /readyz answers 503 by design while the data is stale (it is here: old history).
        expected = CHECKS[1:] if operation.path == "/readyz" else CHECKS

        @given(case=operation.as_strategy())
        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
        def check(case: schemathesis.Case) -> None:
            # Business rules (end after start, range and points limits) legitimately refuse
            # some schema-valid requests with a documented 400, so that check is left out.
            if "name" in (case.path_parameters or {}):
                case.path_parameters["name"] = "self_service"  # any other is a 404, no figures
            case.call_and_validate(headers=AUTH, checks=expected)  # noqa: B023 - run at once

        check()


ALERT = {
    "id": "contract", "rule": "dropoff_rising", "state": "firing", "funnel": "self_service",
    "step": "diagnose", "segment": {"device": "mobile"}, "current_rate": 0.5,
    "baseline_rate": 0.25, "window_journeys": 120, "z": 4.2, "started_ms": NOW,
    "resolved_ms": None, "recent_changes": [], "top_drivers": [],
}  # fmt: skip
SERIES = {"start": START, "end": END, "interval": "6h"}
#: Requests whose answer has every part of its shape (series, per-step points, an alert):
#: generated requests rarely make one (most get a 400 for their range, or an empty one).
FULL: list[tuple[str, str, dict[str, str]]] = [
    ("GET", "/v1/funnels/{name}/summary", {"start": START, "end": END, "device": "mobile"}),
    ("GET", "/v1/funnels/{name}/timeseries", SERIES),
    ("GET", "/v1/funnels/{name}/timeseries", {**SERIES, "step": "diagnose"}),
    ("GET", "/v1/funnels/{name}/breakdown", {"start": START, "end": END, "by": "tier"}),
    ("GET", "/v1/funnels/{name}/drivers", {"start": START, "end": END, "step": "eligible"}),
    ("GET", "/v1/contact-center/kpis", SERIES),
    ("GET", "/v1/self-service/containment", SERIES),
    ("GET", "/v1/alerts", {}),
    ("POST", "/v1/alerts/{alert_id}/silence", {}),
]


def test_full_responses_keep_their_contract(client: TestClient, store: ChdbStore) -> None:  # noqa: F811
    alert_rows.record(store, [ALERT], NOW)
    schema = _schema(client)
    names = {"name": "self_service", "alert_id": ALERT["id"]}
    for method, path, query in FULL:
        body = {"body": {"duration": "1h"}} if method == "POST" else {}
        case = schema[path][method].Case(
            path_parameters={k: v for k, v in names.items() if f"{{{k}}}" in path},
            query=query,
            **body,
        )
        response = case.call_and_validate(headers=AUTH, checks=CHECKS)
        assert response.status_code == 200, (method, path, query)


def _free_forms(schema: dict[str, Any], definitions: dict[str, Any], where: str) -> list[str]:
    """Where `schema` lets any value or any object through (`Any`, `dict[str, Any]`)."""
    while "$ref" in schema:
        schema = definitions[schema["$ref"].rsplit("/", 1)[1]]
    if not {"type", "anyOf", "oneOf", "allOf", "enum", "const"} & schema.keys():
        return [where]
    found = []
    extra = schema.get("additionalProperties", True)
    if schema.get("type") == "object" and not schema.get("properties") and extra in (True, {}):
        found.append(where)
    parts = [(f"{where}.{name}", sub) for name, sub in schema.get("properties", {}).items()]
    if isinstance(extra, dict) and extra:
        parts.append((f"{where}.*", extra))
    if "items" in schema:
        parts.append((f"{where}[]", schema["items"]))
    parts += [(where, sub) for key in ("anyOf", "oneOf", "allOf") for sub in schema.get(key, [])]
    return found + [f for path, sub in parts for f in _free_forms(sub, definitions, path)]


def test_every_v1_route_documents_its_response_shape(client: TestClient) -> None:  # noqa: F811
    """Not a free-form object: a response model down to every nested field."""
    document = client.get("/openapi.json").json()
    definitions = document["components"]["schemas"]
    operations = [
        (f"{method.upper()} {path}", operation)
        for path, methods in document["paths"].items()
        if path.startswith("/v1")
        for method, operation in methods.items()
    ]
    assert len(operations) >= 8
    for name, operation in operations:
        success = next(code for code in ("200", "201", "204") if code in operation["responses"])
        if success == "204":  # no content (DELETE)
            continue
        schema = operation["responses"][success]["content"]["application/json"]["schema"]
        assert "$ref" in schema, name
        assert _free_forms(schema, definitions, name) == []


def test_figures_off_the_contract_are_a_500_problem(
    client: TestClient,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Cached figures are checked once when encoded (FastAPI never sees them as data): a payload
    missing a field of its model is an error, never a 200 that breaks clients."""
    real = funnel_queries.funnel_summary

    def renamed(*args: Any, **kwargs: Any) -> dict[str, Any]:
        result = real(*args, **kwargs)
        result["journey_count"] = result.pop("journeys")
        return result

    monkeypatch.setattr(funnel_queries, "funnel_summary", renamed)
    params = {"start": "2026-11-22T06:00:00Z", "end": END}  # a range no other test caches
    with TestClient(client.app, raise_server_exceptions=False) as server:
        response = server.get("/v1/funnels/self_service/summary", params=params, headers=AUTH)
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"


def test_the_channel_parameter_is_the_event_contracts() -> None:
    assert get_args(Channel) == get_args(get_type_hints(ContactStartedData)["channel"])
