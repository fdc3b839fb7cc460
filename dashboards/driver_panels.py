"""The on-call dashboard's drop-off drivers: a step variable that starts on the step of a firing
drop-off alert, and per funnel the top drivers of that step (the API's `/drivers`, as SQL).

The figures are `sinks.driver_queries`' builders with Grafana's range and variables where the
API binds parameters; tests/dashboards/test_driver_panels.py checks the panel against the API.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard
from grafana_foundation_sdk.models import dashboard as models

from cxpulse.dashboards import sql
from cxpulse.dashboards.config import BoardConfig
from cxpulse.dashboards.variables import query_variable
from cxpulse.sinks.driver_queries import driver_counts, driver_figures
from cxpulse.streams.alerting import DROPOFF
from cxpulse.streams.funnels import FunnelSpec

VARIABLE = "dropoff_step"
#: Rows of the panel: the strongest drivers (the API lists every value tested).
TOP = 10
TITLE = "Top drop-off drivers"
DESCRIPTION = (
    "Closed journeys that reached the step before the Drop-off step: segment values and event "
    "facts (eligibility reason, failed test) by excess drop-offs over the rest (GET "
    "/v1/funnels/{name}/drivers); significant = Bonferroni-adjusted p < 0.05"
)


def step_values(funnels: list[FunnelSpec]) -> str:
    """The steps that have a drop-off (every step after a funnel's first): those of firing
    drop-off alerts first, so the variable opens on the alerting step, then the rest in funnel
    order."""
    names = sql.names_array(list(dict.fromkeys(s.name for f in funnels for s in f.steps[1:])))
    return f"""SELECT value FROM (
    SELECT step AS value, 0 AS firing_last FROM alerts FINAL
    WHERE state = 'firing' AND rule = '{DROPOFF}' AND has({names}, step)
    UNION ALL
    SELECT arrayJoin({names}) AS value, 1 AS firing_last
)
GROUP BY value
ORDER BY min(firing_last), indexOf({names}, value)"""


def step_variable(config: BoardConfig) -> dashboard.QueryVariable:
    """One step at a time; no current value, so Grafana opens on the first (alerting) one."""
    values = step_values(list(config.funnels))
    return query_variable(config, VARIABLE, "Drop-off step", values).sort(
        models.VariableSort.DISABLED
    )


def drivers_sql(funnel: FunnelSpec) -> str:
    """The top drivers of the variable's step in `funnel`, journeys entered in range and
    filtered by the segment variables; nothing when the step is not one of its later steps."""
    names = sql.names_array([s.name for s in funnel.steps])
    index = f"(indexOf({names}, ${{{VARIABLE}:singlequote}}) - 1)"
    where = (
        f"funnel = '{sql.ident(funnel.name)}' AND {index} >= 1\n"
        f"  AND entered_at >= {sql.FROM} AND entered_at < {sql.TO}\n"
        f"  AND {sql.segment_filters('attrs')}"
    )
    return f"{driver_figures(driver_counts(where, index))}\nLIMIT {TOP}"
