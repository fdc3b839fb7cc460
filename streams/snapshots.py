"""Versioned snapshot rows of a key's journeys, and tombstones for identities that vanished.

The stage never sends counters: it sends the current state of each journey that changed, with a
version that only grows, and ClickHouse keeps the latest (design section 6). What was last sent
per identity is remembered in the key's state as a 64-bit fingerprint, so an unchanged journey is
not sent again, and an identity that no longer exists gets a tombstone in its own partition.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
import orjson

from cxpulse.schemas.times import ch_time
from cxpulse.streams.contacts import Contact, ShiftTable
from cxpulse.streams.funnels import FunnelSpec
from cxpulse.streams.journeys import Journey
from cxpulse.streams.windows import Windows

JOURNEYS = "journeys"
JOURNEY_FUNNELS = "journey_funnels"
CONTACTS = "contacts"


class Emitted(msgspec.Struct, array_like=True, gc=False):
    """What was last sent for one row identity (kept in the key's state)."""

    table: str
    fingerprint: int
    key_columns: dict[str, str]  # columns a tombstone needs: identity and partition key


@dataclass(frozen=True, slots=True)
class Row:
    table: str
    identity: str
    columns: dict[str, Any]
    key_columns: dict[str, str]


def _time(ms: int | None) -> str | None:
    return None if ms is None else ch_time(ms)


def journey_rows(
    journey: Journey, funnels: Sequence[FunnelSpec], watermark_ms: int, gap_ms: int
) -> list[Row]:
    closed = journey.closed(watermark_ms, gap_ms)
    outcome = journey.outcome(watermark_ms, gap_ms)
    start = ch_time(journey.start_ms)
    identity = {"journey_key": journey.key, "journey_id": journey.journey_id, "start_at": start}
    rows = [
        Row(
            JOURNEYS,
            f"{JOURNEYS}|{journey.journey_id}",
            {
                **identity,
                "last_activity_at": ch_time(journey.last_activity_ms),
                "closed": int(closed),
                "outcome": outcome,
                "escalated_at": _time(journey.escalated_at_ms),
                "ordered_at": _time(journey.ordered_at_ms),
                "attrs": journey.attrs,
                "sessions": list(journey.sessions),
                "ttr_ms": journey.ttr_ms,
            },
            identity,
        )
    ]
    for funnel in funnels:
        progress = journey.funnels.get(funnel.name)
        if progress is None:
            continue
        entered = progress.reach_ms[0]
        assert entered is not None
        ended = closed and outcome != "self_served"
        key_columns = {**identity, "funnel": funnel.name}
        escalated = outcome == "escalated" and progress.escalated_step is not None
        rows.append(
            Row(
                JOURNEY_FUNNELS,
                f"{JOURNEY_FUNNELS}|{funnel.name}|{journey.journey_id}|{journey.start_ms}",
                {
                    **key_columns,
                    "entered_at": ch_time(entered),
                    "closed": int(closed),
                    "outcome": outcome,
                    "attrs": journey.attrs,
                    "reach_ms": [None if at is None else at - entered for at in progress.reach_ms],
                    "last_step": progress.last_step,
                    "dropped_step": progress.last_step if ended else -1,
                    "escalated_step": progress.escalated_step if escalated else -1,
                    "abandoned_step": progress.last_step if outcome == "abandoned" else -1,
                    "facts": [list(fact) for fact in journey.facts],
                },
                key_columns,
            )
        )
    return rows


def contact_row(
    key: str, contact: Contact, watermark_ms: int, shifts: ShiftTable, windows: Windows
) -> Row:
    """The identity includes the start: an earlier contact_started arriving late moves the row
    (and its partition), so the old identity must be tombstoned."""
    key_columns = {
        "journey_key": key,
        "contact_id": contact.contact_id,
        "started_at": ch_time(contact.started_ms),
    }
    return Row(
        CONTACTS,
        f"{CONTACTS}|{contact.contact_id}|{contact.started_ms}",
        {**key_columns, **contact.row(watermark_ms, shifts, windows)},
        key_columns,
    )


def fingerprint(columns: dict[str, Any]) -> int:
    digest = hashlib.blake2b(orjson.dumps(columns, option=orjson.OPT_SORT_KEYS), digest_size=8)
    return int.from_bytes(digest.digest(), "big")


def diff(
    rows: Sequence[Row], emitted: dict[str, Emitted], version: int
) -> list[tuple[str, dict[str, Any]]]:
    """(table, row) to send so the store matches `rows`; updates `emitted` in place.

    Tombstones carry `version` and live rows `version + 1`: when an old and a new identity fall
    on the same ClickHouse sort key (a contact start moved within its hour), the live row wins.
    """
    out: list[tuple[str, dict[str, Any]]] = []
    current = set()
    for row in rows:
        current.add(row.identity)
        mark = fingerprint(row.columns)
        previous = emitted.get(row.identity)
        if previous is not None and previous.fingerprint == mark:
            continue
        emitted[row.identity] = Emitted(row.table, mark, row.key_columns)
        out.append((row.table, {**row.columns, "version": version + 1, "is_deleted": 0}))
    for identity in [i for i in emitted if i not in current]:
        gone = emitted.pop(identity)
        out.append((gone.table, {**gone.key_columns, "version": version, "is_deleted": 1}))
    return out
