"""Portal changes in the store, on both backends: add, read, list by funnel, remove with a
tombstone, re-add, and the window lookup of the alert evaluator."""

from __future__ import annotations

from cxpulse.sinks.changes import (
    Change,
    add_change,
    changes_near,
    delete_change,
    get_change,
    list_changes,
)
from cxpulse.sinks.migrate import migrate
from cxpulse.sinks.store import Store

AT = 1_795_000_000_000
COPY = Change("copy-v2", "New copy", AT, "self_service", "eligible", {"device": "mobile"}, "A\tB\n")
RELEASE = Change("release", "Portal 1.4", AT - 1000)
RETURNS = Change("returns-1", "Returns form", AT, "returns")


def test_changes_round_trip_and_list_by_time_and_funnel(store: Store) -> None:
    migrate(store)
    for change in (COPY, RETURNS, RELEASE):
        add_change(store, change)
    assert get_change(store, "copy-v2") == COPY
    assert get_change(store, "nope") is None
    assert list_changes(store) == [RELEASE, COPY, RETURNS]  # by time, then id
    assert list_changes(store, "self_service") == [RELEASE, COPY]
    assert list_changes(store, "other") == [RELEASE]


def test_a_removed_change_is_gone_and_its_id_can_be_reused(store: Store) -> None:
    migrate(store)
    add_change(store, COPY)
    assert delete_change(store, "copy-v2")
    assert not delete_change(store, "copy-v2")
    assert get_change(store, "copy-v2") is None
    assert list_changes(store) == []
    again = Change("copy-v2", "Copy, second try", AT + 5000)
    add_change(store, again)
    assert list_changes(store) == [again]
    versions = store.query(
        "SELECT version, is_deleted FROM changes WHERE id = 'copy-v2' ORDER BY version"
    )
    assert versions == [
        {"version": 1, "is_deleted": 0},
        {"version": 2, "is_deleted": 1},
        {"version": 3, "is_deleted": 0},
    ]


def test_changes_near_is_the_closed_window_of_a_funnel(store: Store) -> None:
    migrate(store)
    for change in (COPY, RETURNS, RELEASE):
        add_change(store, change)
    assert changes_near(store, "self_service", AT - 1000, AT) == [RELEASE, COPY]
    assert changes_near(store, "self_service", AT - 999, AT) == [COPY]
    assert changes_near(store, "self_service", AT - 1000, AT - 1) == [RELEASE]
    assert changes_near(store, None, AT - 1000, AT) == [RELEASE]  # contact alerts: every funnel
    assert changes_near(store, "returns", AT, AT + 1) == [RETURNS]
