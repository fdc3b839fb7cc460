"""The response shapes of the API (design section 8): `/openapi.json` publishes them, so field
names are checked by the contract test, and clients can generate code from them.

Field order is the order of the JSON the routes send. Objects stay open (no
`additionalProperties: false`): the design allows fields to be added, so a client must not
reject one; the contract test closes them, so an undocumented field still fails it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, WithJsonSchema
from pydantic.json_schema import JsonDict, SkipJsonSchema

#: RFC 3339 text (`schemas.times.iso_time`), kept as the text the route made: parsing it into a
#: datetime would re-serialize it differently (`Z` for `+00:00`).
Time = Annotated[str, WithJsonSchema({"type": "string", "format": "date-time"})]
#: A figure whose denominator may be 0 (design section 8: such a ratio is null).
Ratio = Annotated[float | None, Field(description="null when its denominator is 0")]
Freshness = Annotated[
    float | None,
    Field(
        description="Seconds from the newest stored event to now (the stalest partition "
        "decides); null while nothing is stored. Not covered by the ETag."
    ),
]
#: A Float64 column read from the store, which may hand whole values over as ints: passed on as
#: they are (1, not 1.0), as before there were models.
StoredFloat = Annotated[int | float, WithJsonSchema({"type": "number"})]


def _no_default(schema: JsonDict) -> None:
    del schema["default"]


def _series_field() -> Any:
    """A `series`: absent without `interval`, never null, so its schema has neither null nor a
    default."""
    description = "Only with `interval`: one point per bucket."
    return Field(None, description=description, json_schema_extra=_no_default)


class FunnelDefinition(BaseModel):
    name: str
    steps: list[str]
    conversion_window_seconds: int


class Funnels(BaseModel):
    """GET /v1/funnels."""

    funnels: list[FunnelDefinition]


class Outcomes(BaseModel):
    """Journeys by outcome (design section 4); `in_progress` ones are not closed yet."""

    self_served: int
    escalated: int
    abandoned: int
    in_progress: int


class SummaryStep(BaseModel):
    step: str
    reached: int
    conversion_from_previous: Ratio
    conversion_from_start: Ratio
    dropped: int
    escalated: int
    abandoned: int
    median_seconds_to_reach: float | None = Field(description="null when no journey reached it")


class FunnelSummary(BaseModel):
    """GET /v1/funnels/{name}/summary."""

    funnel: str
    start: Time
    end: Time
    journeys: int
    outcomes: Outcomes
    steps: list[SummaryStep]
    provisional: bool = Field(description="Whether any journey in the range is in progress.")
    freshness_seconds: Freshness


class StepFlow(BaseModel):
    step: str
    reached: int
    dropped: int


class StepsPoint(BaseModel):
    """A bucket of a timeseries without `step`: every step's figures."""

    time: Time
    journeys: int
    steps: list[StepFlow]


class StepPoint(BaseModel):
    """A bucket of a timeseries with `step`: that step's figures."""

    time: Time
    journeys: int
    step: str
    reached: int
    dropped: int


class FunnelTimeseries(BaseModel):
    """GET /v1/funnels/{name}/timeseries: buckets by the journeys' entry into the funnel."""

    funnel: str
    start: Time
    end: Time
    interval_seconds: int
    # Tried in order (a point shows its shape at once): the default smart mode tries both
    # shapes on every point, twice the cost of checking a payload.
    points: list[StepsPoint] | list[StepPoint] = Field(union_mode="left_to_right")
    freshness_seconds: Freshness


class BreakdownValue(BaseModel):
    value: str
    journeys: int
    outcomes: Outcomes
    reached: list[int] = Field(description="Per step, in the order of `steps`.")
    dropped: list[int] = Field(description="Per step, in the order of `steps`.")


class FunnelBreakdown(BaseModel):
    """GET /v1/funnels/{name}/breakdown: per value of the segment attribute `by`."""

    funnel: str
    by: str
    start: Time
    end: Time
    steps: list[str]
    values: list[BreakdownValue]
    freshness_seconds: Freshness


