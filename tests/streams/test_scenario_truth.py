"""The ground truth's change impact, experiment comparison and drivers equal a plain recomputation
from the emitted events, written here from design section 4b without the truth modules."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import pytest

from cxpulse.streams.simulator.clock import DAY_MS, HOUR_MS, format_ms, parse_ms
from cxpulse.streams.simulator.config import SimConfig
from cxpulse.streams.simulator.run import GroundTruthCollector, Plan, questions_of
from cxpulse.streams.simulator.scenario import Experiment, SimChange
from cxpulse.streams.simulator.truth_funnels import load_funnels
from tests.support.truth import assert_same

START = parse_ms("2026-11-20T00:00:00.000+00:00")
GAP, ESCALATION, CONVERSION = 30 * 60_000, 72 * HOUR_MS, 24 * HOUR_MS
# The default funnel's steps as (event type, data that must match).
STEPS: list[tuple[str, str, dict[str, Any]]] = [
    ("session_started", "portal.session_started", {}),
    ("identify_device", "portal.step_completed", {"step": "identify_device"}),
    ("diagnose", "portal.step_completed", {"step": "diagnose"}),
    ("troubleshoot", "portal.step_completed", {"step": "troubleshoot"}),
    ("eligibility_checked", "portal.eligibility_checked", {}),
    ("eligible", "portal.eligibility_checked", {"eligible": True}),
    ("order_placed", "portal.order_placed", {}),
]
NAMES = [name for name, _, _ in STEPS]
# The segment attributes of design section 1: drivers test these, not an experiment's variant.
SEGMENTS = {"product_line", "device", "locale", "region", "tier", "entry"}


def _stats(xa: int, na: int, xb: int, nb: int) -> dict[str, Any]:
    pa, pb = (xa / na if na else None), (xb / nb if nb else None)
    if pa is None or pb is None:
        return {"diff": None, "relative": None, "ci95": None, "z": None, "p_value": None}
    diff = pa - pb
    out: dict[str, Any] = {"diff": diff, "relative": diff / pb if pb else None}
    pooled = (xa + xb) / (na + nb)
    if na < 30 or nb < 30 or pooled in (0, 1):
        return {**out, "ci95": None, "z": None, "p_value": None}
    half = 1.959963984540054 * math.sqrt(pa * (1 - pa) / na + pb * (1 - pb) / nb)
    z = diff / math.sqrt(pooled * (1 - pooled) * (1 / na + 1 / nb))
    p = math.erfc(abs(z) / math.sqrt(2))
    return {**out, "ci95": [diff - half, diff + half], "z": z, "p_value": p}


def _journeys(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Named customers only (the run has no anonymous sessions): runs of a customer's portal
    events with gaps <= 30 min, their step reach, escalation and outcome, all closed."""
    portal: dict[str, list[tuple[int, dict[str, Any]]]] = defaultdict(list)
    contacts: dict[str, list[int]] = defaultdict(list)
    for e in events:
        t = parse_ms(e["occurred_at"])
        if e["type"].startswith("portal."):
            portal[e["customer_id"]].append((t, e))
        elif e["type"] == "cc.contact_started":
            contacts[e["customer_id"]].append(t)
    rows = []
    for customer, timed in portal.items():
        timed.sort(key=lambda te: (te[0], te[1]["event_id"]))
        runs: list[list[tuple[int, dict[str, Any]]]] = []
        for item in timed:
            if runs and item[0] - runs[-1][-1][0] <= GAP:
                runs[-1].append(item)
            else:
                runs.append([item])
        for index, run in enumerate(runs):
            start, last = run[0][0], run[-1][0]
            following = runs[index + 1][0][0] if index + 1 < len(runs) else None
            reach: list[int | None] = []
            for _, etype, data in STEPS:
                after = reach[-1] if reach else None
                if reach and after is None:
                    reach.append(None)
                    continue
                hit = next(
                    (
                        t
                        for t, e in run
                        if e["type"] == etype
                        and all(e["data"].get(k) == v for k, v in data.items())
                        and (after is None or after <= t <= reach[0] + CONVERSION)
                    ),
                    None,
                )
                reach.append(hit)
            helps = [t for t, e in run if e["type"] == "portal.help_requested"]
            calls = [
                t
                for t in contacts[customer]
                if start < t <= last + ESCALATION and (following is None or t < following)
            ]
            escalated = min(helps[:1] + sorted(calls)[:1], default=None)
            ordered = next((t for t, e in run if e["type"] == "portal.order_placed"), None)
            if escalated is not None and (ordered is None or escalated < ordered):
                outcome = "escalated"
            else:
                outcome = "self_served" if ordered is not None else "abandoned"
            facts = {("attr", a, v) for a, v in run[0][1]["attrs"].items() if a in SEGMENTS}
            for _, e in run:
                if e["type"] == "portal.eligibility_checked" and not e["data"]["eligible"]:
                    facts.add(("eligibility_reason", "reason", e["data"]["reason"]))
                if e["type"] == "portal.step_completed" and e["data"]["outcome"] == "fail":
                    facts.add(("test_failed", "step", e["data"]["step"]))
            attrs = run[0][1]["attrs"]
            rows.append({"reach": reach, "outcome": outcome, "attrs": attrs, "facts": facts})
    return [row for row in rows if row["reach"][0] is not None]


