"""What the generated dashboards and alert rules depend on, taken from the deployment settings.

`cxpulse grafana sync` and `cxpulse grafana build` generate from the running configuration, so
a deployment's costs, freshness threshold and alert thresholds reach its Grafana; the committed
files under `dashboards/grafana/` are those of the defaults (no `CXPULSE_*` set). The folder
and datasource uids are fixed: dashboards and rules refer to them.
"""

from __future__ import annotations

from dataclasses import dataclass

from cxpulse.streams.alerting import Thresholds
from cxpulse.streams.funnels import FunnelSpec, load_funnels
from cxpulse.streams.settings import Settings

DATASOURCE_TYPE = "grafana-clickhouse-datasource"
#: The ClickHouse plugin release the compose stack installs and the query JSON is written for.
PLUGIN_VERSION = "4.20.0"


@dataclass(frozen=True)
class BoardConfig:
    funnels: tuple[FunnelSpec, ...]
    folder_title: str
    assisted_cost: float
    self_service_cost: float
    currency: str
    stale_after_seconds: float  # the freshness stat turns red past this (as /readyz fails)
    # Alert rules (design section 7), with the worker evaluator's settings.
    evaluation_seconds: int
    window_seconds: int
    baseline_seconds: int
    tau_seconds: int  # fixed in Grafana: the evaluator's cap of tau
    contact_settle_seconds: int
    service_level_target: float
    segment_attrs: tuple[str, ...]
    contact_segments: tuple[str, ...]
    thresholds: Thresholds
    folder_uid: str = "cxpulse"
    datasource_uid: str = "cxpulse-clickhouse"

    @classmethod
    def from_settings(cls, settings: Settings) -> BoardConfig:
        alerts = settings.alert_config()  # the evaluator's own reading of the settings
        return cls(
            funnels=tuple(load_funnels(settings.funnels_file)),
            folder_title=settings.grafana_folder,
            assisted_cost=settings.assisted_cost,
            self_service_cost=settings.self_service_cost,
            currency=settings.currency,
            stale_after_seconds=settings.api_ready_lag_seconds,
            evaluation_seconds=_grafana_interval(settings.alert_evaluation_seconds),
            window_seconds=alerts.window_ms // 1000,
            baseline_seconds=alerts.baseline_ms // 1000,
            tau_seconds=alerts.tau_cap_ms // 1000,
            contact_settle_seconds=alerts.contact_settle_ms // 1000,
            service_level_target=alerts.service_level_target,
            segment_attrs=alerts.segment_attrs,
            contact_segments=alerts.contact_segments,
            thresholds=alerts.thresholds,
        )


def _grafana_interval(seconds: float) -> int:
    """Grafana evaluates rule groups on a 10 s grid; 0 (the worker's evaluator off) keeps the
    default pace for Grafana's rules."""
    return max(10, round(seconds / 10) * 10) if seconds else 30
