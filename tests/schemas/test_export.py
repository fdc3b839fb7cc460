"""The committed JSON Schema and reference page are what the Structs generate, and they agree."""

from __future__ import annotations

import jsonschema
import orjson
import pytest

from cxpulse.schemas.export import (
    JSON_SCHEMA_PATH,
    REFERENCE_PATH,
    render_json_schema,
    render_reference,
)
from tests.schemas.examples import EXAMPLES

STALE = "stale: run `.venv/bin/cxpulse schemas export` and commit the result"


def test_json_schema_is_current() -> None:
    assert JSON_SCHEMA_PATH.read_text() == render_json_schema() + "\n", STALE


def test_reference_page_is_current() -> None:
    assert REFERENCE_PATH.read_text() == render_reference(), STALE


def test_reference_lists_every_type() -> None:
    text = REFERENCE_PATH.read_text()
    for event_type in EXAMPLES:
        assert f"### `{event_type}`" in text


@pytest.mark.parametrize("event_type", sorted(EXAMPLES))
def test_examples_validate_against_the_exported_schema(event_type: str) -> None:
    """Other-language producers use the JSON Schema: it must accept what the validator accepts."""
    schema = orjson.loads(JSON_SCHEMA_PATH.read_bytes())
    jsonschema.Draft202012Validator(schema).validate(EXAMPLES[event_type])
