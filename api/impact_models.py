"""Response shapes of change impact and experiment comparison (design section 4b); field names
are the contract, as in api/models.py."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field

from cxpulse.api.models import Freshness, Ratio, Time

Interval = Annotated[
    tuple[float, float] | None,
    Field(
        description="95 % interval of diff; null when either n < 30 or the pooled rate is 0 or 1"
    ),
]
Z = Annotated[
    float | None, Field(description="null when either n < 30 or the pooled rate is 0 or 1")
]


class Comparison(BaseModel):
    """Group a against group b (section 4b): diff = rate_a - rate_b, relative = diff / rate_b."""

    diff: float | None = Field(description="null when either group has no journeys")
    relative: float | None = Field(description="null when rate_b is 0 or undefined")
    ci95: Interval
    z: Z
    p_value: Z


class Period(BaseModel):
    start: Time
    end: Time
    journeys: int


class Reached(BaseModel):
    reached: int
    rate: Ratio


class Counted(BaseModel):
    count: int
    rate: Ratio


class ImpactStep(Comparison):
    step: str
    before: Reached
    after: Reached
    significant: bool = Field(description="p_value < 0.05 (no adjustment)")


class ImpactOutcome(Comparison):
    outcome: str
    before: Counted
    after: Counted
    significant: bool = Field(description="p_value < 0.05 (no adjustment)")


class ImpactCost(BaseModel):
    """What the change added (negative: saved), priced by the cost-to-serve rule."""

    escalations_added: float | None = Field(description="(after - before rate) x after journeys")
    self_served_added: float | None = Field(description="(after - before rate) x after journeys")
    cost_delta: float | None = Field(description="escalations x assisted + self-served x portal")
    currency: str


class FunnelImpact(BaseModel):
    funnel: str
    before: Period
    after: Period
    steps: list[ImpactStep] = Field(description="Steps 2 and later, rates from step 1.")
    outcomes: list[ImpactOutcome]
    cost: ImpactCost


class ChangeImpact(BaseModel):
    """GET /v1/changes/{id}/impact: after (a) against before (b), per funnel."""

    change: str
    title: str
    at: Time
    window_seconds: int = Field(description="L: the window, or the whole minutes since the change")
    provisional: bool = Field(description="The after-period is shorter than the window asked.")
    funnels: list[FunnelImpact]
    freshness_seconds: Freshness


class CompareStep(Comparison):
    step: str
    reached: int
    rate: Ratio
    p_adjusted: float | None = Field(description="min(1, p_value x m); null for the control")
    significant: bool | None = Field(description="p_adjusted < 0.05; null for the control")


class CompareGroup(BaseModel):
    value: str
    journeys: int
    steps: list[CompareStep] = Field(description="Steps 2 and later, rates from step 1.")


class Srm(BaseModel):
    """Sample-ratio mismatch: chi-square of the groups' journeys against the expected shares."""

    chi2: float
    p_value: float
    mismatch: bool = Field(description="p_value < 0.001")


class FunnelCompare(BaseModel):
    """GET /v1/funnels/{name}/compare: each group (a) against the control (b)."""

    funnel: str
    by: str
    control: str
    start: Time
    end: Time
    tests: int = Field(description="m = (groups - 1) x (steps - 1), the Bonferroni factor")
    srm: Srm | None = Field(description="null with fewer than two groups")
    groups: list[CompareGroup] = Field(description="Sorted by value.")
    freshness_seconds: Freshness
