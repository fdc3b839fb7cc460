"""Template variables: multi-value with "All" (expanding to `sql.ALL_VALUE`, which turns the
filter off), values read from the data in the dashboard's time range."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard
from grafana_foundation_sdk.models import dashboard as models

from cxpulse.dashboards import sql
from cxpulse.dashboards.config import DATASOURCE_TYPE, BoardConfig
from cxpulse.schemas.vocabulary import CONTACT_COLUMNS, SEGMENT_ATTRS
from cxpulse.streams.alerting import ABANDONMENT, DROPOFF, SERVICE_LEVEL


def _all() -> models.VariableOption:
    return models.VariableOption(selected=True, text="All", value="$__all")


def query_variable(
    config: BoardConfig, name: str, label: str, values_sql: str
) -> dashboard.QueryVariable:
    """A variable whose values are a ClickHouse query's, read again when the range changes."""
    return (
        dashboard.QueryVariable(name)
        .label(label)
        .datasource(models.DataSourceRef(DATASOURCE_TYPE, config.datasource_uid))
        .query({"editorType": "sql", "rawSql": values_sql})
        .refresh(models.VariableRefresh.ON_TIME_RANGE_CHANGED)
    )


def _query_variable(
    config: BoardConfig, name: str, label: str, values_sql: str
) -> dashboard.QueryVariable:
    return (
        query_variable(config, name, label, values_sql)
        .sort(models.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(sql.ALL_VALUE)
        .current(_all())
    )


def segment_variables(
    config: BoardConfig, table: str, map_column: str, time_column: str
) -> list[dashboard.QueryVariable]:
    """One per segment attribute, its values those of `table` in range."""
    return [
        _query_variable(
            config,
            attr,
            attr.replace("_", " ").capitalize(),
            sql.variable_values(table, f"{map_column}['{attr}']", time_column),
        )
        for attr in SEGMENT_ATTRS
    ]


def contact_variables(config: BoardConfig) -> list[dashboard.QueryVariable]:
    """Queue, team, channel and shift of contacts started in range."""
    return [
        _query_variable(config, c, c.capitalize(), sql.variable_values("contacts", c, "started_at"))
        for c in CONTACT_COLUMNS
    ]


def oncall_variables(config: BoardConfig) -> list[dashboard.VariableModel]:
    rule = (
        dashboard.CustomVariable("rule")
        .label("Rule")
        .values(",".join((DROPOFF, SERVICE_LEVEL, ABANDONMENT)))
        .multi(True)
        .include_all(True)
        .all_value(sql.ALL_VALUE)
        .current(_all())
    )
    return [rule, *segment_variables(config, "journey_funnels", "attrs", "entered_at")]
