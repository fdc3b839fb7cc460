"""Journeys written straight into `journey_funnels`, with what a test needs to count them itself.

The change-impact and experiment tests know every journey they store (its funnel, step-1 time,
attributes, deepest step, outcome), so their expected figures are counted from these records,
never from the code under test. Each journey is stored as an older version that the latest
replaces, and some as a tombstone, so a query that forgets `FINAL` or the deletions miscounts.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from cxpulse.schemas.times import ch_time
from cxpulse.sinks.store import Store

OUTCOMES_OPEN = ("escalated", "abandoned", "in_progress")


@dataclass(frozen=True)
class Journey:
    funnel: str
    key: str
    entered_ms: int
    steps: int  # steps in the funnel
    depth: int  # steps reached, 1..steps
    outcome: str
    attrs: Mapping[str, str] = field(default_factory=dict)
    deleted: bool = False

    def reached(self, k: int) -> bool:
        """Whether 0-based step k was reached."""
        return k < self.depth


def _row(j: Journey, version: int, deleted: bool, outcome: str) -> dict[str, Any]:
    reach: list[int | None] = [k * 60_000 if j.reached(k) else None for k in range(j.steps)]
    return {
        "funnel": j.funnel, "journey_key": j.key, "journey_id": f"{j.key}-1",
        "version": version, "is_deleted": int(deleted),
        # Entry into the funnel (step 1) is what buckets a journey, not its start.
        "start_at": ch_time(j.entered_ms - 20 * 60_000), "entered_at": ch_time(j.entered_ms),
        "closed": int(outcome != "in_progress"), "outcome": outcome, "attrs": dict(j.attrs),
        "reach_ms": reach, "last_step": j.depth - 1, "dropped_step": -1, "escalated_step": -1,
        "abandoned_step": -1,
    }  # fmt: skip


def store_journeys(store: Store, journeys: Iterable[Journey]) -> None:
    """An in-progress first version of every journey, then its latest (or its tombstone)."""
    rows = []
    for j in journeys:
        rows.append(_row(j, 1, False, "in_progress"))
        rows.append(_row(j, 2, j.deleted, j.outcome))
    store.insert("journey_funnels", rows)


def random_journeys(
    rng: random.Random,
    funnel: str,
    steps: int,
    count: int,
    span: tuple[int, int],
    attrs: Sequence[Mapping[str, str]],
    deeper_after: int | None = None,
) -> list[Journey]:
    """`count` journeys entering in [span), each with attributes from `attrs`; those entering at
    or after `deeper_after` reach further on average (a change with an effect). One in 25 is
    deleted."""
    journeys = []
    for i in range(count):
        entered = rng.randrange(*span)
        bonus = 1 if deeper_after is not None and entered >= deeper_after else 0
        depth = min(steps, rng.randint(1, steps) + bonus * rng.randint(0, 2))
        outcome = "self_served" if depth == steps else rng.choice(OUTCOMES_OPEN)
        key = f"{funnel}-{rng.getrandbits(64):016x}"
        deleted = i % 25 == 7
        journeys.append(
            Journey(funnel, key, entered, steps, depth, outcome, rng.choice(attrs), deleted)
        )
    return journeys


def two_proportions(xa: int, na: int, xb: int, nb: int) -> dict[str, Any]:
    """Design section 4b written out again, term by term, as the tests' reference."""
    if na == 0 or nb == 0:
        return dict.fromkeys(("diff", "relative", "ci95", "z", "p_value"))
    pa, pb = xa / na, xb / nb
    diff = pa - pb
    out: dict[str, Any] = {"diff": diff, "relative": None if pb == 0 else diff / pb}
    pooled = (xa + xb) / (na + nb)
    if na < 30 or nb < 30 or pooled in (0, 1):
        return out | {"ci95": None, "z": None, "p_value": None}
    se = math.sqrt(pa * (1 - pa) / na + pb * (1 - pb) / nb)
    z = diff / math.sqrt(pooled * (1 - pooled) * (1 / na + 1 / nb))
    half = 1.959963984540054 * se
    return out | {"ci95": [diff - half, diff + half], "z": z,
                  "p_value": math.erfc(abs(z) / math.sqrt(2))}  # fmt: skip


def assert_figures(got: Mapping[str, Any], expected: Mapping[str, Any]) -> None:
    """Counts, rates and diff exactly; the statistics to 1e-12 (the same formula, evaluated by
    another hand); nulls where the reference has them."""
    for name, value in expected.items():
        if name in ("z", "p_value", "p_adjusted", "ci95", "relative") and value is not None:
            assert got[name] == pytest.approx(value, rel=1e-12, abs=1e-300), name
        else:
            assert got[name] == value, name