def _impact(journeys: list[dict[str, Any]], change: SimChange, window: int) -> dict[str, Any]:
    at = change.at_ms
    before = [j for j in journeys if at - window <= j["reach"][0] < at]
    after = [j for j in journeys if at <= j["reach"][0] < at + window]
    steps, outcomes = [], []
    for k in range(1, len(STEPS)):
        xb = sum(j["reach"][k] is not None for j in before)
        xa = sum(j["reach"][k] is not None for j in after)
        s = _stats(xa, len(after), xb, len(before))
        steps.append(
            {
                "step": NAMES[k],
                "before": {"reached": xb, "rate": xb / len(before)},
                "after": {"reached": xa, "rate": xa / len(after)},
                **s,
                "significant": s["p_value"] is not None and s["p_value"] < 0.05,
            }
        )
    for outcome in ("self_served", "escalated"):
        xb = sum(j["outcome"] == outcome for j in before)
        xa = sum(j["outcome"] == outcome for j in after)
        s = _stats(xa, len(after), xb, len(before))
        outcomes.append(
            {
                "outcome": outcome,
                "before": {"count": xb, "rate": xb / len(before)},
                "after": {"count": xa, "rate": xa / len(after)},
                **s,
                "significant": s["p_value"] is not None and s["p_value"] < 0.05,
            }
        )
    span = {"before": (at - window, at, len(before)), "after": (at, at + window, len(after))}
    return {
        "change": change.id,
        "window_seconds": window // 1000,
        "provisional": False,
        "funnels": [
            {
                "funnel": "self_service",
                **{
                    p: {"start": format_ms(a), "end": format_ms(b), "journeys": n}
                    for p, (a, b, n) in span.items()
                },
                "steps": steps,
                "outcomes": outcomes,
            }
        ],
    }


def _compare(journeys: list[dict[str, Any]], values: tuple[str, ...]) -> list[dict[str, Any]]:
    groups = {v: [j for j in journeys if j["attrs"]["variant"] == v] for v in values}
    control = groups[values[0]]
    m = (len(values) - 1) * (len(STEPS) - 1)
    out = []
    for value in sorted(values):
        cells = []
        for k in range(1, len(STEPS)):
            x = sum(j["reach"][k] is not None for j in groups[value])
            cell = {"step": NAMES[k], "reached": x, "rate": x / len(groups[value])}
            if value == values[0]:
                cell.update(
                    {
                        f: None
                        for f in (
                            "diff",
                            "relative",
                            "ci95",
                            "z",
                            "p_value",
                            "p_adjusted",
                            "significant",
                        )
                    }
                )
            else:
                xc = sum(j["reach"][k] is not None for j in control)
                s = _stats(x, len(groups[value]), xc, len(control))
                adjusted = None if s["p_value"] is None else min(1.0, s["p_value"] * m)
                significant = adjusted is not None and adjusted < 0.05
                cell.update(s, p_adjusted=adjusted, significant=significant)
            cells.append(cell)
        out.append({"value": value, "journeys": len(groups[value]), "steps": cells})
    return out


