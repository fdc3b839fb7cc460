"""Funnels in the ground truth: step matching, reach times per journey, and funnel summaries."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from cxpulse.streams.simulator.truth_events import OUTCOMES, ParsedEvent, ratio

_DEFAULT_WINDOW_SECONDS = 24 * 3600


def _same_value(actual: Any, expected: Any) -> bool:
    """Exact equality, except that a bool never equals a number (True is not 1 in JSON)."""
    if isinstance(actual, bool) or isinstance(expected, bool):
        return type(actual) is type(expected) and actual == expected
    return bool(actual == expected)


def _fields_match(fields: Mapping[str, Any], wanted: Mapping[str, Any] | None) -> bool:
    """Every listed field present with exactly that value; a missing field never matches."""
    return all(
        name in fields and _same_value(fields[name], value)
        for name, value in (wanted or {}).items()
    )


def step_matches(
    event_type: str, data: Mapping[str, Any], attrs: Mapping[str, Any], step: Mapping[str, Any]
) -> bool:
    """Whether an event satisfies a funnel step's match on type, data and attrs fields."""
    return (
        event_type == step["type"]
        and _fields_match(data, step.get("data"))
        and _fields_match(attrs, step.get("attrs"))
    )


def reach_times(events: Sequence[ParsedEvent], funnel: Mapping[str, Any]) -> list[int | None]:
    """Reach time of every step: step 1 at its first match, step k at the earliest match with
    time >= reach(k-1) and <= reach(1) + window. The same event may reach several steps."""
    steps = funnel["steps"]
    reach: list[int | None] = [None] * len(steps)
    window_ms = int(funnel.get("conversion_window_seconds", _DEFAULT_WINDOW_SECONDS)) * 1000
    previous: int | None = None
    limit = 0
    for index, step in enumerate(steps):
        found: int | None = None
        for event in events:
            if previous is not None and event.ms < previous:
                continue
            if previous is not None and event.ms > limit:
                break
            if step_matches(event.type, event.data, event.attrs, step):
                found = event.ms
                break
        if found is None:
            break
        reach[index] = found
        if index == 0:
            limit = found + window_ms
        previous = found
    return reach


def _step_name(step: Mapping[str, Any] | str) -> str:
    return step if isinstance(step, str) else str(step["name"])


def _lower_median(values: Sequence[int]) -> int | None:
    """sorted[(n - 1) // 2]: an actual observation, like ClickHouse quantileExactLow(0.5)."""
    if not values:
        return None
    return sorted(values)[(len(values) - 1) // 2]


def summarize_funnel(
    journeys: Iterable[Mapping[str, Any]],
    funnel_name: str,
    steps: Sequence[Mapping[str, Any] | str],
) -> dict[str, Any]:
    """Funnel summary over journey rows (filter them first for a time range or a segment): only
    rows that reached step 1 of the funnel count. `steps` are the funnel's steps or their names."""
    names = [_step_name(step) for step in steps]
    count = 0
    outcomes = dict.fromkeys(OUTCOMES, 0)
    reached = [0] * len(names)
    dropped = [0] * len(names)
    escalated = [0] * len(names)
    abandoned = [0] * len(names)
    to_reach: list[list[int]] = [[] for _ in names]
    for journey in journeys:
        progress = journey["funnels"].get(funnel_name)
        if progress is None:
            continue
        count += 1
        outcome = journey["outcome"]
        outcomes[outcome] += 1
        reach = progress["reach_ms"]
        for k, reached_at in enumerate(reach):
            if reached_at is not None:
                reached[k] += 1
                to_reach[k].append(reached_at - reach[0])
        last = progress["last_step"]
        if journey["closed"] and outcome != "self_served":
            dropped[last] += 1
        if outcome == "escalated" and progress["escalated_step"] is not None:
            escalated[progress["escalated_step"]] += 1
        if outcome == "abandoned":
            abandoned[last] += 1
    return {
        "journeys": count,
        "outcomes": outcomes,
        "steps": [
            {
                "step": name,
                "reached": reached[k],
                # Step 1 has no previous step: it is compared with itself (1.0, or None if 0).
                "conversion_from_previous": ratio(reached[k], reached[max(k - 1, 0)]),
                "conversion_from_start": ratio(reached[k], reached[0]),
                "dropped": dropped[k],
                "escalated": escalated[k],
                "abandoned": abandoned[k],
                "median_ms_to_reach": _lower_median(to_reach[k]),
            }
            for k, name in enumerate(names)
        ],
    }


def default_funnels_path() -> Path:
    """streams/funnels.yaml, next to the streams package."""
    return Path(__file__).resolve().parents[1] / "funnels.yaml"


def load_funnels(path: Path | str | None = None) -> list[dict[str, Any]]:
    """The `funnels` list of a funnels YAML file (default: streams/funnels.yaml). pyyaml is
    imported here so that the rest of the module works without it."""
    import yaml

    text = Path(path if path is not None else default_funnels_path()).read_text(encoding="utf-8")
    document = yaml.safe_load(text) or {}
    return list(document.get("funnels") or [])