class KpiCounts(BaseModel):
    """The counts the KPIs are computed from (design section 4)."""

    contacts: int
    queued: int
    answered: int
    abandoned: int
    short_abandoned: int
    answered_within_sl: int
    transferred: int
    ivr_contained: int
    resolved: int
    first_contact_resolved: int
    handled: int
    ivr_contacts: int
    zero_out: int
    csat_responses: int
    nps_responses: int
    ces_responses: int


class KpiFigures(BaseModel):
    service_level: Ratio
    asa_seconds: Ratio
    abandonment_rate: Ratio
    aht_seconds: Ratio
    transfer_rate: Ratio
    ivr_containment_rate: Ratio
    zero_out_rate: Ratio
    fcr_rate: Ratio
    csat: Ratio
    nps: Ratio
    ces: Ratio
    fcr_final: bool = Field(description="Every resolved contact's 7 d FCR window has passed.")
    ivr_final: bool = Field(description="Every IVR contact's 24 h window has passed.")
    counts: KpiCounts


class Point(BaseModel):
    time: Time


class KpiPoint(KpiFigures, Point):
    """The KPIs of one bucket."""


class Span(BaseModel):
    start: Time
    end: Time


class ContactKpis(KpiFigures, Span):
    """GET /v1/contact-center/kpis: over contacts started in the range."""

    series: list[KpiPoint] | SkipJsonSchema[None] = _series_field()
    freshness_seconds: Freshness


class ContainmentFigures(BaseModel):
    journeys: int
    closed: int
    self_served: int
    escalated: int
    abandoned: int
    in_progress: int
    containment_rate: Ratio
    cost_to_serve: float
    savings: float
    ttr_mean_seconds: Ratio
    ttr_median_seconds: float | None = Field(description="null when no closed journey has a TTR")


class ContainmentPoint(ContainmentFigures, Point):
    """Containment of one bucket."""


class Containment(ContainmentFigures, Span):
    """GET /v1/self-service/containment: over portal journeys started in the range; outcome
    counts cover all of them, rates, costs and TTR the closed ones."""

    currency: str = Field(description="Of `cost_to_serve` and `savings` (CXPULSE_CURRENCY).")
    series: list[ContainmentPoint] | SkipJsonSchema[None] = _series_field()
    freshness_seconds: Freshness


class ChangeRef(BaseModel):
    """A portal change an alert names: made within CXPULSE_CHANGE_ALERT_WINDOW_SECONDS before
    the alert started, as it was then (see GET /v1/changes)."""

    id: str
    title: str
    at: Time


class AlertDriver(BaseModel):
    """A top drop-off driver a drop-off alert names (see GET /v1/funnels/{name}/drivers), as it
    was when the alert started."""

    kind: str
    attr: str
    value: str
    rate: float
    rate_rest: float
    excess: float
    p_adjusted: float


class Alert(BaseModel):
    """An alert (design section 7); POST /v1/alerts/{id}/silence answers the silenced one."""

    id: str = Field(examples=["dropoff_rising/self_service/diagnose/tier=consumer"])
    rule: str = Field(examples=["dropoff_rising"])
    state: Literal["firing", "resolved"]
    funnel: str | None
    step: str | None
    segment: dict[str, str] | None
    current_rate: StoredFloat
    baseline_rate: StoredFloat
    window_journeys: int
    z: StoredFloat
    started_at: Time
    resolved_at: Time | None
    silenced_until: Time | None
    recent_changes: list[ChangeRef] = Field(
        description="Changes made shortly before the alert started, oldest first."
    )
    top_drivers: list[AlertDriver] = Field(
        description="Drop-off alerts: the segment values and event facts that dropped off at the "
        "step significantly more than the rest before the alert started, largest excess first."
    )


class Alerts(BaseModel):
    """GET /v1/alerts, newest first."""

    alerts: list[Alert]


class PartitionFreshness(BaseModel):
    partition: int
    newest_event_at_ms: int
    lag_seconds: float


class FreshnessReport(BaseModel):
    """GET /v1/freshness."""

    partitions: list[PartitionFreshness]
    freshness_seconds: Freshness


class Health(BaseModel):
    status: Literal["ok"]


class Ready(BaseModel):
    status: Literal["ready"]
    freshness_seconds: float
