"""Every panel, variable, annotation and alert-rule query of the generated Grafana documents,
with Grafana's macros and variables expanded for a concrete range, run on chdb over simulated
history: the columns and types each panel expects, rows where data exists, and the same numbers
as the API's query module (and, for the rules, as the worker's statistics)."""

from __future__ import annotations

import calendar
import dataclasses
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest

from cxpulse.dashboards.build import Documents, documents
from cxpulse.dashboards.config import BoardConfig
from cxpulse.schemas.times import ch_time
from cxpulse.schemas.vocabulary import CONTACT_COLUMNS, SEGMENT_ATTRS
from cxpulse.sinks import alert_queries, contact_queries, containment_queries, funnel_queries
from cxpulse.sinks.store import ChdbStore
from cxpulse.streams import alerting
from cxpulse.streams.funnels import load_funnels
from cxpulse.streams.settings import Settings
from cxpulse.streams.simulator.config import Incident, SimConfig
from tests.support.grafana import expand
from tests.support.history import load_history

NOW = 1_795_500_000_000  # fixed, so every run sees the same traffic
MINUTE, HOUR = 60_000, 3_600_000
START, END = NOW - 3 * HOUR, NOW
INTERVAL_S = 900
FUNNEL = load_funnels()[0]
STEPS = [s.name for s in FUNNEL.steps]
ALL: dict[str, list[str] | None] = {
    **dict.fromkeys((*SEGMENT_ATTRS, *CONTACT_COLUMNS, "rule")),
    "breakdown": ["device"],
    "by": ["queue"],
    "dropoff_step": ["troubleshoot"],  # tests/dashboards/test_driver_panels.py
    # tests/dashboards/test_impact_panels.py (no change is stored here: empty periods)
    **{"change": ["none"], "window": ["604800"], "variant_by": ["device"], "control": ["mobile"]},
}
NUMERIC = re.compile(r"^(Nullable\()?(U?Int\d+|Float\d+)\)?$")
TIME = re.compile(r"^(Nullable\()?DateTime(64)?(\(.*\))?\)?$")


def _config() -> BoardConfig:
    # A 2 h baseline so the 4 h of history holds window and baseline; the rest are defaults.
    return dataclasses.replace(BoardConfig.from_settings(Settings()), baseline_seconds=2 * 3600)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChdbStore]:
    """4 h of traffic at 5 events/s; in the last hour the troubleshoot step fails on mobile."""
    incident = Incident(step="troubleshoot", segment={"device": "mobile"},
                        start_ms=NOW - HOUR, extra_dropoff=0.5)  # fmt: skip
    config = SimConfig(seed=5, start_ms=NOW - 4 * HOUR, rate=5.0, incidents=(incident,))
    with ChdbStore(tmp_path_factory.mktemp("grafana") / "chdb", "cxpulse_grafana") as chdb:
        load_history(chdb, config, 4 * HOUR, NOW, [FUNNEL])
        chdb.insert("alerts", [
            _alert("dropoff_rising/self_service/troubleshoot/device=mobile", "dropoff_rising",
                   "firing", "troubleshoot", {"device": "mobile"}, NOW - 30 * MINUTE, None),
            _alert("abandonment_spike/-/-/queue=voice_printers", "abandonment_spike", "resolved",
                   "", {"queue": "voice_printers"}, NOW - 2 * HOUR, NOW - 90 * MINUTE),
            _alert("service_level_breach/-/-", "service_level_breach", "resolved", "", {},
                   NOW - 10 * HOUR, NOW - 9 * HOUR),  # before the range: not in its history
        ])  # fmt: skip
        yield chdb


def _alert(
    alert_id: str, rule: str, state: str, step: str, segment: dict[str, str], started: int,
    resolved: int | None,
) -> dict[str, Any]:  # fmt: skip
    return {"id": alert_id, "rule": rule, "state": state, "funnel": "self_service" if step else "",
            "step": step, "segment": segment, "current_rate": 0.84, "baseline_rate": 0.52,
            "window_journeys": 119, "z": 6.5, "started_at": ch_time(started),
            "resolved_at": None if resolved is None else ch_time(resolved),
            "silenced_until": None, "updated_at": ch_time(NOW)}  # fmt: skip


@pytest.fixture(scope="module")
def docs() -> Documents:
    return documents(_config(), "http://cxpulse:secret@clickhouse:8123", "cxpulse")


