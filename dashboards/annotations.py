"""Annotation queries of the dashboards that read the ClickHouse datasource: alert history on
the on-call board, portal changes on every funnel board."""

from __future__ import annotations

from typing import cast

from grafana_foundation_sdk.builders import dashboard
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.models import dashboard as models

from cxpulse.dashboards import sql
from cxpulse.dashboards.config import DATASOURCE_TYPE, BoardConfig
from cxpulse.dashboards.rules import ClickHouseQuery
from cxpulse.sinks.change_queries import change_annotations


def clickhouse_annotation(
    name: str, color: str, query: str, config: BoardConfig
) -> dashboard.AnnotationQuery:
    """An annotation query over the datasource, shown by default; `query` returns time,
    timeEnd, title, text and tags."""
    return (
        dashboard.AnnotationQuery()
        .name(name)
        .enable(True)
        .icon_color(color)
        .datasource(models.DataSourceRef(DATASOURCE_TYPE, config.datasource_uid))
        .target(
            cast(
                cogbuilder.Builder[models.AnnotationTarget],
                ClickHouseQuery("Anno", query, config.datasource_uid),
            )
        )
    )


def changes_annotation(funnel: str, config: BoardConfig) -> dashboard.AnnotationQuery:
    """The portal changes of `funnel` and of every funnel (design section 4b)."""
    query = change_annotations(f"'{sql.ident(funnel)}'", sql.FROM, sql.TO)
    return clickhouse_annotation("Portal changes", "blue", query, config)
