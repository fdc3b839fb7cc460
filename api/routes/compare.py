"""/v1/funnels/{name}/compare: an experiment's groups against its control (design section 4b).

A router of its own on the funnels prefix, so the funnel routes' module stays as it is. Any
journey attribute can name the groups; the other query parameters filter as on every funnel
route.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response

from cxpulse.api.deps import Context, Range, figures, segment_key, segment_of
from cxpulse.api.impact_models import FunnelCompare
from cxpulse.api.problems import Problem
from cxpulse.schemas import stats
from cxpulse.sinks import impact_queries
from cxpulse.sinks.query_sql import ATTR_NAME

router = APIRouter(prefix="/v1/funnels", tags=["funnels"])
MIN_SHARE, MAX_SHARE = 1e-6, 1e6
# Query parameters that are not segment filters.
_RESERVED = {"start", "end", "by", "control", "expected"}


def parse_expected(text: str | None) -> dict[str, float] | None:
    """`A:50,B:50` -> {group: share}; shares are numbers relative to each other, each within
    [MIN_SHARE, MAX_SHARE] so that no sum or ratio of them can overflow or vanish."""
    if text is None:
        return None
    shares: dict[str, float] = {}
    for item in text.split(","):
        value, sep, share = item.rpartition(":")
        try:
            weight = float(share)
        except ValueError:
            weight = math.nan
        if not sep or not value or not MIN_SHARE <= weight <= MAX_SHARE or value in shares:
            raise Problem(
                400,
                "Bad request",
                f"expected: {item[:40]!r} is not value:share (a share from {MIN_SHARE:g} to "
                f"{MAX_SHARE:g}, each value once), e.g. expected=A:50,B:50",
            )
        shares[value] = weight
    return shares


def compare_document(
    rows: list[dict[str, Any]],
    steps: list[str],
    control: str,
    expected: dict[str, float] | None,
) -> dict[str, Any]:
    """Groups, tests and SRM of the response from `impact_queries.compare`'s rows."""
    values = [row["value"] for row in rows]
    if control not in values:
        raise Problem(
            422, "Unknown control", f"control {control!r} is not among the groups: {values}"
        )
    counts, shares = [row["journeys"] for row in rows], None
    if expected is not None:
        unexpected = sorted(set(values) - set(expected))
        if unexpected:
            raise Problem(
                422,
                "Invalid expected shares",
                f"expected names {sorted(expected)}, but the groups are {values}: "
                f"{unexpected} missing",
            )
        # A group expected but without journeys is the clearest mismatch: it counts as 0.
        absent = sorted(set(expected) - set(values))
        counts += [0] * len(absent)
        shares = [expected[v] for v in values + absent]
    tests = (len(rows) - 1) * (len(steps) - 1)
    base = rows[values.index(control)]
    groups = []
    for row in rows:
        n = row["journeys"]
        group_steps = []
        for k in range(1, len(steps)):
            x = row["reached"][k]
            step: dict[str, Any] = {"step": steps[k], "reached": x, "rate": stats.rate(x, n)}
            if row["value"] == control:
                step.update(dict.fromkeys(_COMPARISON))
            else:
                result = stats.compare(x, n, base["reached"][k], base["journeys"])
                adjusted = stats.bonferroni(result.p_value, tests)
                step.update(
                    diff=result.diff,
                    relative=result.relative,
                    ci95=result.ci95,
                    z=result.z,
                    p_value=result.p_value,
                    p_adjusted=adjusted,
                    significant=stats.significant(adjusted),
                )
            group_steps.append(step)
        groups.append({"value": row["value"], "journeys": n, "steps": group_steps})
    srm = stats.sample_ratio_mismatch(counts, shares)
    return {
        "tests": tests,
        "srm": None
        if srm is None
        else {"chi2": srm.chi2, "p_value": srm.p_value, "mismatch": srm.mismatch},
        "groups": groups,
    }


_COMPARISON = ("diff", "relative", "ci95", "z", "p_value", "p_adjusted", "significant")


@router.get(
    "/{name}/compare",
    summary="Experiment groups (values of an attribute) against a control group",
    response_model=FunnelCompare,
)
async def compare(
    name: Annotated[str, Path(description="A funnel name from GET /v1/funnels.")],
    ctx: Context,
    window: Range,
    request: Request,
    by: Annotated[str, Query(description="The attribute whose values are the groups: variant.")],
    control: Annotated[str, Query(description="The control group's value of `by`.")],
    expected: Annotated[
        str | None, Query(description="Expected shares for the SRM check: A:50,B:50.")
    ] = None,
) -> Response:
    """Each group's steps against the control's (Bonferroni over every group and step);
    journeys without the attribute are left out. Extra query parameters filter by attribute."""
    funnel = ctx.funnel(name)
    if not ATTR_NAME.match(by):
        raise Problem(400, "Bad request", f"by: {by[:70]!r} is not an attribute name")
    shares = parse_expected(expected)
    steps = [s.name for s in funnel.steps]
    segment = segment_of(request, _RESERVED)

    def compute() -> dict[str, Any]:
        rows = impact_queries.compare(
            ctx.store, name, len(steps), by, window.start_ms, window.end_ms, segment
        )
        return {
            "funnel": name,
            "by": by,
            "control": control,
            "start": window.start,
            "end": window.end,
            **compare_document(rows, steps, control, shares),
        }

    shares_key = None if shares is None else tuple(sorted(shares.items()))
    key = ("compare", name, by, control, shares_key, window.start_ms, window.end_ms,
           segment_key(segment))  # fmt: skip
    return await figures(ctx, key, FunnelCompare, compute)