def run(store: ChdbStore, sql: str, end: int = END, **variables: list[str] | None) -> Any:
    """(columns {name: type}, rows) of a panel's SQL as ClickHouse receives it from Grafana."""
    expanded = expand(sql, START, end, INTERVAL_S, {**ALL, **variables})
    columns = {r["name"]: r["type"] for r in store.query(f"DESCRIBE ({expanded})")}
    return columns, store.query(expanded)


def _panels(docs: Documents) -> Iterator[tuple[str, dict[str, Any]]]:
    for board in docs.dashboards:
        for panel in board["panels"]:
            yield board["uid"], panel


def test_every_panel_variable_and_annotation_query_runs_with_the_expected_shape(
    store: ChdbStore, docs: Documents
) -> None:
    executed = 0
    for uid, panel in _panels(docs):
        (target,) = panel["targets"]
        columns, rows = run(store, target["rawSql"])
        executed += 1
        names, types = list(columns), list(columns.values())
        where = f"{uid} / {panel['title']}"
        assert rows, f"{where}: no rows over data that exists"
        if panel["type"] == "stat":
            assert (len(rows), len(names)) == (1, 1), where
            assert NUMERIC.match(types[0]), f"{where}: {types}"
            assert rows[0][names[0]] is not None, where
        elif panel["type"] == "timeseries":
            assert (target["format"], names[0]) == (0, "time"), where
            assert TIME.match(types[0]), f"{where}: {types}"
            assert len(names) >= 2, where
            assert all(NUMERIC.match(t) for t in types[1:]), f"{where}: {types}"
        elif panel["type"] == "barchart":
            assert names[0] == panel["options"]["xField"], where
            assert "String" in types[0], f"{where}: {types}"
            assert all(NUMERIC.match(t) for t in types[1:]), f"{where}: {types}"
        else:
            assert panel["type"] == "table", where
    for board in docs.dashboards:
        for variable in board["templating"]["list"]:
            if variable["type"] == "query":
                columns, rows = run(store, variable["query"]["rawSql"])
                executed += 1
                assert list(columns) == ["value"]
                assert "String" in columns["value"]
                assert rows or variable["name"] == "change", f"{board['uid']}: {variable['name']}"
        for annotation in board["annotations"].get("list", []):
            if "rawSql" in annotation.get("target", {}):
                columns, rows = run(store, annotation["target"]["rawSql"])
                executed += 1
                assert TIME.match(columns["time"])
                assert TIME.match(columns["timeEnd"])
                assert columns["tags"] == "Array(String)"
                assert columns["title"] == "String"
                if annotation["name"] == "Portal changes":  # tests/dashboards/test_changes.py
                    continue
                assert [r["title"] for r in rows] == [
                    "abandonment_spike (queue=voice_printers)",
                    "dropoff_rising at troubleshoot (device=mobile)",
                ]
    assert executed == 37 + 26 + 2  # panels, query variables, annotation queries


def _panel(docs: Documents, uid: str, title: str) -> str:
    board = next(b for b in docs.dashboards if b["uid"] == uid)
    panel = next(p for p in board["panels"] if p["title"] == title)
    return str(panel["targets"][0]["rawSql"])


def test_funnel_panels_equal_the_api_figures(store: ChdbStore, docs: Documents) -> None:
    uid = "cxpulse-funnel-self_service"
    steps_sql = _panel(docs, uid, "Conversion and drop-off per step")
    for filters in ({}, {"device": "mobile", "tier": "consumer"}):
        _, rows = run(store, steps_sql, **{k: [v] for k, v in filters.items()})
        expected = funnel_queries.funnel_summary(store, FUNNEL.name, STEPS, START, END, filters)
        assert expected["journeys"] > 500
        assert [r["step"] for r in rows] == STEPS
        for row, step in zip(rows, expected["steps"], strict=True):
            assert {k: row[k] for k in step} == step
            assert row["drop_off_rate"] == (step["dropped"] / step["reached"] if step["reached"]
                                            else None)  # fmt: skip
    # A multi-value selection, with a quote in one value: escaped, and it matches nothing.
    _, two = run(store, steps_sql, device=["mobile", "o'brien"])
    _, one = run(store, steps_sql, device=["mobile"])
    assert two == one

    _, series = run(store, _panel(docs, uid, "Drop-off rate per step over time"))
    api_series = funnel_queries.funnel_timeseries(store, FUNNEL.name, STEPS, START, END, INTERVAL_S)
    assert len(series) == len(api_series) == 12
    for row, bucket in zip(series, api_series, strict=True):
        assert _epoch_ms(row["time"]) == bucket["bucket_ms"]
        for k, step in enumerate(STEPS):
            reached, dropped = bucket["reached"][k], bucket["dropped"][k]
            assert row[step] == (dropped / reached if reached else None)

    _, heat = run(store, _panel(docs, uid, "Drop-off rate: segment x step"), breakdown=["tier"])
    groups = funnel_queries.funnel_breakdown(store, FUNNEL.name, STEPS, "tier", START, END)
    assert [r["value"] for r in heat] == [g["value"] for g in groups] == ["business", "consumer"]
    for row, group in zip(heat, groups, strict=True):
        assert row["journeys"] == group["journeys"]
        assert row["troubleshoot"] == group["dropped"][3] / group["reached"][3]

    _, escalations = run(store, _panel(docs, uid, "Escalations by the step where customers left"))
    summary = funnel_queries.funnel_summary(store, FUNNEL.name, STEPS, START, END)
    assert [r["escalated"] for r in escalations] == [s["escalated"] for s in summary["steps"]]


