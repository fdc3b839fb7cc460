"""Request and response shapes of /v1/changes (design section 4b)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

from cxpulse.api.models import Time
from cxpulse.sinks.query_sql import ATTR_NAME

CHANGE_ID = r"^[a-z0-9_-]{1,64}$"
MAX_TITLE = 200
MAX_NOTES = 2000
MAX_FILTERS = 20
MAX_FILTER_VALUE = 200

ChangeId = Annotated[
    str,
    Field(
        pattern=CHANGE_ID,
        description="1 to 64 of a-z, 0-9, _ and -.",
        examples=["checkout-copy-v2"],
    ),
]
Filters = Annotated[
    dict[str, str],
    Field(
        max_length=MAX_FILTERS,
        description="Segment attributes the change applies to (attribute: value); empty: all.",
        examples=[{"device": "mobile"}],
    ),
]


def cache_key(change_id: str) -> tuple[str, str]:
    """The result-cache key of a change looked up by id (routes that read a change through the
    cache use it, so that a write of the change can drop it)."""
    return ("change", change_id)


class ChangeRequest(BaseModel):
    """POST /v1/changes: `step` needs `funnel`; `funnel` null means every funnel."""

    model_config = ConfigDict(extra="forbid")

    id: ChangeId
    title: str = Field(min_length=1, max_length=MAX_TITLE, examples=["New eligibility wording"])
    at: str | None = Field(
        None,
        description="RFC 3339, at most 5 minutes ahead; default: now.",
        json_schema_extra={"format": "date-time"},
    )
    funnel: str | None = Field(None, examples=["self_service"])
    step: str | None = Field(None, examples=["eligible"])
    filters: Filters = {}
    notes: str = Field("", max_length=MAX_NOTES)

    @field_validator("filters")
    @classmethod
    def _attribute_filters(cls, filters: dict[str, str]) -> dict[str, str]:
        for name, value in filters.items():
            if not ATTR_NAME.match(name):
                raise ValueError(f"{name!r} is not a segment attribute name")
            if not value:  # attrs[name] = '' would match the journeys without the attribute
                raise ValueError(f"the value of {name!r} is empty")
            if len(value) > MAX_FILTER_VALUE:
                raise ValueError(f"the value of {name!r} is over {MAX_FILTER_VALUE} characters")
            try:
                value.encode()
            except UnicodeEncodeError:  # a lone surrogate from a JSON escape
                raise ValueError(f"the value of {name!r} is not valid Unicode text") from None
        return filters


class Change(BaseModel):
    """A portal change, as stored."""

    id: str
    title: str
    at: Time
    funnel: str | None
    step: str | None
    filters: dict[str, str]
    notes: str


class Changes(BaseModel):
    """GET /v1/changes: by time, then id."""

    changes: list[Change]
