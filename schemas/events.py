"""The event contract, version 1: one msgspec Struct per event type (design section 3).

These classes are the single source of truth: the validator decodes with them, the JSON Schema
files in schemas/json/ and the reference page docs/events.md are generated from them
(`cxpulse schemas export`), and a test fails when those files are stale.

Unknown extra fields are accepted (forward compatibility) and kept in the stored payload.
Descriptive strings that producers may not always know (`reason`, `wrap_code`) may be null.
"""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

SCHEMA_VERSION = 1

EventId = Annotated[
    str, Meta(min_length=1, max_length=64, description="Unique per event; copies are dropped.")
]
OccurredAt = Annotated[
    datetime,
    Meta(tz=True, description="Event time, RFC 3339 with a UTC offset."),
]
Attrs = Annotated[
    dict[str, str],
    Meta(description="Segment dimensions: product_line, device, locale, region, tier, entry."),
]
Id = Annotated[str, Meta(min_length=1, max_length=128)]
Label = Annotated[str, Meta(min_length=1, max_length=128)]


class _Data(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Base of every `data` object; extra fields are ignored, not rejected."""


class _Event(msgspec.Struct, frozen=True, kw_only=True, gc=False, tag_field="type"):
    event_id: EventId
    schema_version: Annotated[Literal[1], Meta(description="Contract version: 1.")]
    occurred_at: OccurredAt
    attrs: Attrs = {}


class PortalEvent(_Event, frozen=True, kw_only=True):
    """Portal events belong to a session; customer_id is set once the customer is known."""

    session_id: Id
    customer_id: Id | None = None


class ContactEvent(_Event, frozen=True, kw_only=True):
    """Contact-center events belong to a contact of a known customer."""

    contact_id: Id
    customer_id: Id
    session_id: Id | None = None


# -- portal ---------------------------------------------------------------------------------


class SessionStartedData(_Data, frozen=True, kw_only=True):
    entry: Label


class SessionStarted(PortalEvent, frozen=True, kw_only=True, tag="portal.session_started"):
    """A customer opened the support portal's self-service flow."""

    data: SessionStartedData


class StepViewedData(_Data, frozen=True, kw_only=True):
    step: Label


class StepViewed(PortalEvent, frozen=True, kw_only=True, tag="portal.step_viewed"):
    """A step of the flow was shown (identify_device, diagnose, troubleshoot, ...)."""

    data: StepViewedData


class StepCompletedData(_Data, frozen=True, kw_only=True):
    step: Label
    outcome: Literal["pass", "fail"] | None = None


class StepCompleted(PortalEvent, frozen=True, kw_only=True, tag="portal.step_completed"):
    """A step was completed; a failed troubleshooting test makes the customer eligible."""

    data: StepCompletedData


class EligibilityCheckedData(_Data, frozen=True, kw_only=True):
    eligible: bool
    reason: Label | None = None


class EligibilityChecked(PortalEvent, frozen=True, kw_only=True, tag="portal.eligibility_checked"):
    """The portal decided whether a replacement part can be shipped."""

    data: EligibilityCheckedData


class OrderPlacedData(_Data, frozen=True, kw_only=True):
    order_id: Id
    sku: Label


class OrderPlaced(PortalEvent, frozen=True, kw_only=True, tag="portal.order_placed"):
    """A replacement part was ordered online: the goal of the self-service flow."""

    data: OrderPlacedData


class HelpRequestedData(_Data, frozen=True, kw_only=True):
    via: Literal["chat", "call", "callback", "email"]


class HelpRequested(PortalEvent, frozen=True, kw_only=True, tag="portal.help_requested"):
    """The customer asked for live help: an escalation out of self-service."""

    data: HelpRequestedData


class EmptyData(_Data, frozen=True, kw_only=True):
    pass


class SessionEnded(PortalEvent, frozen=True, kw_only=True, tag="portal.session_ended"):
    """The portal session ended (not always sent: journeys also close by inactivity)."""

    data: EmptyData = EmptyData()


# -- contact center -------------------------------------------------------------------------


class ContactStartedData(_Data, frozen=True, kw_only=True):
    channel: Literal["voice", "chat", "email"]
    reason: Label | None = None
    linked_session_id: Id | None = None


class ContactStarted(ContactEvent, frozen=True, kw_only=True, tag="cc.contact_started"):
    """A customer reached the contact center; linked_session_id names a portal session."""

    data: ContactStartedData


class IvrCompletedData(_Data, frozen=True, kw_only=True):
    outcome: Literal["contained", "to_queue", "abandoned", "zero_out"]


class IvrCompleted(ContactEvent, frozen=True, kw_only=True, tag="cc.ivr_completed"):
    """The IVR finished: contained, sent to a queue, abandoned, or zeroed out (agent asked for)."""

    data: IvrCompletedData


class QueuedData(_Data, frozen=True, kw_only=True):
    queue: Label


class Queued(ContactEvent, frozen=True, kw_only=True, tag="cc.queued"):
    """The contact entered a queue to wait for an agent."""

    data: QueuedData


class AnsweredData(_Data, frozen=True, kw_only=True):
    agent_id: Id
    team: Label


class Answered(ContactEvent, frozen=True, kw_only=True, tag="cc.answered"):
    """An agent answered the contact."""

    data: AnsweredData


class TransferredData(_Data, frozen=True, kw_only=True):
    to_queue: Label


class Transferred(ContactEvent, frozen=True, kw_only=True, tag="cc.transferred"):
    """The contact was transferred to another queue."""

    data: TransferredData


class Abandoned(ContactEvent, frozen=True, kw_only=True, tag="cc.abandoned"):
    """The customer hung up or left while waiting."""

    data: EmptyData = EmptyData()


class ContactEndedData(_Data, frozen=True, kw_only=True):
    resolved: bool
    wrap_code: Label | None = None
    part_shipped: bool


class ContactEnded(ContactEvent, frozen=True, kw_only=True, tag="cc.contact_ended"):
    """The contact ended; resolved and part_shipped as recorded by the agent."""

    data: ContactEndedData


class SurveySubmittedData(_Data, frozen=True, kw_only=True):
    csat: Annotated[int, Meta(ge=1, le=5)] | None = None
    nps: Annotated[int, Meta(ge=0, le=10)] | None = None
    ces: Annotated[int, Meta(ge=1, le=7)] | None = None


class SurveySubmitted(ContactEvent, frozen=True, kw_only=True, tag="cc.survey_submitted"):
    """A post-contact survey; any of its scores may be missing."""

    data: SurveySubmittedData


PORTAL_TYPES: tuple[type[PortalEvent], ...] = (
    SessionStarted,
    StepViewed,
    StepCompleted,
    EligibilityChecked,
    OrderPlaced,
    HelpRequested,
    SessionEnded,
)
CONTACT_TYPES: tuple[type[ContactEvent], ...] = (
    ContactStarted,
    IvrCompleted,
    Queued,
    Answered,
    Transferred,
    Abandoned,
    ContactEnded,
    SurveySubmitted,
)
EVENT_TYPES = PORTAL_TYPES + CONTACT_TYPES

Event = (
    SessionStarted
    | StepViewed
    | StepCompleted
    | EligibilityChecked
    | OrderPlaced
    | HelpRequested
    | SessionEnded
    | ContactStarted
    | IvrCompleted
    | Queued
    | Answered
    | Transferred
    | Abandoned
    | ContactEnded
    | SurveySubmitted
)


@functools.cache
def type_name(cls: type[_Event]) -> str:
    """The `type` value of an event class (its msgspec tag). Cached: inspecting a class costs
    ~0.3 ms, and funnel matching asks once per event and step."""
    return str(msgspec.inspect.type_info(cls).tag)  # type: ignore[attr-defined]


#: The `type` value of every event class, portal types first: the contract's vocabulary of types.
EVENT_TYPE_NAMES: tuple[str, ...] = tuple(type_name(cls) for cls in EVENT_TYPES)
