"""Portal changes in the store (design section 4b): add, read, list, remove, and the lookup the
alert evaluator makes when an alert starts firing.

A removal is a tombstone (`changes` is a ReplacingMergeTree(version, is_deleted)), and every
write of an id takes the next version of that id, so re-adding a removed id wins
deterministically, whatever the wall clock says.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cxpulse.schemas.times import ch_time
from cxpulse.sinks.change_queries import CHANGE_COLUMNS, LIVE_CHANGES, changes_between, of_funnel
from cxpulse.sinks.store import Store

_MS = "DateTime64(3, 'UTC')"


@dataclass(frozen=True)
class Change:
    """A change to the portal: `funnel` None concerns every funnel; `step` only with a funnel."""

    id: str
    title: str
    at_ms: int
    funnel: str | None = None
    step: str | None = None
    filters: dict[str, str] = field(default_factory=dict)
    notes: str = ""


def _change(row: dict[str, Any]) -> Change:
    return Change(
        id=row["id"],
        title=row["title"],
        at_ms=int(row["at_ms"]),
        funnel=row["funnel"],
        step=row["step"],
        filters=dict(row["filters"]),
        notes=row["notes"],
    )


def _write(store: Store, change: Change, deleted: bool) -> None:
    rows = store.query(
        "SELECT max(version) AS version FROM changes WHERE id = {id:String}", {"id": change.id}
    )
    version = int(rows[0]["version"]) + 1  # max() of no rows is 0
    store.insert(
        "changes",
        [
            {
                "id": change.id,
                "version": version,
                "is_deleted": int(deleted),
                "title": change.title,
                "at": ch_time(change.at_ms),
                "funnel": change.funnel,
                "step": change.step,
                "filters": change.filters,
                "notes": change.notes,
            }
        ],
    )


def add_change(store: Store, change: Change) -> None:
    """Store `change` (a new version of its id: the caller checks that the id is free)."""
    _write(store, change, deleted=False)


def get_change(store: Store, change_id: str) -> Change | None:
    rows = store.query(
        f"SELECT {CHANGE_COLUMNS} FROM {LIVE_CHANGES} WHERE id = {{id:String}}", {"id": change_id}
    )
    return _change(rows[0]) if rows else None


def list_changes(store: Store, funnel: str | None = None) -> list[Change]:
    """Every change by time then id; with `funnel`, that funnel's and those of every funnel."""
    where = "1" if funnel is None else of_funnel("{funnel:String}")
    rows = store.query(
        f"SELECT {CHANGE_COLUMNS} FROM {LIVE_CHANGES} WHERE {where} ORDER BY at_ms, id",
        {} if funnel is None else {"funnel": funnel},
    )
    return [_change(row) for row in rows]


def delete_change(store: Store, change_id: str) -> bool:
    """Remove a change (a tombstone); False when there is none of that id."""
    current = get_change(store, change_id)
    if current is None:
        return False
    _write(store, current, deleted=True)
    return True


def changes_near(store: Store, funnel: str | None, start_ms: int, end_ms: int) -> list[Change]:
    """Changes of `funnel` (None: only those of every funnel) with `at` in [start, end], by
    time then id: what an alert of that funnel starting at `end` may name."""
    sql = changes_between("{funnel:String}", f"{{lo:{_MS}}}", f"{{hi:{_MS}}}", hi_inclusive=True)
    # '' is no funnel's name (funnel names are identifiers): only the changes of every funnel.
    params = {"funnel": funnel or "", "lo": ch_time(start_ms), "hi": ch_time(end_ms)}
    return [_change(row) for row in store.query(sql, params)]
