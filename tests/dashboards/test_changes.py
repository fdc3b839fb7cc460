"""The funnel dashboards' annotation of portal changes, run on chdb as Grafana sends it: the
changes of the board's funnel and of every funnel in the range, removed ones left out."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cxpulse.dashboards.build import documents
from cxpulse.dashboards.config import BoardConfig
from cxpulse.sinks.changes import Change, add_change, delete_change
from cxpulse.sinks.migrate import migrate
from cxpulse.sinks.store import ChdbStore
from cxpulse.streams.settings import Settings
from tests.support.grafana import expand

HOUR = 3_600_000
END = 1_795_500_000_000
START = END - 6 * HOUR


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ChdbStore]:
    with ChdbStore(tmp_path / "chdb", "cxpulse_test") as chdb:
        migrate(chdb)
        yield chdb


def _annotation_sql() -> str:
    docs = documents(BoardConfig.from_settings(Settings()), "http://ch:8123", "cxpulse")
    board = next(b for b in docs.dashboards if b["uid"] == "cxpulse-funnel-self_service")
    (annotation,) = [a for a in board["annotations"]["list"] if a["name"] == "Portal changes"]
    assert annotation["enable"] is True
    return str(annotation["target"]["rawSql"])


def test_funnel_board_annotates_its_changes_and_those_of_every_funnel(store: ChdbStore) -> None:
    changes = [
        Change("copy", "New eligibility copy", END - 2 * HOUR, "self_service", "eligible",
               {"device": "mobile"}, "A/B winner"),
        Change("deploy-1", "Portal release 1.4", END - 3 * HOUR),
        Change("other", "Other funnel", END - HOUR, "returns"),
        Change("old", "Before the range", START - 1),
        Change("at-end", "At the range's end (exclusive)", END, "self_service"),
        Change("gone", "Removed", END - HOUR, "self_service"),
    ]  # fmt: skip
    for change in changes:
        add_change(store, change)
    assert delete_change(store, "gone")
    rows = store.query(expand(_annotation_sql(), START, END, 60, {}))
    assert rows == [
        {
            "time": "2026-11-24 03:00:00.000",
            "timeEnd": "2026-11-24 03:00:00.000",
            "title": "change: Portal release 1.4",
            "text": "deploy-1: every funnel",
            "tags": ["change", "deploy-1"],
        },
        {
            "time": "2026-11-24 04:00:00.000",
            "timeEnd": "2026-11-24 04:00:00.000",
            "title": "change: New eligibility copy",
            "text": "copy: self_service at eligible (device=mobile). A/B winner",
            "tags": ["change", "copy"],
        },
    ]
