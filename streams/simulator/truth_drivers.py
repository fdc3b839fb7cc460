"""Drop-off drivers in the ground truth (design section 4b): which segment values, eligibility
refusal reasons or failed tests go with more drop-off at a step than the rest.

Event-derived facts are read from the journey's own portal events (same key, from its first to
its last event), not from anything the worker stores.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from cxpulse.schemas.stats import MIN_N, bonferroni, rate, significant
from cxpulse.schemas.vocabulary import SEGMENT_ATTRS
from cxpulse.streams.simulator.clock import format_ms
from cxpulse.streams.simulator.truth_events import ParsedEvent
from cxpulse.streams.simulator.truth_scenario import comparison, in_range


def journey_facts(
    journeys: Sequence[Mapping[str, Any]], portal_events: Iterable[ParsedEvent]
) -> dict[str, set[tuple[str, str, str]]]:
    """(kind, attr, value) facts per journey_id: its segment attributes (the named dimensions
    of design section 1, as the API tests them; an experiment's variant is compare's job), the
    `reason` of each eligibility check that refused the customer, and each failed step."""
    by_key: dict[str, list[ParsedEvent]] = defaultdict(list)
    for event in portal_events:
        by_key[event.key].append(event)
    facts: dict[str, set[tuple[str, str, str]]] = {}
    for journey in journeys:
        attrs = journey["attrs"]
        found = {("attr", a, str(attrs[a])) for a in SEGMENT_ATTRS if a in attrs}
        for e in by_key.get(journey["key"], []):
            if not journey["start_ms"] <= e.ms <= journey["last_activity_ms"]:
                continue
            reason = e.data.get("reason")
            if e.type == "portal.eligibility_checked" and e.data.get("eligible") is False:
                if isinstance(reason, str):
                    found.add(("eligibility_reason", "reason", reason))
            elif e.type == "portal.step_completed" and e.data.get("outcome") == "fail":
                found.add(("test_failed", "step", str(e.data.get("step"))))
        facts[journey["journey_id"]] = found
    return facts


def drivers(
    journeys: Sequence[Mapping[str, Any]],
    facts: Mapping[str, set[tuple[str, str, str]]],
    funnel: Mapping[str, Any],
    step: str,
    start_ms: int,
    end_ms: int,
) -> dict[str, Any]:
    """The drivers response (without freshness) for step k >= 2 of `funnel`."""
    name = str(funnel["name"])
    k = [str(s["name"]) for s in funnel["steps"]].index(step)
    if k < 1:
        raise ValueError("step 1 has no drop-off")
    population = [
        j
        for j in in_range(journeys, name, start_ms, end_ms, {})
        if j["outcome"] != "in_progress" and j["funnels"][name]["reach_ms"][k - 1] is not None
    ]
    n_all = len(population)
    dropped_ids = {j["journey_id"] for j in population if j["funnels"][name]["reach_ms"][k] is None}
    d_all = len(dropped_ids)
    n: dict[tuple[str, str, str], int] = defaultdict(int)
    d: dict[tuple[str, str, str], int] = defaultdict(int)
    for journey in population:
        for fact in facts[journey["journey_id"]]:
            n[fact] += 1
            d[fact] += journey["journey_id"] in dropped_ids
    tested = sorted(fact for fact, count in n.items() if count >= MIN_N)
    rows = []
    for kind, attr, value in tested:
        na, da = n[(kind, attr, value)], d[(kind, attr, value)]
        nb, db = n_all - na, d_all - da
        rate_a, rate_b = rate(da, na), rate(db, nb)
        figures = comparison(da, na, db, nb)
        adjusted = bonferroni(figures["p_value"], len(tested))
        rows.append(
            {
                "kind": kind,
                "attr": attr,
                "value": value,
                "journeys": na,
                "dropped": da,
                "rate": rate_a,
                "rate_rest": rate_b,
                "lift": None if not rate_b or rate_a is None else rate_a / rate_b,
                "excess": None if rate_a is None or rate_b is None else (rate_a - rate_b) * na,
                "z": figures["z"],
                "p_value": figures["p_value"],
                "p_adjusted": adjusted,
                "significant": significant(adjusted),
            }
        )
    rows.sort(
        key=lambda r: (r["excess"] is None, -(r["excess"] or 0.0), r["attr"], r["value"], r["kind"])
    )
    return {
        "funnel": name,
        "step": step,
        "start": format_ms(start_ms),
        "end": format_ms(end_ms),
        "population": n_all,
        "dropped": d_all,
        "rate": rate(d_all, n_all),
        "drivers": rows,
    }
