"""/v1/changes: the portal changes dashboards annotate and alerts name (design section 4b).

The list is read per request (a few rows) and alerts keep their own copy; a change looked up
through the result cache (`cache_key`, by the impact route) is dropped from it by every write,
and figures cached per change are keyed by its content. Writes are serialized in this process,
so two POSTs of one id cannot both succeed.
"""

from __future__ import annotations

import threading
import time
from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from cxpulse.api.change_models import CHANGE_ID, Change, ChangeRequest, Changes, cache_key
from cxpulse.api.deps import ApiContext, Context, parse_time_ms
from cxpulse.api.problems import PROBLEM_RESPONSES, Problem
from cxpulse.schemas.times import iso_time
from cxpulse.sinks import changes as change_rows

router = APIRouter(prefix="/v1/changes", tags=["changes"])
#: How far ahead of the API's clock a change may be dated (clock skew, a change about to ship).
MAX_AHEAD_MS = 5 * 60_000
_writes = threading.Lock()

ChangeIdPath = Annotated[str, Path(pattern=CHANGE_ID, description="A change id.")]


def _document(change: change_rows.Change) -> Change:
    return Change(
        id=change.id,
        title=change.title,
        at=iso_time(change.at_ms),
        funnel=change.funnel,
        step=change.step,
        filters=change.filters,
        notes=change.notes,
    )


def _checked(ctx: ApiContext, request: ChangeRequest, now_ms: int) -> change_rows.Change:
    """The change to store, or a 422 naming what is wrong with the request."""
    at_ms = now_ms if request.at is None else parse_time_ms(request.at, "at")
    if at_ms > now_ms + MAX_AHEAD_MS:
        raise Problem(422, "Invalid change", "at is more than 5 minutes in the future")
    if request.funnel is not None:
        funnel = ctx.funnels.get(request.funnel)
        if funnel is None:
            raise Problem(422, "Invalid change", f"no funnel named {request.funnel!r}")
        steps = [s.name for s in funnel.steps]
        if request.step is not None and request.step not in steps:
            raise Problem(
                422, "Invalid change", f"funnel {request.funnel!r} has no step {request.step!r}"
            )
    elif request.step is not None:
        raise Problem(422, "Invalid change", "a step needs its funnel")
    return change_rows.Change(
        request.id,
        request.title,
        at_ms,
        request.funnel,
        request.step,
        request.filters,
        request.notes,
    )


@router.post(
    "",
    status_code=201,
    summary="Record a change to the portal",
    responses={409: PROBLEM_RESPONSES[400] | {"description": "A change with that id exists"}},
)
def add_change(ctx: Context, request: ChangeRequest, response: Response) -> Change:
    change = _checked(ctx, request, time.time_ns() // 1_000_000)
    with _writes:
        if change_rows.get_change(ctx.store, change.id) is not None:
            raise Problem(409, "Conflict", f"a change {change.id!r} exists; remove it first")
        change_rows.add_change(ctx.store, change)
        ctx.cache.forget(cache_key(change.id))
    response.headers["Location"] = f"/v1/changes/{change.id}"
    return _document(change)


@router.get("", summary="Changes by time (with `funnel`: its own and those of every funnel)")
def list_changes(
    ctx: Context,
    funnel: Annotated[str | None, Query(description="A funnel name from GET /v1/funnels.")] = None,
) -> Changes:
    if funnel is not None and funnel not in ctx.funnels:
        raise Problem(400, "Bad request", f"no funnel named {funnel!r}; see GET /v1/funnels")
    return Changes(changes=[_document(c) for c in change_rows.list_changes(ctx.store, funnel)])


@router.get("/{change_id}", summary="One change")
def get_change(ctx: Context, change_id: ChangeIdPath) -> Change:
    change = change_rows.get_change(ctx.store, change_id)
    if change is None:
        raise Problem(404, "Not found", f"no change {change_id!r}")
    return _document(change)


@router.delete("/{change_id}", status_code=204, summary="Remove a change")
def delete_change(ctx: Context, change_id: ChangeIdPath) -> Response:
    with _writes:
        if not change_rows.delete_change(ctx.store, change_id):
            raise Problem(404, "Not found", f"no change {change_id!r}")
        ctx.cache.forget(cache_key(change_id))
    return Response(status_code=204)
