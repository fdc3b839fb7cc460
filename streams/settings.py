"""Settings every cxpulse process reads from `CXPULSE_*` environment variables.

One frozen model, so a process never sees its configuration change under it. Every field is
documented in the README's settings table; `tests/deploy/test_settings.py` keeps the two in step.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from cxpulse.schemas.vocabulary import (
    ALERT_CONTACT_COLUMNS,
    ALERT_SEGMENT_ATTRS,
    CONTACT_COLUMNS,
)
from cxpulse.streams.contacts import DEFAULT_SHIFTS
from cxpulse.streams.windows import DEFAULT_WINDOWS

if TYPE_CHECKING:
    from cxpulse.schemas.validate import Bounds
    from cxpulse.streams.contacts import ShiftTable
    from cxpulse.streams.evaluator import AlertConfig
    from cxpulse.streams.keyed import KeyLimits
    from cxpulse.streams.windows import Windows


class Settings(BaseSettings):
    """Configuration of a cxpulse deployment (env prefix `CXPULSE_`)."""

    model_config = SettingsConfigDict(env_prefix="CXPULSE_", frozen=True, extra="ignore")

    data_dir: Path = Field(
        Path("./var"),
        description="Where local state lives: Kafka logs and data, the chdb database, stack files.",
    )
    kafka_bootstrap: str | None = Field(
        None,
        description="Kafka bootstrap servers (host:port,...). Unset: `cxpulse up` starts a local "
        "broker and the other commands use the one it started.",
    )
    kafka_port: int = Field(9092, ge=1, le=65535, description="Client port of the local broker.")
    kafka_controller_port: int = Field(
        9093, ge=1, le=65535, description="KRaft controller port of the local broker."
    )
    kafka_heap: str = Field("512m", description="JVM heap (-Xmx) of the local broker.")
    topic_partitions: int = Field(
        4, ge=1, description="Partitions of the topics cxpulse creates (input, internal, DLQ)."
    )
    worker_group_messages: int = Field(
        50,
        ge=1,
        description="Keyed messages (up to 1,000 events each) a worker's journey stage handles "
        "together: each changed key is rebuilt and its state written once per group.",
    )
    max_event_bytes: int = Field(
        64 * 1024, ge=1024, le=512 * 1024, description="Largest input message accepted (bytes)."
    )
    max_attrs: int = Field(32, ge=1, description="Most `attrs` entries an event may carry.")
    max_attr_key_chars: int = Field(64, ge=1, description="Longest `attrs` key (characters).")
    max_attr_value_chars: int = Field(256, ge=1, description="Longest `attrs` value (characters).")
    max_key_events: int = Field(
        20_000, ge=1, description="Most events one journey key holds; the excess is dead-lettered."
    )
    max_key_bytes: int = Field(
        64 * 1024 * 1024,
        ge=16 * 1024,
        description="Most bytes one journey key's state may hold in memory, counting its events "
        "and the row fingerprints they may add; the excess is dead-lettered.",
    )
    max_unit_bytes: int = Field(
        512 * 1024,
        ge=16 * 1024,
        le=960 * 1024,
        description="Most bytes one journey, one contact or one key's links may reach, counted "
        "as for the key; each is one record of the state topic, so this keeps it within Kafka's "
        "default 1 MiB message limit. The excess is dead-lettered.",
    )
    freeze_after_seconds: int = Field(
        300,
        ge=0,
        description="A journey key untouched this long is held compressed in memory (about a "
        "tenth of its size) until an event or a due time reaches it; 0: never.",
    )
    clickhouse_url: str | None = Field(
        None,
        description="ClickHouse server URL (http[s]://user:password@host:port). Unset: embedded "
        "chdb under `<data_dir>/chdb`.",
    )
    clickhouse_database: str = Field(
        "cxpulse", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="Database of cxpulse tables."
    )
    writer_batch_rows: int = Field(
        50_000, ge=1, description="The store writer inserts once this many rows are buffered..."
    )
    writer_flush_seconds: float = Field(
        0.25,
        gt=0,
        description="...or once its oldest buffered row is this old (each flush inserts into "
        "every table: shorter costs store CPU, longer adds to the data's age).",
    )
    funnels_file: Path | None = Field(
        None,
        description="YAML file of funnel definitions. Unset: streams/funnels.yaml.",
    )
    # The windows of the metric definitions (design section 4; `windows()`), in seconds.
    journey_gap_seconds: int = Field(
        DEFAULT_WINDOWS.gap_ms // 1000,
        ge=60,
        le=86_400,
        description="A portal journey ends after this much inactivity.",
    )
    escalation_window_seconds: int = Field(
        DEFAULT_WINDOWS.escalation_window_ms // 1000,
        ge=60,
        le=30 * 86_400,
        description="A contact escalates a journey when it starts within this after the "
        "journey's last portal event (and before the next journey).",
    )
    short_abandon_seconds: int = Field(
        DEFAULT_WINDOWS.short_abandon_ms // 1000,
        ge=1,
        le=600,
        description="Abandoned after waiting less than this: a short abandon.",
    )
    service_level_seconds: int = Field(
        DEFAULT_WINDOWS.service_level_ms // 1000,
        ge=1,
        le=3600,
        description="Answered after waiting at most this: within service level.",
    )
    ivr_followup_seconds: int = Field(
        DEFAULT_WINDOWS.ivr_followup_ms // 1000,
        ge=60,
        le=30 * 86_400,
        description="IVR-contained when no other contact of the customer starts within this.",
    )
    fcr_window_seconds: int = Field(
        DEFAULT_WINDOWS.fcr_window_ms // 1000,
        ge=60,
        le=30 * 86_400,
        description="First-contact resolved when no other contact of the customer starts "
        "within this.",
    )
    shifts: str = Field(
        DEFAULT_SHIFTS,
        description="Contact-center shifts as name=HH:MM-HH:MM local-time ranges.",
    )
    shift_timezone: str = Field("UTC", description="Time zone of the shift ranges.")
    assisted_cost: float = Field(7.0, ge=0, description="Cost of one assisted interaction.")
    self_service_cost: float = Field(0.1, ge=0, description="Cost of one self-served journey.")
    currency: str = Field("USD", description="Currency of the costs.")
    alert_evaluation_seconds: float = Field(
        30.0, ge=0, description="Alert evaluation every this many seconds of event time; 0: off."
    )
    alert_window_seconds: int = Field(900, ge=60, description="Window of the alert rules.")
    alert_baseline_seconds: int = Field(
        86_400, ge=600, description="Trailing baseline the window is compared with."
    )
    alert_tau_cap_seconds: int = Field(
        600, ge=1, description="Cap of tau, the timely drop-off deadline (p90 step-to-step time)."
    )
    alert_min_z: float = Field(
        3.0, gt=0, description="z a rise needs (per evaluation; raised for the number of tests)."
    )
    alert_min_relative_increase: float = Field(
        0.2, ge=0, description="Relative rise over the baseline an alert needs (0.2 = +20 %)."
    )
    alert_min_window: int = Field(30, ge=1, description="Journeys or contacts a window needs.")
    alert_fire_after: int = Field(2, ge=1, description="Breaching evaluations before firing.")
    alert_resolve_after: int = Field(2, ge=1, description="Clean evaluations before resolving.")
    alert_segments: str = Field(
        ",".join(ALERT_SEGMENT_ATTRS),
        description="Journey attributes whose values are alerted on besides the overall rate.",
    )
    alert_contact_segments: str = Field(
        ",".join(ALERT_CONTACT_COLUMNS),
        description="Contact columns (queue, channel, team, shift) alerted on.",
    )
    alert_contact_settle_seconds: int = Field(
        300, ge=0, description="How old a contact must be to count (time to answer or abandon)."
    )
    alert_service_level_target: float = Field(
        0.8, gt=0, le=1, description="Service level below which a rise of misses is a breach."
    )
    alert_no_data_seconds: int = Field(
        300,
        ge=0,
        description="no_data fires when a funnel's first step saw no journey for this long while "
        "its baseline rate made that silence improbable; 0 turns the rule off.",
    )
    alert_webhook_urls: SecretStr | None = Field(
        None,
        description="Comma-separated URLs that get Alertmanager-compatible webhook POSTs (secret: "
        "Slack and Teams hooks carry their credential in the URL).",
    )
    alert_webhook_max_attempts: int = Field(
        8, ge=1, description="Attempts per notification (exponential backoff from 0.5 s)."
    )
    change_alert_window_seconds: int = Field(
        7200, ge=0, description="An alert names the portal changes made this long before it fired."
    )
    alert_drivers_lookback_seconds: int = Field(
        7200,
        ge=60,
        description="A drop-off alert names the top drivers of its step among the journeys that "
        "entered the funnel this long before it fired (closed ones: longer than the journey gap).",
    )
    api_host: str = Field("127.0.0.1", description="Address the metrics API listens on.")
    api_port: int = Field(8000, ge=0, le=65535, description="Port of the metrics API.")
    api_keys: SecretStr | None = Field(
        None,
        description="Bearer API keys, comma-separated; an entry may be `sha256:<hex>` so only "
        "the hash is configured. Unset: `cxpulse up` generates one and keeps it in the data dir.",
    )
    api_max_range_days: int = Field(93, ge=1, description="Longest time range one request reads.")
    api_max_points: int = Field(10_000, ge=1, description="Most time buckets in one response.")
    api_ready_lag_seconds: float = Field(
        300.0, gt=0, description="/readyz fails when the newest stored event is older than this."
    )
    api_cache_seconds: float = Field(
        0.5,
        ge=0,
        le=5,
        description="How long the API reuses a computed response for identical requests "
        "(concurrent ones share one query); 0 turns the cache off.",
    )
    log_level: str = Field("info", description="Log level of cxpulse processes.")
    log_format: str = Field("text", description="Log lines as text, or json (one object a line).")
    # Grafana (dashboards sync and alert annotations)
    grafana_url: str | None = Field(
        None, description="Grafana base URL: alerts are annotated there; `grafana sync` target."
    )
    grafana_token: SecretStr | None = Field(
        None, description="Grafana service-account token (Bearer) for annotations and sync."
    )
    # Grafana sync (dashboards/, `cxpulse grafana sync`)
    grafana_folder: str = Field(
        "cxpulse", min_length=1, description="Title of the Grafana folder `grafana sync` fills."
    )
    grafana_clickhouse_url: str | None = Field(
        None,
        description="ClickHouse URL as Grafana reaches it, for the datasource `grafana sync` "
        "writes. Unset: CXPULSE_CLICKHOUSE_URL.",
    )

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.lower()
        if level not in {"debug", "info", "warning", "error", "critical"}:
            raise ValueError("must be one of debug, info, warning, error, critical")
        return level

    @field_validator("shifts")
    @classmethod
    def _valid_shifts(cls, value: str) -> str:
        from cxpulse.streams.contacts import ShiftTable

        ShiftTable.parse(value)  # raises ValueError with the offending part
        return value

    @field_validator("shift_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("alert_evaluation_seconds")
    @classmethod
    def _evaluation_grid(cls, value: float) -> float:
        if 0 < value < 1:
            raise ValueError("alert evaluation runs every 1 s or more (0 turns it off)")
        return value

    @model_validator(mode="after")
    def _drivers_see_closed_journeys(self) -> Settings:
        if self.alert_drivers_lookback_seconds <= self.journey_gap_seconds:
            raise ValueError(
                "CXPULSE_ALERT_DRIVERS_LOOKBACK_SECONDS must be longer than "
                "CXPULSE_JOURNEY_GAP_SECONDS: drivers count closed journeys only"
            )
        return self

    @field_validator("log_format")
    @classmethod
    def _known_format(cls, value: str) -> str:
        if value not in {"text", "json"}:
            raise ValueError("log format is text or json")
        return value

    @field_validator("alert_contact_segments")
    @classmethod
    def _contact_columns(cls, value: str) -> str:
        unknown = set(_names(value)) - set(CONTACT_COLUMNS)
        if unknown:
            raise ValueError(f"not contact columns: {sorted(unknown)}")
        return value

    def alert_config(self) -> AlertConfig:
        from cxpulse.streams.alerting import Thresholds
        from cxpulse.streams.evaluator import AlertConfig

        return AlertConfig(
            every_ms=int(self.alert_evaluation_seconds * 1000),
            window_ms=self.alert_window_seconds * 1000,
            baseline_ms=self.alert_baseline_seconds * 1000,
            tau_cap_ms=self.alert_tau_cap_seconds * 1000,
            segment_attrs=_names(self.alert_segments),
            contact_segments=_names(self.alert_contact_segments),
            contact_settle_ms=self.alert_contact_settle_seconds * 1000,
            service_level_target=self.alert_service_level_target,
            no_data_ms=self.alert_no_data_seconds * 1000,
            change_window_ms=self.change_alert_window_seconds * 1000,
            drivers_lookback_ms=self.alert_drivers_lookback_seconds * 1000,
            thresholds=Thresholds(
                min_z=self.alert_min_z,
                min_relative_increase=self.alert_min_relative_increase,
                min_window=self.alert_min_window,
                fire_after=self.alert_fire_after,
                resolve_after=self.alert_resolve_after,
            ),
        )

    def bounds(self) -> Bounds:
        from cxpulse.schemas.validate import Bounds

        return Bounds(
            self.max_event_bytes, self.max_attrs, self.max_attr_key_chars, self.max_attr_value_chars
        )

    def key_limits(self) -> KeyLimits:
        from cxpulse.streams.keyed import KeyLimits

        return KeyLimits(
            self.max_key_events,
            self.max_key_bytes,
            self.max_unit_bytes,
            freeze_after_ms=self.freeze_after_seconds * 1000,
        )

    def windows(self) -> Windows:
        from cxpulse.streams.windows import Windows

        return Windows(
            gap_ms=self.journey_gap_seconds * 1000,
            escalation_window_ms=self.escalation_window_seconds * 1000,
            short_abandon_ms=self.short_abandon_seconds * 1000,
            service_level_ms=self.service_level_seconds * 1000,
            ivr_followup_ms=self.ivr_followup_seconds * 1000,
            fcr_window_ms=self.fcr_window_seconds * 1000,
        )

    def shift_table(self) -> ShiftTable:
        from zoneinfo import ZoneInfo

        from cxpulse.streams.contacts import ShiftTable

        return ShiftTable.parse(self.shifts, ZoneInfo(self.shift_timezone))

    @property
    def kafka_home(self) -> Path:
        """Directory of the local broker: jars, configuration, data, logs."""
        return self.data_dir.resolve() / "kafka"

    @property
    def chdb_path(self) -> Path:
        return self.data_dir.resolve() / "chdb"

    @property
    def stack_file(self) -> Path:
        """Written by `cxpulse up` so other commands can find the running stack."""
        return self.data_dir.resolve() / "stack.json"


def redact_url(url: str) -> str:
    """The URL with its password masked, for logs and status output."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _names(text: str) -> tuple[str, ...]:
    return tuple(n.strip() for n in text.split(",") if n.strip())
