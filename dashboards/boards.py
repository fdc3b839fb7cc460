"""Layout of the three dashboards (grafana-foundation-sdk builders); the SQL is in `sql.py`,
the template variables in `variables.py`.

Stable uids: `cxpulse-funnel-<funnel>` (one self-service overview per funnel of the funnels
file), `cxpulse-contact-center`, `cxpulse-oncall`. Every dashboard has the segment variables and
a freshness stat that turns red past `stale_after_seconds`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, cast

from grafana_foundation_sdk.builders import barchart, common, dashboard, stat, table, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as common_models
from grafana_foundation_sdk.models import dashboard as models

from cxpulse.dashboards import driver_panels, impact_panels, sql
from cxpulse.dashboards.annotations import changes_annotation, clickhouse_annotation
from cxpulse.dashboards.config import DATASOURCE_TYPE, BoardConfig
from cxpulse.dashboards.rules import (
    ONCALL_FIRING_PANEL,
    ONCALL_UID,
    ClickHouseQuery,
    dropoff_judged,
)
from cxpulse.dashboards.variables import contact_variables, oncall_variables, segment_variables
from cxpulse.schemas.vocabulary import CONTACT_COLUMNS, SEGMENT_ATTRS
from cxpulse.streams.funnels import FunnelSpec

CONTACT_CENTER_UID = "cxpulse-contact-center"
_CURRENCY_UNITS = {"USD", "EUR", "GBP", "JPY", "CHF", "CAD", "AUD", "SEK", "NOK", "DKK", "INR"}


def funnel_uid(funnel: FunnelSpec) -> str:
    uid = f"cxpulse-funnel-{funnel.name}"
    if len(uid) > 40:
        raise ValueError(f"dashboard uid {uid!r} is longer than Grafana's 40 characters")
    return uid


def _currency(config: BoardConfig) -> str:
    code = config.currency.upper()
    return f"currency{code}" if code in _CURRENCY_UNITS else f"suffix: {config.currency}"


class _Panels:
    """Panel builders bound to one datasource; ids in order of creation."""

    def __init__(self, config: BoardConfig) -> None:
        self.config = config
        self.next_id = 1

    def _target(self, query_sql: str, table_format: bool = True) -> ClickHouseQuery:
        return ClickHouseQuery("A", query_sql, self.config.datasource_uid, table_format)

    def _common(self, panel: Any, title: str, query_sql: str, w: int, h: int, what: str) -> Any:
        panel.id(self.next_id).title(title).description(what).span(w).height(h)
        panel.datasource(models.DataSourceRef(DATASOURCE_TYPE, self.config.datasource_uid))
        panel.with_target(self._target(query_sql, not isinstance(panel, timeseries.Panel)))
        self.next_id += 1
        return panel

    def stat(
        self,
        title: str,
        query_sql: str,
        unit: str,
        what: str,
        w: int = 4,
        red_above: float | None = None,
        mappings: Sequence[models.ValueMapping] = (),
    ) -> stat.Panel:
        panel = (
            stat.Panel()
            .unit(unit)
            .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        )
        steps = [models.Threshold(value=None, color="green")]  # type: ignore[arg-type]
        if red_above is not None:
            steps.append(models.Threshold(value=red_above, color="red"))
        panel.thresholds(
            dashboard.ThresholdsConfig().mode(models.ThresholdsMode.ABSOLUTE).steps(steps)
        ).color_mode(common_models.BigValueColorMode.BACKGROUND).graph_mode(
            common_models.BigValueGraphMode.NONE
        )
        if mappings:
            panel.mappings(list(mappings))
        return cast(stat.Panel, self._common(panel, title, query_sql, w, 4, what))

    def freshness(self) -> stat.Panel:
        limit = self.config.stale_after_seconds
        return self.stat(
            "Data as of (seconds ago)",
            sql.freshness(),
            "s",
            f"Wall clock minus the newest stored event (stalest partition); red past {limit:g} s",
            red_above=limit,
        )

    def table(self, title: str, query_sql: str, what: str, w: int = 24, h: int = 8) -> table.Panel:
        return cast(table.Panel, self._common(table.Panel(), title, query_sql, w, h, what))

    def heatmap_table(self, title: str, query_sql: str, what: str, w: int, h: int) -> table.Panel:
        """Cells coloured by value (green low, red high): a step x segment heatmap."""
        panel = self.table(title, query_sql, what, w, h).unit("percentunit").min(0).max(1)
        panel.cell_options(
            common_models.TableColoredBackgroundCellOptions(
                mode=common_models.TableCellBackgroundDisplayMode.GRADIENT
            )
        ).color_scheme(
            dashboard.FieldColor().mode(models.FieldColorModeId.CONTINUOUS_GR_YL_RD)
        ).override_by_name(
            "value", [models.DynamicConfigValue("custom.cellOptions", {"type": "auto"})]
        )
        panel.override_by_name(
            "journeys",
            [
                models.DynamicConfigValue("custom.cellOptions", {"type": "auto"}),
                models.DynamicConfigValue("unit", "short"),
            ],
        )
        return panel

    def bars(
        self, title: str, query_sql: str, x: str, unit: str, what: str, w: int, h: int
    ) -> barchart.Panel:
        panel = barchart.Panel().x_field(x).unit(unit)
        return cast(barchart.Panel, self._common(panel, title, query_sql, w, h, what))

    def series(
        self, title: str, query_sql: str, unit: str, what: str, w: int = 12, h: int = 8
    ) -> timeseries.Panel:
        panel = timeseries.Panel().unit(unit).span_nulls(False)
        return cast(timeseries.Panel, self._common(panel, title, query_sql, w, h, what))


def _dashboard(uid: str, title: str, tags: list[str]) -> dashboard.Dashboard:
    return (
        dashboard.Dashboard(title)
        .uid(uid)
        .tags(["cxpulse", *tags])
        .time("now-6h", "now")
        .refresh("30s")
        .timezone("utc")
        .editable()
    )


# title, column of `sql.containment`, unit ("money": the configured currency), description
_CONTAINMENT_STATS = (
    ("Portal journeys", "journeys", "short", "Portal journeys started in the range"),
    ("Containment", "containment_rate", "percentunit", "Self-served / closed portal journeys"),
    ("Escalated (closed)", "escalated", "short", "Journeys that escalated to live support"),
    ("Cost to serve", "cost_to_serve", "money", "Escalated x assisted cost + self-served x "
     "self-service cost, closed journeys"),
    ("Savings", "savings", "money", "What the self-served journeys would have cost assisted, "
     "minus their own cost"),
)  # fmt: skip


def funnel_dashboard(funnel: FunnelSpec, config: BoardConfig) -> dashboard.Dashboard:
    """Self-service overview of one funnel: conversion and drop-off per step, drop-off over
    time, containment, escalations by step, segment heatmap, cost to serve and savings."""
    steps = [s.name for s in funnel.steps]
    p = _Panels(config)
    board = _dashboard(funnel_uid(funnel), f"Self-service: {funnel.name}", ["self-service"])
    board.annotation(changes_annotation(funnel.name, config))
    for variable in segment_variables(config, "journey_funnels", "attrs", "entered_at"):
        board.with_variable(variable)
    board.with_variable(
        dashboard.CustomVariable("breakdown")
        .label("Breakdown by")
        .values(",".join(SEGMENT_ATTRS))
        .current(models.VariableOption(text="device", value="device"))
    )
    containment = sql.containment(config.assisted_cost, config.self_service_cost)
    series = sql.containment(config.assisted_cost, config.self_service_cost, series=True)
    board.with_panel(p.freshness())
    for title, column, unit, what in _CONTAINMENT_STATS:
        unit = _currency(config) if unit == "money" else unit
        board.with_panel(p.stat(title, f"SELECT {column} FROM (\n{containment}\n)", unit, what))
    funnel_sql = sql.funnel_step_fields(funnel.name, steps, ["reached", "dropped"])
    panels = [
        p.bars(
            "Funnel: reached and dropped per step",
            funnel_sql,
            "step",
            "short",
            "Journeys that reached each step, and that ended there (closed, not self-served)",
            12,
            9,
        ),
        p.table(
            "Conversion and drop-off per step",
            sql.funnel_step_fields(funnel.name, steps, sql.STEP_TABLE_FIELDS),
            "The API summary's per-step figures; drop-off rate = dropped / reached",
            12,
            9,
        ),
        p.series(
            "Drop-off rate per step over time",
            sql.dropoff_series(funnel.name, steps),
            "percentunit",
            "Dropped at the step / reached it, by funnel entry time",
        ),
        p.series(
            "Containment over time",
            f"SELECT time, containment_rate FROM (\n{series}\n)",
            "percentunit",
            "Self-served / closed, by journey start",
        ),
        p.bars(
            "Escalations by the step where customers left",
            sql.funnel_step_fields(funnel.name, steps, ["escalated"]),
            "step",
            "short",
            "Escalated journeys by the last step reached before escalating",
            8,
            9,
        ),
        p.heatmap_table(
            "Drop-off rate: segment x step",
            sql.breakdown(funnel.name, steps),
            "Per value of the Breakdown by attribute",
            16,
            9,
        ),
    ]
    for panel in panels:
        board.with_panel(panel)
    for variable in impact_panels.variables(config, funnel):
        board.with_variable(variable)
    for title, query_sql, what in impact_panels.tables(funnel, config):
        board.with_panel(p.table(title, query_sql, what, 24, 8))
    return board


# title, KPI (`sql.KPI_EXPRESSIONS`), unit, description, width
_KPI_STATS = (
    ("Service level", "service_level", "percentunit",
     "Answered within 20 s / (answered + abandoned - short abandons)", 4),
    ("ASA", "asa_seconds", "s", "Mean wait of answered contacts", 4),
    ("Abandonment", "abandonment_rate", "percentunit", "Abandoned / queued", 4),
    ("AHT", "aht_seconds", "s", "Mean handle time of answered contacts", 4),
    ("Transfer rate", "transfer_rate", "percentunit",
     "Answered contacts with a transfer / answered", 4),
    ("IVR containment", "ivr_containment_rate", "percentunit",
     "Contained in the IVR with no other contact within 24 h / contacts with an IVR outcome", 4),
    ("Zero-out", "zero_out_rate", "percentunit",
     "Callers who asked for an agent / contacts with an IVR outcome", 3),
    ("FCR", "fcr_rate", "percentunit", "Resolved with no other contact within 7 d / resolved", 3),
    ("FCR is", "fcr_final", "none",
     "Final once every counted contact's 7 d follow-up window has passed", 3),
    ("CSAT", "csat", "percentunit", "Surveys with CSAT >= 4 / surveys with a CSAT", 4),
    ("NPS", "nps", "none", "% promoters (9-10) - % detractors (0-6)", 3),
    ("CES", "ces", "none", "Mean customer effort score (1-7)", 4),
)  # fmt: skip


def contact_center_dashboard(config: BoardConfig) -> dashboard.Dashboard:
    """Service level, ASA, abandonment, AHT, transfers, IVR, FCR and surveys, by queue, team,
    channel and shift."""
    p = _Panels(config)
    board = _dashboard(CONTACT_CENTER_UID, "Contact center", ["contact-center"])
    for variable in contact_variables(config):
        board.with_variable(variable)
    for variable in segment_variables(config, "contacts", "attrs", "started_at"):
        board.with_variable(variable)
    board.with_variable(
        dashboard.CustomVariable("by")
        .label("Group by")
        .values(",".join(CONTACT_COLUMNS))
        .current(models.VariableOption(text="queue", value="queue"))
    )
    final = models.ValueMap(
        options={
            "0": models.ValueMappingResult(text="provisional", color="orange"),
            "1": models.ValueMappingResult(text="final", color="green"),
        }
    )
    board.with_panel(p.freshness())
    for title, kpi, unit, what, width in _KPI_STATS:
        mappings = [final] if kpi == "fcr_final" else []
        board.with_panel(p.stat(title, sql.contact_kpis([kpi]), unit, what, width, None, mappings))
    panels = [
        p.series(
            "Service level and abandonment",
            sql.contact_kpis(["service_level", "abandonment_rate"], "time"),
            "percentunit",
            "Per interval of contact start",
        ),
        p.series(
            "ASA and AHT",
            sql.contact_kpis(["asa_seconds", "aht_seconds"], "time"),
            "s",
            "Per interval of contact start",
        ),
        p.table(
            "KPIs by ${by}",
            sql.contact_kpis(list(sql.KPI_EXPRESSIONS), "by"),
            "Every KPI per value of the Group by variable",
            24,
            10,
        ),
    ]
    for panel in panels:
        board.with_panel(panel)
    return board


def oncall_dashboard(config: BoardConfig) -> dashboard.Dashboard:
    """Firing alerts with current vs baseline rates, alert history (also as annotations), the
    step and segment of each alert, and the drop-off rule's live figures."""
    p = _Panels(config)
    board = _dashboard(ONCALL_UID, "On-call", ["alerts"])
    for variable in oncall_variables(config):
        board.with_variable(variable)
    board.with_variable(driver_panels.step_variable(config))
    board.annotation(
        clickhouse_annotation("cxpulse alerts", "red", sql.alert_annotations(), config)
    )
    board.annotation(
        dashboard.AnnotationQuery()
        .name("cxpulse alert notifications")
        .enable(False)
        .icon_color("orange")
        .datasource(models.DataSourceRef("grafana", "-- Grafana --"))
        .target(
            dashboard.AnnotationTarget().type("tags").tags(["cxpulse"]).match_any(False).limit(500)
        )
    )
    board.with_panel(p.freshness())
    firing = p.table(
        "Firing alerts",
        sql.alerts_firing(),
        "Rule, funnel step and segment; current vs baseline rate, z",
        20,
        8,
    )
    assert p.next_id - 1 == ONCALL_FIRING_PANEL  # the alert rules link to this panel
    board.with_panel(firing)
    board.with_panel(
        p.bars(
            "Current vs baseline rate (firing)",
            "SELECT id, current_rate, baseline_rate FROM (\n" + sql.alerts_firing() + "\n)",
            "id",
            "percentunit",
            "Rates of each firing alert",
            24,
            8,
        )
    )
    board.with_panel(
        p.table(
            "Alert history", sql.alerts_history(), "Alerts active at some time in the range", 24, 8
        )
    )
    for funnel in config.funnels:
        board.with_panel(
            p.table(
                f"Drop-off rule now: {funnel.name}",
                f"SELECT * FROM (\n{dropoff_judged(funnel, config)}\n)\n"
                "WHERE window_n > 0 ORDER BY breach DESC, z DESC",
                "The Grafana drop-off rule's figures at the end of the range, per step and segment",
                24,
                8,
            )
        )
        title = f"{driver_panels.TITLE}: {funnel.name}"
        drivers = driver_panels.drivers_sql(funnel)
        board.with_panel(p.table(title, drivers, driver_panels.DESCRIPTION, 24, 8))
    return board


def all_dashboards(config: BoardConfig) -> list[dashboard.Dashboard]:
    return [
        *(funnel_dashboard(f, config) for f in config.funnels),
        contact_center_dashboard(config),
        oncall_dashboard(config),
    ]


def to_json(board: dashboard.Dashboard) -> dict[str, Any]:
    """The dashboard model as Grafana's JSON (plain dicts)."""
    return cast(dict[str, Any], json.loads(json.dumps(board.build(), cls=JSONEncoder)))
