"""GET /v1/changes/{id}/impact against figures counted here from the journeys stored."""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cxpulse.api.app import create_api
from cxpulse.api.auth import ApiKeys
from cxpulse.api.routes.impact import wall_clock_ms
from cxpulse.schemas.times import iso_time
from cxpulse.sinks.changes import Change, add_change
from cxpulse.sinks.migrate import migrate
from cxpulse.sinks.store import ChdbStore
from cxpulse.streams.funnels import FunnelSpec, StepSpec, load_funnels
from cxpulse.streams.settings import Settings
from tests.support.funnel_rows import (
    Journey,
    assert_figures,
    random_journeys,
    store_journeys,
    two_proportions,
)

KEY = "impact-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
MINUTE, HOUR, DAY = 60_000, 3_600_000, 86_400_000
AT = 1_795_000_020_000  # a change time on a whole minute, 2026-11-18T11:07:00Z
SELF_SERVICE = load_funnels()[0]
CHECKOUT = FunnelSpec("checkout", [StepSpec("cart", "portal.cart"), StepSpec("pay", "portal.pay"),
                                   StepSpec("done", "portal.done")])  # fmt: skip
STEPS = {f.name: [s.name for s in f.steps] for f in (SELF_SERVICE, CHECKOUT)}
ATTRS = [{"device": "mobile", "tier": "consumer"}, {"device": "desktop", "tier": "business"},
         {"device": "mobile", "tier": "business"}, {"tier": "consumer"}]  # fmt: skip
ASSISTED, SELF_SERVICE_COST = 6.5, 0.25


