"""Change impact and experiment comparison in the ground truth (design section 4b).

Counted straight from the journey rows of `compute_ground_truth`; only the statistics formula is
shared with the API (schemas/stats.py), so the two can differ only in what they count.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cxpulse.schemas.stats import bonferroni, compare, rate, sample_ratio_mismatch, significant
from cxpulse.streams.simulator.clock import format_ms
from cxpulse.streams.simulator.truth_events import epoch_ms

_MINUTE_MS = 60_000
_IMPACT_OUTCOMES = ("self_served", "escalated")


@dataclass(frozen=True)
class Questions:
    """What a simulated scenario asks of its events: the impact of each change (records as the
    API takes them) over `window_ms` as of `now_ms`, and per experiment attribute (with its
    control value) the comparison and the drivers of `driver_steps`, over [start_ms, end_ms)."""

    changes: tuple[Mapping[str, Any], ...]
    window_ms: int
    now_ms: int
    experiments: tuple[tuple[str, str], ...]
    funnel: str
    driver_steps: tuple[str, ...]
    start_ms: int
    end_ms: int


def entered_ms(journey: Mapping[str, Any], funnel: str) -> int | None:
    """Step-1 time of a journey in a funnel, None when it never entered it."""
    progress = journey["funnels"].get(funnel)
    return None if progress is None else progress["reach_ms"][0]


def in_range(
    journeys: Sequence[Mapping[str, Any]],
    funnel: str,
    start_ms: int,
    end_ms: int,
    filters: Mapping[str, str],
) -> list[Mapping[str, Any]]:
    """The funnel's journeys whose step-1 time is in [start, end) and whose attrs match."""
    return [
        j
        for j in journeys
        if (t := entered_ms(j, funnel)) is not None
        and start_ms <= t < end_ms
        and all(j["attrs"].get(name) == value for name, value in filters.items())
    ]


def comparison(xa: int, na: int, xb: int, nb: int) -> dict[str, Any]:
    """diff, relative, ci95, z, p_value of a against b, JSON-ready."""
    c = compare(xa, na, xb, nb)
    ci95 = None if c.ci95 is None else list(c.ci95)
    return {"diff": c.diff, "relative": c.relative, "ci95": ci95, "z": c.z, "p_value": c.p_value}


def _reached(journeys: Sequence[Mapping[str, Any]], funnel: str, k: int) -> int:
    return sum(1 for j in journeys if j["funnels"][funnel]["reach_ms"][k] is not None)


def _impact_block(
    journeys: Sequence[Mapping[str, Any]],
    funnel: Mapping[str, Any],
    at_ms: int,
    length_ms: int,
    filters: Mapping[str, str],
) -> dict[str, Any]:
    name = str(funnel["name"])
    before = in_range(journeys, name, at_ms - length_ms, at_ms, filters)
    after = in_range(journeys, name, at_ms, at_ms + length_ms, filters)
    nb, na = len(before), len(after)
    steps = []
    for k, step in enumerate(funnel["steps"][1:], start=1):
        xb, xa = _reached(before, name, k), _reached(after, name, k)
        figures = comparison(xa, na, xb, nb)
        steps.append(
            {
                "step": step["name"],
                "before": {"reached": xb, "rate": rate(xb, nb)},
                "after": {"reached": xa, "rate": rate(xa, na)},
                **figures,
                "significant": significant(figures["p_value"]),
            }
        )
    outcomes = []
    for outcome in _IMPACT_OUTCOMES:
        xb = sum(1 for j in before if j["outcome"] == outcome)
        xa = sum(1 for j in after if j["outcome"] == outcome)
        figures = comparison(xa, na, xb, nb)
        outcomes.append(
            {
                "outcome": outcome,
                "before": {"count": xb, "rate": rate(xb, nb)},
                "after": {"count": xa, "rate": rate(xa, na)},
                **figures,
                "significant": significant(figures["p_value"]),
            }
        )
    return {
        "funnel": name,
        "before": {"start": format_ms(at_ms - length_ms), "end": format_ms(at_ms), "journeys": nb},
        "after": {"start": format_ms(at_ms), "end": format_ms(at_ms + length_ms), "journeys": na},
        "steps": steps,
        "outcomes": outcomes,
    }


def impact(
    journeys: Sequence[Mapping[str, Any]],
    change: Mapping[str, Any],
    funnels: Sequence[Mapping[str, Any]],
    window_ms: int,
    now_ms: int,
) -> dict[str, Any]:
    """The impact response of a change record (without freshness): L = window when at + window
    <= now, else now - at truncated to whole minutes (provisional)."""
    at_ms = epoch_ms(change["at"])
    provisional = at_ms + window_ms > now_ms
    length_ms = max(0, now_ms - at_ms) // _MINUTE_MS * _MINUTE_MS if provisional else window_ms
    chosen = [f for f in funnels if change["funnel"] is None or f["name"] == change["funnel"]]
    return {
        "change": change["id"],
        "window_seconds": length_ms // 1000,
        "provisional": provisional,
        "funnels": [
            _impact_block(journeys, funnel, at_ms, length_ms, change["filters"])
            for funnel in chosen
        ],
    }


def compare_groups(
    journeys: Sequence[Mapping[str, Any]],
    funnel: Mapping[str, Any],
    by: str,
    control: str,
    start_ms: int,
    end_ms: int,
) -> dict[str, Any]:
    """The experiment comparison response (without freshness), equal expected shares."""
    name = str(funnel["name"])
    rows = [j for j in in_range(journeys, name, start_ms, end_ms, {}) if by in j["attrs"]]
    values = sorted({j["attrs"][by] for j in rows})
    members = {v: [j for j in rows if j["attrs"][by] == v] for v in values}
    steps = [str(step["name"]) for step in funnel["steps"]]
    tests = (len(values) - 1) * (len(steps) - 1)
    groups = []
    for value in values:
        n = len(members[value])
        cells = []
        for k, step in enumerate(steps[1:], start=1):
            x = _reached(members[value], name, k)
            cell: dict[str, Any] = {"step": step, "reached": x, "rate": rate(x, n)}
            if value == control:
                empty = ("diff", "relative", "ci95", "z", "p_value", "p_adjusted", "significant")
                cell.update(dict.fromkeys(empty))
            else:
                baseline = members.get(control, [])
                figures = comparison(x, n, _reached(baseline, name, k), len(baseline))
                adjusted = bonferroni(figures["p_value"], tests)
                cell.update(figures, p_adjusted=adjusted, significant=significant(adjusted))
            cells.append(cell)
        groups.append({"value": value, "journeys": n, "steps": cells})
    srm = sample_ratio_mismatch([len(members[v]) for v in values])
    return {
        "funnel": name,
        "by": by,
        "control": control,
        "start": format_ms(start_ms),
        "end": format_ms(end_ms),
        "srm": None
        if srm is None
        else {"chi2": srm.chi2, "p_value": srm.p_value, "mismatch": srm.mismatch},
        "groups": groups,
    }
