"""The store interface on both backends: migrations, inserts, parameters, replacing semantics."""

from __future__ import annotations

import orjson
import pytest

from cxpulse.schemas.times import ch_time
from cxpulse.sinks import migrate as migrate_module
from cxpulse.sinks.migrate import Migration, MigrationError, load_migrations, migrate
from cxpulse.sinks.store import Store, StoreError


def _raw_row(event_id: str, received_ms: int, **overrides: object) -> dict[str, object]:
    row: dict[str, object] = {
        "event_id": event_id,
        "type": "portal.session_started",
        "occurred_at": ch_time(1_795_000_000_123),
        "journey_key": "c-1",
        "attrs": {"locale": "en-US"},
        "payload": "{}",
        "source_topic": "cx.portal.v1",
        "source_partition": 0,
        "source_offset": 7,
        "received_at": ch_time(received_ms),
    }
    row.update(overrides)
    return row


def test_ch_time_is_exact() -> None:
    assert ch_time(1_795_000_000_007) == "2026-11-18 11:06:40.007"
    assert ch_time(0) == "1970-01-01 00:00:00.000"


def test_migrate_is_idempotent_and_recorded(store: Store) -> None:
    first = migrate(store)
    assert [m.version for m in first] == [m.version for m in load_migrations()]
    assert migrate(store) == []
    recorded = store.query("SELECT version, name FROM schema_migrations FINAL ORDER BY version")
    assert [(r["version"], r["name"]) for r in recorded] == [
        (m.version, m.name) for m in load_migrations()
    ]


def test_an_edited_applied_migration_is_refused(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    migrate(store)
    edited = [Migration(m.version, m.name, m.sql + "\n-- edited\n") for m in load_migrations()]
    monkeypatch.setattr(migrate_module, "load_migrations", lambda: edited)
    with pytest.raises(MigrationError, match="changed after it was applied"):
        migrate(store)


def test_statements_split_on_line_end_semicolons() -> None:
    sql = (
        "-- a comment; not a split\nCREATE TABLE a (x UInt8) ENGINE = Log;\n\nSELECT ';';\n-- end\n"
    )
    assert Migration(9, "x", sql).statements() == [
        "-- a comment; not a split\nCREATE TABLE a (x UInt8) ENGINE = Log",
        "SELECT ';'",
    ]


def test_insert_query_roundtrip_with_parameters(store: Store) -> None:
    migrate(store)
    assert store.insert("events_raw", [_raw_row("e1", 1), _raw_row("e2", 2)]) == 2
    rows = store.query(
        "SELECT event_id, occurred_at, attrs, source_offset FROM events_raw "
        "WHERE event_id = {id:String}",
        {"id": "e2"},
    )
    assert rows == [
        {
            "event_id": "e2",
            "occurred_at": "2026-11-18 11:06:40.123",
            "attrs": {"locale": "en-US"},
            "source_offset": 7,
        }
    ]


def test_a_replayed_row_counts_once(store: Store) -> None:
    """The writer may insert a batch twice after a crash; FINAL collapses the copies."""
    migrate(store)
    store.insert("events_raw", [_raw_row("e1", 1)])
    store.insert("events_raw", [_raw_row("e1", 2)])
    assert store.query("SELECT count() AS n FROM events_raw")[0]["n"] == 2
    final = store.query("SELECT count() AS n, max(received_at) AS r FROM events_raw FINAL")
    assert final == [{"n": 1, "r": "1970-01-01 00:00:00.002"}]


def test_errors_carry_clickhouse_message(store: Store) -> None:
    with pytest.raises(StoreError, match=r"UNKNOWN_TABLE|does not exist"):
        store.query("SELECT * FROM no_such_table")


def test_refused_data_is_told_apart_from_an_unavailable_store(store: Store) -> None:
    """The writer dead-letters rows only for errors about the data; anything else is retried."""
    migrate(store)
    with pytest.raises(StoreError) as refused:
        store.insert("events_raw", [_raw_row("e1", 1, occurred_at="yesterday")])
    assert refused.value.bad_data, str(refused.value)
    with pytest.raises(StoreError) as missing:
        store.insert("no_such_table", [_raw_row("e1", 1)])
    assert not missing.value.bad_data
    assert not StoreError("cannot reach ClickHouse: Connection refused").bad_data


def test_string_parameters_round_trip_any_characters(store: Store) -> None:
    value = "a\nb\\c\td'e\r\x00f ☃"
    rows = store.query("SELECT {v:String} AS v, length({v:String}) AS n", {"v": value})
    assert rows == [{"v": value, "n": len(value.encode())}]


def test_events_raw_keeps_each_accepted_events_bytes_exactly(store: Store) -> None:
    """The journey stage puts an event's bytes in its events_raw row as they came (a JSON object
    ClickHouse keeps as text, or a string when they hold a newline); both backends must keep
    them byte for byte, whatever the object holds."""
    from cxpulse.streams.keyed import KeyState, apply
    from tests.streams.test_keyed import _raw, _records

    compact = _raw("compact", 5)
    doc = orjson.loads(_raw("odd", 4))
    doc["attrs"] = {"note": 'é \u2028 \\" }\n{ \u0000 😀'}  # escapes, separators, astral
    doc["data"] = {**doc["data"], "deep": orjson.loads(b'{"a":' * 200 + b"1" + b"}" * 200)}
    odd = orjson.dumps(doc)
    pretty = orjson.dumps(orjson.loads(_raw("pretty", 3)), option=orjson.OPT_INDENT_2)
    spaced = _raw("spaced", 2).replace(b'","', b'" ,\t"').replace(b'":', b'" : ')
    sent = {b"compact": compact, b"odd": odd, b"pretty": pretty, b"spaced": spaced}
    assert b"\n" in pretty  # both kinds of row are made
    assert b"\n" not in odd
    states: dict[str, KeyState] = {}
    outcome = apply(states, _records(list(sent.values())))
    assert outcome.accepted == len(sent)
    lines = [orjson.dumps(row) for _, row in outcome.raw_rows]  # as RowBatcher encodes them
    assert not [line for line in lines if b"\n" in line]  # the writer splits rows at newlines
    migrate(store)
    store.insert("events_raw", [orjson.Fragment(line) for line in lines])
    stored = store.query("SELECT event_id, payload FROM events_raw FINAL")
    assert {r["event_id"].encode(): r["payload"].encode() for r in stored} == sent
