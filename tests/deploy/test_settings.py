"""Settings: environment parsing, validation, and the README documenting every one of them."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest
from pydantic import ValidationError

from cxpulse.streams.settings import Settings, redact_url
from cxpulse.streams.windows import DEFAULT_WINDOWS

README = Path(__file__).resolve().parents[2] / "README.md"


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in Settings.model_fields:
        monkeypatch.delenv(f"CXPULSE_{name.upper()}", raising=False)
    settings = Settings()
    assert settings.data_dir == Path("./var")
    assert settings.kafka_bootstrap is None
    assert settings.clickhouse_url is None
    assert settings.chdb_path == Path("./var").resolve() / "chdb"


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CXPULSE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("CXPULSE_KAFKA_PORT", "19092")
    monkeypatch.setenv("CXPULSE_LOG_LEVEL", "WARNING")
    settings = Settings()
    assert settings.kafka_home == tmp_path / "kafka"
    assert settings.kafka_port == 19092
    assert settings.log_level == "warning"


@pytest.mark.parametrize(
    ("name", "value"),
    [("KAFKA_PORT", "70000"), ("LOG_LEVEL", "loud"), ("CLICKHOUSE_DATABASE", "x; DROP")],
)
def test_invalid_values_are_rejected(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(f"CXPULSE_{name}", value)
    with pytest.raises(ValidationError, match=name.lower()):
        Settings()


def test_windows_come_from_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in Settings.model_fields:
        monkeypatch.delenv(f"CXPULSE_{name.upper()}", raising=False)
    assert Settings().windows() == DEFAULT_WINDOWS
    monkeypatch.setenv("CXPULSE_JOURNEY_GAP_SECONDS", "600")
    monkeypatch.setenv("CXPULSE_FCR_WINDOW_SECONDS", "172800")
    assert Settings().windows() == replace(
        DEFAULT_WINDOWS, gap_ms=600_000, fcr_window_ms=172_800_000
    )


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [("JOURNEY_GAP_SECONDS", "59", "greater than or equal to 60"),
     ("JOURNEY_GAP_SECONDS", "86401", "less than or equal to 86400"),
     ("ESCALATION_WINDOW_SECONDS", "2592001", "less than or equal to 2592000"),
     ("SHORT_ABANDON_SECONDS", "0", "greater than or equal to 1"),
     ("SERVICE_LEVEL_SECONDS", "3601", "less than or equal to 3600"),
     ("IVR_FOLLOWUP_SECONDS", "30", "greater than or equal to 60"),
     ("FCR_WINDOW_SECONDS", "7d", "valid integer")],
)  # fmt: skip
def test_a_bad_window_names_the_setting_and_its_range(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(f"CXPULSE_{name}", value)
    with pytest.raises(ValidationError) as caught:
        Settings()
    [error] = caught.value.errors()
    assert error["loc"] == (name.lower(),)
    assert message in error["msg"]


def test_alert_drivers_must_look_back_past_the_journey_gap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CXPULSE_JOURNEY_GAP_SECONDS", "7200")
    with pytest.raises(ValidationError, match="must be longer than CXPULSE_JOURNEY_GAP_SECONDS"):
        Settings()
    monkeypatch.setenv("CXPULSE_ALERT_DRIVERS_LOOKBACK_SECONDS", "10800")
    assert Settings().alert_drivers_lookback_seconds == 10800


def test_settings_are_frozen() -> None:
    with pytest.raises(ValidationError):
        Settings().kafka_port = 1  # type: ignore[misc]


def test_redact_url() -> None:
    assert redact_url("http://u:secret@h:8123/db") == "http://u:***@h:8123/db"
    assert redact_url("http://h:8123") == "http://h:8123"


def test_readme_documents_every_setting_with_its_default() -> None:
    rows = {
        match.group(1): match.group(2)
        for match in re.finditer(r"^\| `CXPULSE_([A-Z_]+)` \| ([^|]+) \|", README.read_text(), re.M)
    }
    for name, field in Settings.model_fields.items():
        assert name.upper() in rows, f"CXPULSE_{name.upper()} is missing from the README"
        if field.default is None:
            expected = "unset"
        elif isinstance(field.default, Path):
            expected = f"`./{field.default}`"
        else:
            expected = f"`{field.default}`"
        assert rows[name.upper()].strip() == expected, f"CXPULSE_{name.upper()}"