def _journeys() -> list[Journey]:
    rng = random.Random(16)
    span = (AT - 3 * DAY // 2, AT + 3 * DAY // 2)
    journeys = [
        *random_journeys(rng, "self_service", 7, 1200, span, ATTRS, deeper_after=AT),
        *random_journeys(rng, "checkout", 3, 400, span, ATTRS),
        # A few watches: under 30 journeys before the change.
        *random_journeys(rng, "self_service", 7, 12, (AT - DAY, AT), [{"device": "watch"}]),
        *random_journeys(rng, "self_service", 7, 45, (AT, AT + DAY), [{"device": "watch"}]),
    ]
    # The edges of a 1-day window: [at - L, at) and [at, at + L).
    for i, entered in enumerate((AT - DAY - 1, AT - DAY, AT - 1, AT, AT + DAY - 1, AT + DAY)):
        journeys.append(Journey("checkout", f"edge-{i}", entered, 3, 3, "self_served", ATTRS[0]))
    return journeys


JOURNEYS = _journeys()


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    with ChdbStore(tmp_path_factory.mktemp("impact") / "chdb", "cxpulse_impact") as store:
        migrate(store)
        store_journeys(store, JOURNEYS)
        for change in (
            Change("all-funnels", "New wording everywhere", AT),
            Change("mobile-layout", "Mobile layout", AT, "self_service", "diagnose",
                   {"device": "mobile"}),
            Change("watch", "Watch app", AT, "self_service", None, {"device": "watch"}),
            Change("retired", "A funnel no longer configured", AT, "old_funnel"),
            Change("offset", "Twenty seconds past a minute", AT + 20_000, "checkout"),
        ):  # fmt: skip
            add_change(store, change)
        settings = Settings(data_dir=Path("var"), assisted_cost=ASSISTED,
                            self_service_cost=SELF_SERVICE_COST, currency="EUR")  # fmt: skip
        app = create_api(store, [SELF_SERVICE, CHECKOUT], settings, ApiKeys.parse(KEY))
        app.dependency_overrides[wall_clock_ms] = lambda: CLOCK[0]
        yield TestClient(app)


CLOCK = [AT + 3 * DAY]


def _get(client: TestClient, change: str, now_ms: int, **params: str) -> Any:
    CLOCK[0] = now_ms
    return client.get(f"/v1/changes/{change}/impact", params=params, headers=AUTH)


def _expected_block(
    funnel: str, length: int, filters: Mapping[str, str]
) -> dict[str, Any]:  # fmt: skip
    chosen = [j for j in JOURNEYS if j.funnel == funnel and not j.deleted
              and all(j.attrs.get(k) == v for k, v in filters.items())]  # fmt: skip
    before = [j for j in chosen if AT - length <= j.entered_ms < AT]
    after = [j for j in chosen if AT <= j.entered_ms < AT + length]
    nb, na = len(before), len(after)

    def rate(x: int, n: int) -> float | None:
        return x / n if n else None

    steps = []
    for k, name in enumerate(STEPS[funnel][1:], start=1):
        xb, xa = sum(j.reached(k) for j in before), sum(j.reached(k) for j in after)
        stats = two_proportions(xa, na, xb, nb)
        significant = stats["p_value"] is not None and stats["p_value"] < 0.05
        steps.append({"step": name, "before": {"reached": xb, "rate": rate(xb, nb)},
                      "after": {"reached": xa, "rate": rate(xa, na)}, **stats,
                      "significant": significant})  # fmt: skip
    outcomes, added = [], {}
    for outcome in ("self_served", "escalated"):
        xb = sum(j.outcome == outcome for j in before)
        xa = sum(j.outcome == outcome for j in after)
        stats = two_proportions(xa, na, xb, nb)
        significant = stats["p_value"] is not None and stats["p_value"] < 0.05
        outcomes.append({"outcome": outcome, "before": {"count": xb, "rate": rate(xb, nb)},
                         "after": {"count": xa, "rate": rate(xa, na)}, **stats,
                         "significant": significant})  # fmt: skip
        added[outcome] = None if not (na and nb) else (xa / na - xb / nb) * na
    return {
        "funnel": funnel,
        "before": {"start": iso_time(AT - length), "end": iso_time(AT), "journeys": nb},
        "after": {"start": iso_time(AT), "end": iso_time(AT + length), "journeys": na},
        "steps": steps,
        "outcomes": outcomes,
        "added": added,
    }


def _assert_block(got: dict[str, Any], expected: dict[str, Any]) -> None:
    for name in ("funnel", "before", "after"):
        assert got[name] == expected[name], name
    assert [s["step"] for s in got["steps"]] == [s["step"] for s in expected["steps"]]
    for step, want in zip(got["steps"], expected["steps"], strict=True):
        assert_figures(step, want)
    for outcome, want in zip(got["outcomes"], expected["outcomes"], strict=True):
        assert_figures(outcome, want)
    escalations, self_served = expected["added"]["escalated"], expected["added"]["self_served"]
    cost = got["cost"]
    assert cost["currency"] == "EUR"
    assert cost["escalations_added"] == pytest.approx(escalations, rel=1e-12)
    assert cost["self_served_added"] == pytest.approx(self_served, rel=1e-12)
    assert cost["cost_delta"] == pytest.approx(
        escalations * ASSISTED + self_served * SELF_SERVICE_COST, rel=1e-9
    )


def test_a_change_of_every_funnel_has_one_block_per_funnel(client: TestClient) -> None:
    response = _get(client, "all-funnels", AT + 3 * DAY, window="1d")
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["change"], body["title"], body["at"]) == ("all-funnels", "New wording everywhere",
                                                           iso_time(AT))  # fmt: skip
    assert (body["window_seconds"], body["provisional"]) == (86_400, False)
    assert [b["funnel"] for b in body["funnels"]] == ["self_service", "checkout"]
    for block in body["funnels"]:
        expected = _expected_block(block["funnel"], DAY, {})
        _assert_block(block, expected)
        assert min(expected["before"]["journeys"], expected["after"]["journeys"]) > 100
    # The deeper journeys after the change show as a significant rise at the last step.
    last = body["funnels"][0]["steps"][-1]
    assert (last["diff"] > 0, last["significant"]) == (True, True)
    assert isinstance(body["freshness_seconds"], float | None)


