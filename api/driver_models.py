"""The response of GET /v1/funnels/{name}/drivers (design section 4b); field names are the
contract, like those of api/models.py, whose shared field types they use."""

from __future__ import annotations

from pydantic import BaseModel, Field

from cxpulse.api.models import Freshness, Ratio, Time

_NULL_STAT = "null when either group has fewer than 30 journeys or none or all of them dropped"


class Driver(BaseModel):
    """One segment value or event fact (a = journeys with it) against the rest (b)."""

    kind: str = Field(
        description="`attr`: a segment attribute; `eligibility_reason`: the reason an "
        "eligibility check refused the customer; `test_failed`: a step whose test failed.",
        examples=["attr", "eligibility_reason", "test_failed"],
    )
    attr: str = Field(examples=["device", "reason", "step"])
    value: str = Field(examples=["mobile", "out_of_warranty", "troubleshoot"])
    journeys: int = Field(description="Journeys of the population with it (30 or more).")
    dropped: int
    rate: float = Field(description="dropped / journeys")
    rate_rest: Ratio
    lift: float | None = Field(description="rate / rate_rest; null when rate_rest is 0 or null")
    excess: float | None = Field(
        description="(rate - rate_rest) x journeys: drop-offs beyond the rest's rate"
    )
    z: float | None = Field(description=_NULL_STAT)
    p_value: float | None = Field(description=_NULL_STAT)
    p_adjusted: float | None = Field(description="Bonferroni over the values tested")
    significant: bool = Field(description="p_adjusted < 0.05")


class FunnelDrivers(BaseModel):
    """GET /v1/funnels/{name}/drivers: the population are the closed journeys that reached the
    step before `step`; the drivers are ranked by excess drop-offs, then attr, value, kind."""

    funnel: str
    step: str
    start: Time
    end: Time
    population: int
    dropped: int = Field(description="Journeys of the population that did not reach `step`.")
    rate: Ratio
    drivers: list[Driver]
    freshness_seconds: Freshness
