"""Grafana-managed alert rules that mirror the worker's alert rules (design section 7).

Each rule is one ClickHouse query that returns a row per alert instance: string columns become
the instance's labels (step, segment), the one number is z when the instance breaches and 0
otherwise, and a threshold expression fires on > 0. The counts are those of the evaluator's
queries (`sinks/alert_queries.timely_dropoff`, `contact_alert_counts`) at Grafana's evaluation time;
the test (`streams/alerting.judge`: two-proportion z with Yates' correction, relative rise,
volume, and for service level the target gate) is written out in SQL with the same numbers.

Two differences from the worker, both deliberate (docs/decisions.md): tau is the configured cap
for every step, not the baseline's p90, and z is not raised for the number of tests
(Bonferroni), because Grafana evaluates each instance on its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from grafana_foundation_sdk.builders import alerting
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants
from grafana_foundation_sdk.models.alerting import RelativeTimeRange

from cxpulse.dashboards.config import DATASOURCE_TYPE, PLUGIN_VERSION, BoardConfig
from cxpulse.dashboards.sql import TO, ident, names_array
from cxpulse.sinks import alert_queries
from cxpulse.streams.alerting import ABANDONMENT, DROPOFF, SERVICE_LEVEL, Thresholds
from cxpulse.streams.funnels import FunnelSpec

#: Evaluation time (epoch ms): the end of the rule's time range, i.e. now.
AT = f"toUnixTimestamp64Milli({TO})"
RULE_GROUP = "cxpulse"
ONCALL_UID = "cxpulse-oncall"
ONCALL_FIRING_PANEL = 2


def dropoff_counts(funnel: FunnelSpec, config: BoardConfig) -> str:
    """Timely drop-off counts per step k >= 1 and segment: journeys that reached step k-1 in the
    window [at - tau - window, at - tau) and in the baseline before it, and how many of them had
    not reached step k within tau (`alert_queries.timely_dropoff` with one tau for every step)."""
    tau, window = config.tau_seconds * 1000, config.window_seconds * 1000
    baseline = config.baseline_seconds * 1000
    oldest = f"fromUnixTimestamp64Milli({AT} - {tau + window + baseline + funnel.window_ms})"
    arrivals = alert_queries.step_arrivals(f"'{ident(funnel.name)}'", str(tau), oldest, TO)
    segments = alert_queries.segments_join(names_array(config.segment_attrs))
    return alert_queries.timely_dropoff_counts(arrivals, AT, str(window), str(baseline), segments)


def contact_counts(config: BoardConfig) -> str:
    """Service-level misses and abandonment of contacts started in the window [at - settle -
    window, at - settle) and the baseline before it, overall and per contact segment
    (`alert_queries.contact_alert_counts`)."""
    settle, window = config.contact_settle_seconds * 1000, config.window_seconds * 1000
    baseline = config.baseline_seconds * 1000
    bounds = (settle + window, settle + window + baseline, settle)
    mid, lo, hi = (f"fromUnixTimestamp64Milli({AT} - {ms})" for ms in bounds)
    columns = [ident(c) for c in config.contact_segments]
    return alert_queries.contact_window_counts(mid, lo, hi, columns)


def judged(
    counts: str,
    labels: str,
    hits: tuple[str, str, str, str],
    t: Thresholds,
    gate: str = "1",
) -> str:
    """`alerting.judge` over `counts` (window hits, window n, baseline hits, baseline n):
    columns current, baseline, z, breach; `labels` are kept as they are."""
    x1, n1, x2, n2 = hits
    return f"""SELECT {labels}, {x1} AS window_hits, {n1} AS window_n, {x2} AS base_hits,
    {n2} AS base_n, current, baseline, z,
    {n1} >= {t.min_window} AND z IS NOT NULL AND z >= {t.min_z!r} AND material AND ({gate})
        AS breach
FROM (
    SELECT *, if({n1} = 0, NULL, {x1} / {n1}) AS current, if({n2} = 0, NULL, {x2} / {n2})
            AS baseline,
        ({x1} + {x2}) / ({n1} + {n2}) AS pooled,
        pooled * (1 - pooled) * (1 / {n1} + 1 / {n2}) AS variance,
        greatest(0, abs(current - baseline) - 0.5 * (1 / {n1} + 1 / {n2})) AS corrected,
        if({n1} > 0 AND {n2} > 0 AND variance > 0,
            if(current - baseline < 0, -corrected, corrected) / sqrt(variance), NULL) AS z,
        if(baseline = 0, current > 0,
            (current - baseline) / baseline >= {t.min_relative_increase!r} - 1e-9) AS material
    FROM ({counts})
)"""


_SEGMENT_LABEL = "if(attr = '', 'all', concat(attr, '=', value)) AS segment"


def dropoff_judged(funnel: FunnelSpec, config: BoardConfig) -> str:
    steps = names_array([s.name for s in funnel.steps])
    return judged(
        dropoff_counts(funnel, config),
        f"{steps}[k + 1] AS step, {_SEGMENT_LABEL}",
        ("window_hits", "window_n", "base_hits", "base_n"),
        config.thresholds,
    )


def service_level_judged(config: BoardConfig) -> str:
    """Misses of the service level rising, while the window's level is below its target."""
    target = config.service_level_target
    return judged(
        contact_counts(config),
        _SEGMENT_LABEL,
        ("window_sl_misses", "window_sl_n", "base_sl_misses", "base_sl_n"),
        config.thresholds,
        gate=f"window_sl_n > 0 AND (window_sl_n - window_sl_misses) / window_sl_n < {target!r}",
    )


