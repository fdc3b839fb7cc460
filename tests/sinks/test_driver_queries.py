"""The drop-off drivers' counts and statistics on hand-made snapshot rows, on both store
backends, against figures counted by hand (tests/support/drivers.py); the SQL statistics of the
panel equal the Python ones of the API."""

from __future__ import annotations

import pytest

from cxpulse.schemas.times import ch_time
from cxpulse.sinks import driver_queries
from cxpulse.sinks.migrate import migrate
from cxpulse.sinks.query_sql import QueryError
from cxpulse.sinks.store import Store
from tests.support import drivers as data


def test_drivers_equal_the_figures_counted_by_hand(store: Store) -> None:
    migrate(store)
    store.insert("journey_funnels", data.rows())
    got = driver_queries.drivers(store, "f", 2, data.START, data.END)
    want = data.expected(data.population())
    assert got == want
    assert (got["population"], got["dropped"]) == (130, 41)
    by_name = {(d["kind"], d["attr"], d["value"]): d for d in got["drivers"]}
    assert ("attr", "device", "tablet") not in by_name  # 10 journeys: not tested
    assert len(got["drivers"]) == 9  # m: device 2, tier 2, entry 2, locale 2, reason 1
    assert got["drivers"][0]["p_adjusted"] == min(1.0, got["drivers"][0]["p_value"] * 9)
    email = by_name["attr", "entry", "email"]
    assert (email["rate_rest"], email["lift"]) == (0.0, None)  # the rest never drops
    assert email == got["drivers"][0]  # 41 excess drop-offs: every one of them
    # The reason fact marks the tier=business journeys: equal excess, "reason" < "tier".
    names = [(d["attr"], d["value"]) for d in got["drivers"]]
    tie = names.index(("reason", "out_of_warranty"))
    assert names[tie + 1] == ("tier", "business")
    assert got["drivers"][tie]["excess"] == got["drivers"][tie + 1]["excess"]
    assert got["drivers"][tie]["kind"] == "eligibility_reason"


def test_filters_narrow_the_population(store: Store) -> None:
    migrate(store)
    store.insert("journey_funnels", data.rows())
    got = driver_queries.drivers(store, "f", 2, data.START, data.END, {"tier": "consumer"})
    consumers = [j for j in data.population() if j.attrs["tier"] == "consumer"]
    assert got == data.expected(consumers)


def test_panel_sql_equals_the_api_statistics(store: Store) -> None:
    migrate(store)
    store.insert("journey_funnels", data.rows())
    where = (
        f"funnel = 'f' AND entered_at >= '{ch_time(data.START)}' "
        f"AND entered_at < '{ch_time(data.END)}'"
    )
    rows = store.query(driver_queries.driver_figures(driver_queries.driver_counts(where, "2")))
    api = driver_queries.drivers(store, "f", 2, data.START, data.END)["drivers"]
    panel = [r | {"significant": bool(r["significant"])} for r in rows]
    assert [{k: r[k] for k in api[0]} for r in panel] == api


def test_top_drivers_and_their_annotation_text(store: Store) -> None:
    migrate(store)
    store.insert("journey_funnels", data.rows())
    ranked = data.expected(data.population())["drivers"]
    above = [d for d in ranked if d["significant"] and d["excess"] > 0]
    assert [(d["attr"], d["value"]) for d in above] == [("entry", "email"), ("device", "mobile")]
    top = driver_queries.top_drivers(store, "f", 2, data.START, data.END, 1)
    assert top == above[:1]
    both = driver_queries.top_drivers(store, "f", 2, data.START, data.END, 5)
    assert both == above
    assert driver_queries.drivers_text(both) == (
        "entry=email 82.0% vs 0.0% (+41.0 journeys); device=mobile 50.0% vs 15.7% (+20.6 journeys)"
    )
    fact = {**above[1], "kind": "eligibility_reason", "attr": "reason", "value": "x"}
    assert driver_queries.drivers_text([fact]).startswith("eligibility_reason:reason=x 50.0%")
    assert driver_queries.drivers_text([]) == ""


def test_an_alert_shows_the_top_drivers_of_its_step_within_its_segment(store: Store) -> None:
    migrate(store)
    store.insert("journey_funnels", data.rows())
    alert = {"funnel": "f", "step": "s2", "segment": {"tier": "consumer"}, "started_ms": data.END}
    consumers = [j for j in data.population() if j.attrs["tier"] == "consumer"]
    want = [d for d in data.expected(consumers)["drivers"] if d["significant"] and d["excess"] > 0]
    assert want  # mobile, and entry=email
    got = driver_queries.alert_drivers(store, alert, ["s0", "s1", "s2"], 3_600_000, 3)
    assert got == want[:3]
    overall = {**alert, "segment": {}}
    assert driver_queries.alert_drivers(store, overall, ["s0", "s1", "s2"], 3_600_000, 3) == [
        d for d in data.expected(data.population())["drivers"]
        if d["significant"] and d["excess"] > 0
    ]  # fmt: skip
    # The lookback ends where the alert started: journeys entered after it do not count.
    late = {**alert, "started_ms": data.START}
    assert driver_queries.alert_drivers(store, late, ["s0", "s1", "s2"], 3_600_000, 3) == []


def test_first_step_and_empty_range(store: Store) -> None:
    migrate(store)
    with pytest.raises(QueryError, match="first step"):
        driver_queries.drivers(store, "f", 0, data.START, data.END)
    empty = driver_queries.drivers(store, "f", 1, data.START, data.END)
    assert empty == {"population": 0, "dropped": 0, "rate": None, "drivers": []}