def test_the_change_filters_and_funnel_restrict_the_journeys(client: TestClient) -> None:
    body = _get(client, "mobile-layout", AT + 3 * DAY, window="7d").json()
    # 7 d asked, 3 d passed: L is the whole minutes since the change.
    length = (3 * DAY) // MINUTE * MINUTE
    assert (body["window_seconds"], body["provisional"]) == (length // 1000, True)
    [block] = body["funnels"]
    _assert_block(block, _expected_block("self_service", length, {"device": "mobile"}))


def test_provisional_window_is_whole_minutes_since_the_change(client: TestClient) -> None:
    now = AT + 5 * HOUR + 30 * MINUTE + 45_678
    body = _get(client, "all-funnels", now, window="1d").json()
    length = 5 * HOUR + 30 * MINUTE
    assert (body["window_seconds"], body["provisional"]) == (length // 1000, True)
    for block in body["funnels"]:
        _assert_block(block, _expected_block(block["funnel"], length, {}))
    # Exactly at + window: final.
    final = _get(client, "all-funnels", AT + DAY, window="1d").json()
    assert (final["window_seconds"], final["provisional"]) == (86_400, False)


def test_a_change_not_yet_live_has_empty_periods(client: TestClient) -> None:
    body = _get(client, "all-funnels", AT - HOUR, window="1d").json()
    assert (body["window_seconds"], body["provisional"]) == (0, True)
    block = body["funnels"][1]
    assert (block["before"]["journeys"], block["after"]["journeys"]) == (0, 0)
    assert block["steps"][0] | {"step": None} == {
        "step": None, "before": {"reached": 0, "rate": None}, "after": {"reached": 0, "rate": None},
        "diff": None, "relative": None, "ci95": None, "z": None, "p_value": None,
        "significant": False,
    }  # fmt: skip
    assert block["cost"] == {"escalations_added": None, "self_served_added": None,
                             "cost_delta": None, "currency": "EUR"}  # fmt: skip


def test_fewer_than_30_journeys_leave_the_statistics_null(client: TestClient) -> None:
    body = _get(client, "watch", AT + 3 * DAY, window="1d").json()
    [block] = body["funnels"]
    expected = _expected_block("self_service", DAY, {"device": "watch"})
    _assert_block(block, expected)
    assert (block["before"]["journeys"], block["after"]["journeys"]) == (11, 43)  # 1 and 2 deleted
    for row in (*block["steps"], *block["outcomes"]):
        assert (row["ci95"], row["z"], row["p_value"], row["significant"]) == (None,) * 3 + (False,)
    assert any(row["diff"] for row in block["steps"])


@pytest.mark.parametrize(
    ("change", "params", "status", "says"),
    [
        ("nope", {}, 404, "no change 'nope'"),
        ("retired", {}, 422, "the change's funnel 'old_funnel' is gone"),
        ("Bad!", {}, 422, "see errors"),
        ("all-funnels", {"window": "soon"}, 400, "not a duration"),
        ("all-funnels", {"window": "0s"}, 400, "longer than 0"),
        ("all-funnels", {"window": "94d"}, 400, "at most 93d"),
    ],
)
def test_bad_requests_get_problem_details(
    client: TestClient, change: str, params: dict[str, str], status: int, says: str
) -> None:
    response = _get(client, change, AT + 3 * DAY, **params)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    assert says in response.json()["detail"]


def test_no_key_no_impact(client: TestClient) -> None:
    assert client.get("/v1/changes/all-funnels/impact").status_code == 401


def test_a_cached_impact_follows_the_minutes_since_the_change(client: TestClient) -> None:
    """`offset` is 20 s past a minute: 29 min 59 s and 30 min 1 s after it fall in the same
    wall-clock minute but have different L; the second must not get the first's cached figures."""
    at = AT + 20_000
    first = _get(client, "offset", at + 30 * MINUTE - 1000, window="1d").json()
    second = _get(client, "offset", at + 30 * MINUTE + 1000, window="1d").json()
    assert (first["window_seconds"], second["window_seconds"]) == (29 * 60, 30 * 60)