def _epoch_ms(text: str) -> int:
    return calendar.timegm(time.strptime(text, "%Y-%m-%d %H:%M:%S")) * 1000


CONTAINMENT_PANELS = {"Portal journeys": "journeys", "Containment": "containment_rate",
                      "Escalated (closed)": "escalated", "Cost to serve": "cost_to_serve",
                      "Savings": "savings"}  # fmt: skip


def test_containment_cost_and_savings_equal_the_api(store: ChdbStore, docs: Documents) -> None:
    uid = "cxpulse-funnel-self_service"
    for filters in ({}, {"region": "emea"}):
        (api,) = containment_queries.containment(store, START, END, filters=filters)
        for title, field in CONTAINMENT_PANELS.items():
            _, rows = run(store, _panel(docs, uid, title), **{k: [v] for k, v in filters.items()})
            assert rows == [{field: api[field]}], title
    _, series = run(store, _panel(docs, uid, "Containment over time"))
    api_series = containment_queries.containment(store, START, END, interval_s=INTERVAL_S)
    assert [r["containment_rate"] for r in series] == [b["containment_rate"] for b in api_series]


def test_contact_center_panels_equal_the_api_kpis(store: ChdbStore, docs: Documents) -> None:
    uid = "cxpulse-contact-center"
    by = run(store, _panel(docs, uid, "KPIs by ${by}"))[1]
    busiest = max((r for r in by if r["value"]), key=lambda r: r["contacts"])["value"]
    for filters in ({}, {"queue": busiest}, {"channel": "voice", "shift": "night"}):
        (api,) = contact_queries.contact_kpis(store, START, END, filters)
        assert api["counts"]["contacts"] > 0
        for title, field in [("Service level", "service_level"), ("ASA", "asa_seconds"),
                             ("Abandonment", "abandonment_rate"), ("AHT", "aht_seconds"),
                             ("Transfer rate", "transfer_rate"),
                             ("IVR containment", "ivr_containment_rate"),
                             ("Zero-out", "zero_out_rate"), ("FCR", "fcr_rate"),
                             ("FCR is", "fcr_final"), ("CSAT", "csat"), ("NPS", "nps"),
                             ("CES", "ces")]:  # fmt: skip
            _, rows = run(store, _panel(docs, uid, title), **{k: [v] for k, v in filters.items()})
            assert rows == [{field: api[field]}], (filters, title)
    for row in by:
        (api,) = contact_queries.contact_kpis(store, START, END, {"queue": row["value"]})
        assert row["service_level"] == api["service_level"]
        assert row["contacts"] == api["counts"]["contacts"]
    _, series = run(store, _panel(docs, uid, "Service level and abandonment"))
    api_series = contact_queries.contact_kpis(store, START, END, interval_s=INTERVAL_S)
    assert [(r["service_level"], r["abandonment_rate"]) for r in series] == [
        (b["service_level"], b["abandonment_rate"]) for b in api_series
    ]


