"""Generated artefacts of the contract: the JSON Schema (2020-12) and the event reference page.

Both are committed so producers in other languages and readers of the docs need no Python;
`cxpulse schemas export` rewrites them and `tests/schemas/test_export.py` fails when they are stale.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import orjson

from cxpulse.schemas.events import CONTACT_TYPES, EVENT_TYPES, PORTAL_TYPES, Event, type_name

REPO = Path(__file__).resolve().parents[1]
JSON_SCHEMA_PATH = REPO / "schemas" / "json" / "event.v1.schema.json"
REFERENCE_PATH = REPO / "docs" / "events.md"
SCHEMA_ID = "https://cxpulse.dev/schemas/event.v1.schema.json"


def json_schema() -> dict[str, Any]:
    body = msgspec.json.schema(Event)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "cxpulse event, schema_version 1",
        "description": "One JSON object per Kafka message on cx.portal.v1 / cx.contact.v1. "
        "Unknown extra fields are allowed.",
        **body,
    }


def render_json_schema() -> str:
    return orjson.dumps(json_schema(), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()


def _type_text(info: msgspec.inspect.Type) -> str:
    """A short human-readable type with its constraints."""
    t = msgspec.inspect
    if isinstance(info, t.Metadata):
        return _type_text(info.type)
    if isinstance(info, t.UnionType):
        parts = [_type_text(member) for member in info.types]
        return " or ".join(parts)
    if isinstance(info, t.LiteralType):
        return " \\| ".join(f"`{orjson.dumps(v).decode()}`" for v in info.values)
    if isinstance(info, t.NoneType):
        return "null"
    if isinstance(info, t.StrType):
        if info.max_length is None:
            return "string"
        return f"string ({info.min_length or 0} to {info.max_length} chars)"
    if isinstance(info, t.IntType):
        return f"integer {info.ge} to {info.le}" if info.ge is not None else "integer"
    if isinstance(info, t.BoolType):
        return "boolean"
    if isinstance(info, t.DateTimeType):
        return "RFC 3339 date-time with offset"
    if isinstance(info, t.DictType):
        return "object of strings"
    if isinstance(info, t.StructType):
        return "object"
    return type(info).__name__


def _description(info: msgspec.inspect.Type) -> str:
    if isinstance(info, msgspec.inspect.Metadata):
        return str((info.extra_json_schema or {}).get("description", ""))
    return ""


def _fields_table(struct: msgspec.inspect.StructType, prefix: str = "") -> list[str]:
    rows = []
    for field in struct.fields:
        name = f"{prefix}{field.encode_name}"
        required = "yes" if field.required else "no"
        if isinstance(field.type, msgspec.inspect.StructType):
            if field.type.fields:
                rows.extend(_fields_table(field.type, f"{name}."))
            else:
                rows.append(f"| `{name}` | object (empty) | {required} | |")
            continue
        text = _type_text(field.type)
        rows.append(f"| `{name}` | {text} | {required} | {_description(field.type)} |")
    return rows


def render_reference() -> str:
    lines = [
        "# Event reference (schema_version 1)",
        "",
        "Generated from `schemas/events.py` by `cxpulse schemas export`; do not edit by hand.",
        f"Machine-readable: [`schemas/json/{JSON_SCHEMA_PATH.name}`]"
        f"(../schemas/json/{JSON_SCHEMA_PATH.name}) (JSON Schema 2020-12).",
        "",
        "Every event is one JSON object per Kafka message. Unknown extra fields are accepted and",
        "kept. Events older than 30 days or more than 5 minutes in the future are dead-lettered.",
        "",
    ]
    for title, topic, classes in (
        ("Portal events", "cx.portal.v1", PORTAL_TYPES),
        ("Contact-center events", "cx.contact.v1", CONTACT_TYPES),
    ):
        lines += [f"## {title} (`{topic}`)", ""]
        for cls in classes:
            info = msgspec.inspect.type_info(cls)
            assert isinstance(info, msgspec.inspect.StructType)
            lines += [
                f"### `{type_name(cls)}`",
                "",
                (cls.__doc__ or "").strip(),
                "",
                "| field | type | required | meaning |",
                "| --- | --- | --- | --- |",
                f'| `type` | `"{type_name(cls)}"` | yes | |',
                *_fields_table(info),
                "",
            ]
    assert len(EVENT_TYPES) == len(PORTAL_TYPES) + len(CONTACT_TYPES)
    return "\n".join(lines).rstrip() + "\n"


def export() -> list[Path]:
    """Write the generated files; returns the paths written."""
    JSON_SCHEMA_PATH.parent.mkdir(parents=True, exist_ok=True)
    JSON_SCHEMA_PATH.write_text(render_json_schema() + "\n")
    REFERENCE_PATH.write_text(render_reference())
    return [JSON_SCHEMA_PATH, REFERENCE_PATH]