def _drivers(journeys: list[dict[str, Any]], step: str) -> dict[str, Any]:
    k = NAMES.index(step)
    population = [j for j in journeys if j["reach"][k - 1] is not None]
    dropped = [j for j in population if j["reach"][k] is None]
    values = sorted({f for j in population for f in j["facts"]})
    tested = [f for f in values if sum(f in j["facts"] for j in population) >= 30]
    rows = []
    for fact in tested:
        na = sum(fact in j["facts"] for j in population)
        da = sum(fact in j["facts"] for j in dropped)
        nb, db = len(population) - na, len(dropped) - da
        ra, rb = da / na, (db / nb if nb else None)
        s = _stats(da, na, db, nb)
        adjusted = None if s["p_value"] is None else min(1.0, s["p_value"] * len(tested))
        rows.append(
            {
                "kind": fact[0],
                "attr": fact[1],
                "value": fact[2],
                "journeys": na,
                "dropped": da,
                "rate": ra,
                "rate_rest": rb,
                "lift": ra / rb if rb else None,
                "excess": None if rb is None else (ra - rb) * na,
                "z": s["z"],
                "p_value": s["p_value"],
                "p_adjusted": adjusted,
                "significant": adjusted is not None and adjusted < 0.05,
            }
        )
    rows.sort(
        key=lambda r: (r["excess"] is None, -(r["excess"] or 0), r["attr"], r["value"], r["kind"])
    )
    return {"population": len(population), "dropped": len(dropped), "drivers": rows}


@pytest.fixture(scope="module")
def run() -> tuple[SimConfig, list[dict[str, Any]], dict[str, Any]]:
    change = SimChange("sim-change-1", START + DAY_MS, "diagnose", -0.08)
    experiment = Experiment("variant", ("A", "B", "C"), "troubleshoot", {"B": 0.15})
    config = SimConfig(
        seed=21,
        start_ms=START,
        rate=0.25,
        anonymous_share=0.0,
        changes=(change,),
        experiments=(experiment,),
    )
    collector = GroundTruthCollector()
    now = START + 3 * DAY_MS
    for message in Plan(config, count=40_000).messages():
        collector.observe(message, now)
    truth = collector.ground_truth(load_funnels(), questions=questions_of(config, DAY_MS, now))
    return config, list(collector.events.values()), truth


def test_impact_equals_a_recomputation(run: tuple[SimConfig, list[Any], dict[str, Any]]) -> None:
    config, events, truth = run
    assert truth["changes"] == [config.changes[0].record()]
    expected = _impact(_journeys(events), config.changes[0], DAY_MS)
    assert min(expected["funnels"][0][p]["journeys"] for p in ("before", "after")) > 500
    assert_same(truth["impact"], [expected])


def test_compare_equals_a_recomputation(run: tuple[SimConfig, list[Any], dict[str, Any]]) -> None:
    _, events, truth = run
    (compared,) = truth["compare"]
    assert (compared["by"], compared["control"]) == ("variant", "A")
    assert (compared["start"], compared["end"]) == (format_ms(START), format_ms(START + 3 * DAY_MS))
    assert_same(compared["groups"], _compare(_journeys(events), ("A", "B", "C")))
    counts = [g["journeys"] for g in compared["groups"]]
    chi2 = sum((n - sum(counts) / 3) ** 2 / (sum(counts) / 3) for n in counts)
    assert_same(compared["srm"], {"chi2": chi2, "p_value": math.exp(-chi2 / 2), "mismatch": False})


def test_drivers_equal_a_recomputation(run: tuple[SimConfig, list[Any], dict[str, Any]]) -> None:
    _, events, truth = run
    journeys = _journeys(events)
    assert [d["step"] for d in truth["drivers"]] == ["diagnose", "troubleshoot"]
    for block in truth["drivers"]:
        expected = _drivers(journeys, block["step"])
        assert_same({k: block[k] for k in ("population", "dropped", "drivers")}, expected)
        assert block["rate"] == expected["dropped"] / expected["population"]
    kinds = {d["kind"] for d in truth["drivers"][1]["drivers"]}
    assert kinds == {"attr", "eligibility_reason", "test_failed"}
    top = truth["drivers"][1]["drivers"][0]
    assert (top["attr"], top["value"]) == ("device", "mobile")  # the model's struggling segment
    assert top["excess"] > 0