def test_freshness_and_alert_panels(store: ChdbStore, docs: Documents) -> None:
    newest = min(p["newest_ms"] for p in funnel_queries.freshness(store))
    for board in docs.dashboards:
        _, rows = run(store, _panel(docs, board["uid"], "Data as of (seconds ago)"))
        assert rows[0]["freshness_seconds"] == pytest.approx(time.time() - newest / 1000, abs=5)

    _, firing = run(store, _panel(docs, "cxpulse-oncall", "Firing alerts"))
    assert [(r["step"], r["segment_text"]) for r in firing] == [("troubleshoot", "device=mobile")]
    assert firing[0]["rise"] == pytest.approx(0.84 / 0.52)
    _, history = run(store, _panel(docs, "cxpulse-oncall", "Alert history"))
    assert [r["id"] for r in history] == [
        a["id"] for a in alert_queries.alerts(store, None, START, END)
    ]
    assert len(history) == 2
    _, only = run(store, _panel(docs, "cxpulse-oncall", "Alert history"), device=["mobile"])
    assert [r["rule"] for r in only] == ["dropoff_rising"]
    _, none = run(
        store, _panel(docs, "cxpulse-oncall", "Firing alerts"), rule=["abandonment_spike"]
    )
    assert none == []


def _rule_sql(docs: Documents, uid: str) -> str:
    rule = next(r for r in docs.rules if r["uid"] == uid)
    return str(rule["data"][0]["model"]["rawSql"])


@pytest.mark.parametrize("minutes_ago", [0, 10, 20])
def test_dropoff_rule_judges_as_the_worker_does(
    store: ChdbStore, docs: Documents, minutes_ago: int
) -> None:
    """Same counts as `alert_queries.timely_dropoff` with tau fixed at the cap, same verdicts as
    `alerting.judge`; the mobile troubleshoot incident fires."""
    config = _config()
    at = NOW - minutes_ago * MINUTE
    columns, rows = run(store, _rule_sql(docs, "cxpulse-dropoff-self_service"), end=at)
    assert columns == {"step": "String", "segment": "String", "z_breach": "Float64"}
    counts = alert_queries.timely_dropoff(
        store, FUNNEL.name, {k: config.tau_seconds * 1000 for k in range(1, len(STEPS))}, at,
        window_ms=config.window_seconds * 1000, baseline_ms=config.baseline_seconds * 1000,
        span_ms=FUNNEL.window_ms, segment_attrs=config.segment_attrs,
    )  # fmt: skip
    expected = {}
    for obs in alerting.dropoff_observations(FUNNEL.name, STEPS, counts):
        verdict = alerting.judge(obs.window_hits, obs.window_n, obs.base_hits, obs.base_n,
                                 config.thresholds)  # fmt: skip
        segment = ",".join(f"{k}={v}" for k, v in obs.segment.items()) or "all"
        expected[(obs.step, segment)] = verdict.z if verdict.breach else 0.0
    got = {(r["step"], r["segment"]): r["z_breach"] for r in rows}
    assert got.keys() == expected.keys()
    for key, z in expected.items():
        assert got[key] == pytest.approx(z, rel=1e-12), key
    assert got[("troubleshoot", "device=mobile")] >= config.thresholds.min_z


def test_contact_rules_judge_as_the_worker_does(store: ChdbStore, docs: Documents) -> None:
    config = _config()
    counts = alert_queries.contact_alert_counts(
        store, END, settle_ms=config.contact_settle_seconds * 1000,
        window_ms=config.window_seconds * 1000, baseline_ms=config.baseline_seconds * 1000,
        segment_columns=config.contact_segments,
    )  # fmt: skip
    observations = alerting.contact_observations(counts, config.service_level_target)
    for uid, rule in [("cxpulse-service-level", alerting.SERVICE_LEVEL),
                      ("cxpulse-abandonment", alerting.ABANDONMENT)]:  # fmt: skip
        columns, rows = run(store, _rule_sql(docs, uid))
        assert columns == {"segment": "String", "z_breach": "Float64"}
        expected = {}
        for obs in (o for o in observations if o.rule == rule):
            verdict = alerting.judge(obs.window_hits, obs.window_n, obs.base_hits, obs.base_n,
                                     config.thresholds)  # fmt: skip
            segment = ",".join(f"{k}={v}" for k, v in obs.segment.items()) or "all"
            expected[segment] = verdict.z if verdict.breach and obs.gate else 0.0
        got = {r["segment"]: r["z_breach"] for r in rows}
        assert got.keys() == expected.keys()
        assert len(got) > 5
        for key, z in expected.items():
            assert got[key] == pytest.approx(z, rel=1e-12), (uid, key)


def test_rule_files_point_at_the_provisioned_datasource(docs: Documents) -> None:
    for rule in docs.rules:
        query, threshold = rule["data"]
        assert query["datasourceUid"] == docs.datasource["uid"] == "cxpulse-clickhouse"
        assert threshold["model"]["expression"] == "A"
        assert rule["condition"] == "B"
        assert rule["folderUID"] == docs.folder["uid"]
        assert rule["ruleGroup"] == "cxpulse"