def abandonment_judged(config: BoardConfig) -> str:
    return judged(
        contact_counts(config),
        _SEGMENT_LABEL,
        ("window_abandoned", "window_queued", "base_abandoned", "base_queued"),
        config.thresholds,
    )


def rule_query(judged_sql: str, labels: Sequence[str]) -> str:
    """What Grafana evaluates: the labels and z where an instance breaches (else 0)."""
    return (
        f"SELECT {', '.join(labels)}, if(ifNull(breach, 0), assumeNotNull(z), 0) AS z_breach\n"
        f"FROM (\n{judged_sql}\n)"
    )


class ClickHouseQuery(variants.Dataquery, cogbuilder.Builder[variants.Dataquery]):
    """A raw-SQL query of the ClickHouse datasource plugin (its `CHSqlQuery` JSON); the SDK has
    no builder for this plugin, so this is one (it builds itself)."""

    def __init__(self, ref_id: str, sql: str, datasource_uid: str, table: bool = True) -> None:
        self.ref_id, self.sql, self.datasource_uid, self.table = ref_id, sql, datasource_uid, table

    def to_json(self) -> dict[str, Any]:
        return {
            "refId": self.ref_id,
            "datasource": {"type": DATASOURCE_TYPE, "uid": self.datasource_uid},
            "editorType": "sql",
            "format": 1 if self.table else 0,
            "queryType": "table" if self.table else "timeseries",
            "pluginVersion": PLUGIN_VERSION,
            "rawSql": self.sql,
        }

    def build(self) -> ClickHouseQuery:
        return self


class ThresholdExpression(variants.Dataquery, cogbuilder.Builder[variants.Dataquery]):
    """Grafana's server-side threshold expression: fires where `source` > 0."""

    def __init__(self, ref_id: str, source: str) -> None:
        self.ref_id, self.source = ref_id, source

    def to_json(self) -> dict[str, Any]:
        return {
            "refId": self.ref_id,
            "datasource": {"type": "__expr__", "uid": "__expr__"},
            "type": "threshold",
            "expression": self.source,
            "conditions": [{"evaluator": {"type": "gt", "params": [0]}}],
        }

    def build(self) -> ThresholdExpression:
        return self


def _rule(
    config: BoardConfig,
    uid: str,
    title: str,
    name: str,
    sql: str,
    summary: str,
    lookback_seconds: int,
) -> alerting.Rule:
    if len(uid) > 40:
        raise ValueError(f"alert rule uid {uid!r} is longer than Grafana's 40 characters")
    every = config.evaluation_seconds
    t = config.thresholds
    query = (
        alerting.Query("A")
        .datasource_uid(config.datasource_uid)
        .relative_time_range(RelativeTimeRange(from_val=lookback_seconds, to=0))
        .model(ClickHouseQuery("A", sql, config.datasource_uid))
    )
    threshold = alerting.Query("B").datasource_uid("__expr__").model(ThresholdExpression("B", "A"))
    return (
        alerting.Rule(title)
        .uid(uid)
        .folder_uid(config.folder_uid)
        .rule_group(RULE_GROUP)
        .org_id(1)
        .queries([query, threshold])
        .condition("B")
        # The worker fires after `fire_after` breaching evaluations in a row.
        .for_val(f"{(t.fire_after - 1) * every}s")
        .no_data_state("OK")
        .exec_err_state("Error")
        .labels({"source": "cxpulse", "rule": name})
        .annotations(
            {
                "summary": summary,
                "description": "z {{ $values.A.Value }} (z >= "
                f"{t.min_z:g}, rise >= {t.min_relative_increase:.0%}"
                f", >= {t.min_window} in the {config.window_seconds // 60} min "
                f"window, baseline {config.baseline_seconds // 3600} h)",
                "__dashboardUid__": ONCALL_UID,
                "__panelId__": str(ONCALL_FIRING_PANEL),
            }
        )
    )


def rules(config: BoardConfig) -> list[alerting.Rule]:
    """Drop-off rising per funnel, service-level breach and abandonment spike."""
    lookback = config.tau_seconds + config.window_seconds + config.baseline_seconds
    contact_lookback = config.contact_settle_seconds + config.window_seconds
    out = [
        _rule(
            config,
            f"cxpulse-dropoff-{f.name}",
            f"Drop-off rising: {f.name}",
            DROPOFF,
            rule_query(dropoff_judged(f, config), ["step", "segment"]),
            "Timely drop-off at {{ $labels.step }} ({{ $labels.segment }}) rose significantly",
            lookback + f.conversion_window_seconds,
        )
        for f in config.funnels
    ]
    out.append(
        _rule(
            config,
            "cxpulse-service-level",
            "Service level breach",
            SERVICE_LEVEL,
            rule_query(service_level_judged(config), ["segment"]),
            "Service level below target with significantly more misses ({{ $labels.segment }})",
            contact_lookback + config.baseline_seconds,
        )
    )
    out.append(
        _rule(
            config,
            "cxpulse-abandonment",
            "Abandonment spike",
            ABANDONMENT,
            rule_query(abandonment_judged(config), ["segment"]),
            "Abandonment rose significantly ({{ $labels.segment }})",
            contact_lookback + config.baseline_seconds,
        )
    )
    return out
