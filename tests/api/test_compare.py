"""GET /v1/funnels/{name}/compare against figures counted here from the journeys stored."""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from scipy.stats import chi2 as chi2_distribution

from cxpulse.api.app import create_api
from cxpulse.api.auth import ApiKeys
from cxpulse.schemas.times import iso_time
from cxpulse.sinks.migrate import migrate
from cxpulse.sinks.store import ChdbStore
from cxpulse.streams.funnels import load_funnels
from cxpulse.streams.settings import Settings
from tests.support.funnel_rows import (
    Journey,
    assert_figures,
    random_journeys,
    store_journeys,
    two_proportions,
)

KEY = "compare-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
HOUR = 3_600_000
START = 1_795_000_000_000
END = START + 6 * HOUR
FUNNEL = load_funnels()[0]
STEPS = [s.name for s in FUNNEL.steps]
ATTRS = [{"variant": v, "device": d} for v in ("A", "B", "C") for d in ("mobile", "desktop")]


def _journeys() -> list[Journey]:
    rng = random.Random(4)
    return [
        *random_journeys(rng, "self_service", 7, 900, (START, END), ATTRS),
        # More of B (a sample-ratio mismatch), journeys without the attribute, and some outside
        # the range.
        *random_journeys(rng, "self_service", 7, 150, (START, END), [{"variant": "B"}]),
        *random_journeys(rng, "self_service", 7, 80, (START, END), [{"device": "mobile"}, {}]),
        *random_journeys(rng, "self_service", 7, 60, (END, END + HOUR), ATTRS),
    ]


JOURNEYS = _journeys()
RANGE = {"start": iso_time(START), "end": iso_time(END)}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    with ChdbStore(tmp_path_factory.mktemp("compare") / "chdb", "cxpulse_compare") as store:
        migrate(store)
        store_journeys(store, JOURNEYS)
        app = create_api(store, [FUNNEL], Settings(data_dir=Path("var")), ApiKeys.parse(KEY))
        yield TestClient(app)


def _get(client: TestClient, **params: str) -> Any:
    return client.get("/v1/funnels/self_service/compare", params={**RANGE, **params},
                      headers=AUTH)  # fmt: skip


def expected_groups(
    by: str, control: str, filters: Mapping[str, str]
) -> tuple[list[dict[str, Any]], int]:  # fmt: skip
    """Groups with their step figures, and m, counted from the stored journeys."""
    chosen = [
        j for j in JOURNEYS
        if not j.deleted and START <= j.entered_ms < END and by in j.attrs
        and all(j.attrs.get(k) == v for k, v in filters.items())
    ]  # fmt: skip
    values = sorted({j.attrs[by] for j in chosen})
    members = {v: [j for j in chosen if j.attrs[by] == v] for v in values}
    m = (len(values) - 1) * (len(STEPS) - 1)
    base = members[control]
    groups = []
    for value in values:
        group, n = members[value], len(members[value])
        steps = []
        for k in range(1, len(STEPS)):
            x, xc = sum(j.reached(k) for j in group), sum(j.reached(k) for j in base)
            step: dict[str, Any] = {"step": STEPS[k], "reached": x, "rate": x / n}
            if value == control:
                step |= dict.fromkeys(("diff", "relative", "ci95", "z", "p_value", "p_adjusted",
                                       "significant"))  # fmt: skip
            else:
                stats = two_proportions(x, n, xc, len(base))
                p = stats["p_value"]
                adjusted = None if p is None else min(1.0, p * m)
                significant = adjusted is not None and adjusted < 0.05
                step |= stats | {"p_adjusted": adjusted, "significant": significant}
            steps.append(step)
        groups.append({"value": value, "journeys": n, "steps": steps})
    return groups, m


def _assert_groups(body: dict[str, Any], groups: list[dict[str, Any]], m: int) -> None:
    assert body["tests"] == m
    assert [g["value"] for g in body["groups"]] == [g["value"] for g in groups]
    for got, want in zip(body["groups"], groups, strict=True):
        assert got["journeys"] == want["journeys"]
        for step, expected in zip(got["steps"], want["steps"], strict=True):
            assert_figures(step, expected)


def _srm(counts: list[int], shares: list[float]) -> tuple[float, float]:
    """χ² of the counts against the shares, and its p from scipy: an independent reference."""
    total, weight = sum(counts), sum(shares)
    expected = [total * s / weight for s in shares]
    chi2 = sum((n - e) ** 2 / e for n, e in zip(counts, expected, strict=True))
    return chi2, float(chi2_distribution.sf(chi2, len(counts) - 1))


