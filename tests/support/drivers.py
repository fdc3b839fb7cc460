"""Hand-made `journey_funnels` rows for the drop-off drivers, and their expected figures counted
independently from the journeys' own description (not from the store or the query module).

Funnel `f` has steps s0, s1, s2; the drivers are those of s2 (index 2): the population is the
closed journeys of `f` that entered in [START, END) and reached s1.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Any

from cxpulse.schemas.times import ch_time

START = 1_790_000_000_000
END = START + 3_600_000
REASON = ("eligibility_reason", "reason", "out_of_warranty")


@dataclass(frozen=True)
class Journey:
    attrs: dict[str, str]
    dropped: bool
    facts: tuple[tuple[str, str, str], ...] = ()


def population() -> list[Journey]:
    """130 journeys: mobile drops off most (30 of 60); tablet has 10 journeys (not tested);
    every dropped journey has entry=email, so entry=email's rest never drops (lift null); the
    reason fact marks exactly the tier=business journeys (a tie in excess, broken by attr)."""
    journeys = []
    groups = (("mobile", 60, 30), ("desktop", 60, 6), ("tablet", 10, 5))
    email_kept = 9
    for device, n, dropped in groups:
        for i in range(n):
            drop = i < dropped
            business = device == "tablet" or (device == "desktop" and i < 30)
            entry = "email" if drop or (device == "mobile" and i < 30 + email_kept) else "web"
            attrs = {"device": device, "tier": "business" if business else "consumer"}
            attrs |= {"entry": entry, "locale": ("de", "fr")[i % 2], "custom": "ignored"}
            journeys.append(Journey(attrs, drop, (REASON,) if business else ()))
    return journeys


def _row(jid: str, at: int, reach: list[int | None], attrs: dict[str, str], **extra: Any) -> Any:
    row = {
        "funnel": "f", "journey_key": "k-" + jid, "journey_id": jid, "version": 1,
        "is_deleted": 0, "start_at": ch_time(at), "entered_at": ch_time(at), "closed": 1,
        "outcome": "abandoned", "attrs": attrs, "reach_ms": reach, "last_step": 0,
        "dropped_step": -1, "escalated_step": -1, "abandoned_step": -1, "facts": [],
    }  # fmt: skip
    return row | extra


def rows() -> list[dict[str, Any]]:
    """The population's rows, and rows that must not count."""
    out = []
    for i, j in enumerate(population()):
        reach = [0, 10, None if j.dropped else 20]
        outcome = "abandoned" if j.dropped else ("self_served", "escalated")[i % 2]
        facts = [list(f) for f in j.facts]
        out.append(_row(f"p{i}", START + i * 1000, reach, j.attrs, outcome=outcome, facts=facts))
    mobile = {"device": "mobile"}
    out += [
        _row("open", START, [0, 10, None], mobile, closed=0, outcome="in_progress"),
        _row("s0only", START, [0, None, None], mobile),  # never reached s1
        _row("other", START, [0, 10, None], mobile, funnel="g"),
        _row("early", START - 1, [0, 10, None], mobile),
        _row("at_end", END, [0, 10, None], mobile),
        _row("gone", START, [0, 10, None], mobile),
        _row("gone", START, [0, 10, None], mobile, version=2, is_deleted=1),
    ]
    # p0 (dropped) had a first version that had not dropped: only its latest version counts.
    stale = out[0] | {"reach_ms": [0, 10, 20], "outcome": "self_served"}
    out[0] |= {"version": 2}
    return [stale, *out]


def expected(journeys: list[Journey]) -> dict[str, Any]:
    """Design section 4b by hand: every candidate with 30 or more journeys against the rest."""
    total, dropped = len(journeys), sum(j.dropped for j in journeys)
    n: Counter[tuple[str, str, str]] = Counter()
    x: Counter[tuple[str, str, str]] = Counter()
    for j in journeys:
        segments = {("attr", a, v) for a, v in j.attrs.items() if a != "custom"}
        for candidate in segments | set(j.facts):
            n[candidate] += 1
            x[candidate] += j.dropped
    tested = sorted(c for c in n if n[c] >= 30)
    drivers = []
    for kind, attr, value in tested:
        na, xa = n[kind, attr, value], x[kind, attr, value]
        nb, xb = total - na, dropped - xa
        pa, pb = xa / na, (xb / nb if nb else None)
        pooled = (xa + xb) / (na + nb)
        z = p = None
        if min(na, nb) >= 30 and 0 < pooled < 1 and pb is not None:
            z = (pa - pb) / math.sqrt(pooled * (1 - pooled) * (1 / na + 1 / nb))
            p = math.erfc(abs(z) / math.sqrt(2))
        adjusted = None if p is None else min(1.0, p * len(tested))
        drivers.append({
            "kind": kind, "attr": attr, "value": value, "journeys": na, "dropped": xa,
            "rate": pa, "rate_rest": pb, "lift": pa / pb if pb else None,
            "excess": None if pb is None else (pa - pb) * na, "z": z, "p_value": p,
            "p_adjusted": adjusted, "significant": adjusted is not None and adjusted < 0.05,
        })  # fmt: skip
    drivers.sort(key=lambda d: (d["excess"] is None, -(d["excess"] or 0), d["attr"], d["value"]))
    return {"population": total, "dropped": dropped, "rate": dropped / total, "drivers": drivers}