def test_three_groups_against_a_control_with_an_srm_check(client: TestClient) -> None:
    response = _get(client, by="variant", control="A")
    assert response.status_code == 200, response.text
    body = response.json()
    groups, m = expected_groups("variant", "A", {})
    assert m == 2 * 6
    assert [g["value"] for g in groups] == ["A", "B", "C"]
    assert (body["funnel"], body["by"], body["control"]) == ("self_service", "variant", "A")
    assert (body["start"], body["end"]) == (RANGE["start"], RANGE["end"])
    _assert_groups(body, groups, m)
    # Journeys without a variant are left out.
    in_range = [j for j in JOURNEYS if not j.deleted and START <= j.entered_ms < END]
    assert sum(g["journeys"] for g in body["groups"]) < len(in_range)
    chi2, p = _srm([g["journeys"] for g in groups], [1, 1, 1])
    assert body["srm"]["chi2"] == pytest.approx(chi2, rel=1e-12)
    assert body["srm"]["p_value"] == pytest.approx(p, rel=1e-9)
    assert body["srm"]["mismatch"] is (p < 0.001) is True  # the extra B journeys


def test_expected_shares_and_filters(client: TestClient) -> None:
    body = _get(client, by="variant", control="B", expected="A:30,B:45,C:25",
                device="mobile").json()  # fmt: skip
    groups, m = expected_groups("variant", "B", {"device": "mobile"})
    _assert_groups(body, groups, m)
    chi2, p = _srm([g["journeys"] for g in groups], [30, 45, 25])
    assert body["srm"]["chi2"] == pytest.approx(chi2, rel=1e-12)
    assert body["srm"]["p_value"] == pytest.approx(p, rel=1e-9)
    assert body["srm"]["mismatch"] is (p < 0.001)


def test_a_group_expected_but_without_journeys_counts_as_zero_in_the_srm(
    client: TestClient,
) -> None:
    body = _get(client, by="variant", control="A", expected="A:1,B:1,C:1,D:1").json()
    groups, _ = expected_groups("variant", "A", {})
    assert [g["value"] for g in body["groups"]] == ["A", "B", "C"]
    chi2, p = _srm([g["journeys"] for g in groups] + [0], [1, 1, 1, 1])
    assert body["srm"]["chi2"] == pytest.approx(chi2, rel=1e-12)
    assert body["srm"]["p_value"] == pytest.approx(p, rel=1e-9, abs=1e-300)
    assert body["srm"]["mismatch"] is True


def test_any_attribute_names_the_groups(client: TestClient) -> None:
    body = _get(client, by="device", control="desktop", variant="C").json()
    groups, m = expected_groups("device", "desktop", {"variant": "C"})
    assert [g["value"] for g in groups] == ["desktop", "mobile"]
    _assert_groups(body, groups, m)
    assert m == 6


def test_one_group_has_no_srm(client: TestClient) -> None:
    body = _get(client, by="variant", control="C", device="desktop", variant="C").json()
    assert ([g["value"] for g in body["groups"]], body["tests"], body["srm"]) == (["C"], 0, None)


@pytest.mark.parametrize(
    ("params", "status", "says"),
    [
        ({"by": "variant", "control": "Z"}, 422,
         "control 'Z' is not among the groups: ['A', 'B', 'C']"),
        ({"by": "variant", "control": "A", "expected": "A:50,B"}, 400, "value:share"),
        ({"by": "variant", "control": "A", "expected": "A:50,B:-1"}, 400, "value:share"),
        ({"by": "variant", "control": "A", "expected": "A:1,A:2"}, 400, "value:share"),
        ({"by": "variant", "control": "A", "expected": "A:1e308,B:1e308,C:1"}, 400, "value:share"),
        ({"by": "variant", "control": "A", "expected": "A:5e-324,B:1,C:1"}, 400, "value:share"),
        ({"by": "variant", "control": "A", "expected": "A:nan,B:1,C:1"}, 400, "value:share"),
        ({"by": "variant", "control": "A", "expected": "A:1,B:1"}, 422, "the groups are"),
        ({"by": "bad name", "control": "A"}, 400, "not an attribute name"),
        ({"control": "A"}, 422, "see errors"),
        ({"by": "variant", "control": "A", "start": "yesterday"}, 400, "RFC 3339"),
    ],
)  # fmt: skip
def test_bad_requests_get_problem_details(
    client: TestClient, params: dict[str, str], status: int, says: str
) -> None:
    response = _get(client, **params)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert says in response.json()["detail"]


def test_unknown_funnel(client: TestClient) -> None:
    response = client.get("/v1/funnels/nope/compare", params={"by": "variant", "control": "A"},
                          headers=AUTH)  # fmt: skip
    assert (response.status_code, response.json()["detail"]) == (
        404, "no funnel named 'nope'; see GET /v1/funnels")  # fmt: skip
