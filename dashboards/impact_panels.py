"""The "Change impact" and "Experiment comparison" panels of a funnel's self-service dashboard,
with the variables that pick the change, its window, the experiment's attribute and control.

Counts come from `sinks.impact_queries` (the API's builders), the statistics from
`sinks.stats_sql` (section 4b in SQL, term by term as `schemas.stats`); the change is read from
the live changes (`sinks.change_queries`), "now" is the store's clock. `boards.py` lays the
panels out.
"""

from __future__ import annotations

from collections.abc import Sequence

from grafana_foundation_sdk.builders import dashboard
from grafana_foundation_sdk.models import dashboard as models

from cxpulse.dashboards import sql
from cxpulse.dashboards.config import BoardConfig
from cxpulse.dashboards.variables import query_variable
from cxpulse.sinks.change_queries import LIVE_CHANGES, of_funnel
from cxpulse.sinks.impact_queries import IMPACT_OUTCOMES, compare_counts, impact_counts
from cxpulse.sinks.stats_sql import adjusted_sql, comparison_sql, rate_sql, significant_sql
from cxpulse.streams.funnels import FunnelSpec

CHANGE = "${change:singlequote}"
#: Windows offered for a change's impact (text : seconds).
WINDOWS = (("1d", 86_400), ("7d", 604_800), ("14d", 1_209_600), ("28d", 2_419_200))
_STATS = ("diff", "relative", "ci95_low", "ci95_high", "z", "p_value")


def _query(config: BoardConfig, name: str, label: str, values_sql: str) -> dashboard.QueryVariable:
    """A single-value variable (one change, one attribute, one control group)."""
    return query_variable(config, name, label, values_sql).multi(False).include_all(False)


def variables(config: BoardConfig, funnel: FunnelSpec) -> list[dashboard.VariableModel]:
    """change (newest first), window, variant_by (attributes seen in range) and control."""
    literal = f"'{sql.ident(funnel.name)}'"
    in_range = f"funnel = {literal} AND $__timeFilter(entered_at)"
    window = (
        dashboard.CustomVariable("window")
        .label("Impact window")
        .values(",".join(f"{text} : {seconds}" for text, seconds in WINDOWS))
        .current(models.VariableOption(text="7d", value="604800"))
    )
    return [
        _query(
            config,
            "change",
            "Change",
            f"SELECT id AS value FROM {LIVE_CHANGES}\n"
            f"WHERE {of_funnel(literal)}\nORDER BY at DESC, id",
        ),
        window,
        _query(
            config,
            "variant_by",
            "Experiment attribute",
            "SELECT DISTINCT arrayJoin(mapKeys(attrs)) AS value FROM journey_funnels\n"
            f"WHERE {in_range}\nORDER BY value",
        ),
        _query(
            config,
            "control",
            "Control group",
            "SELECT DISTINCT attrs[${variant_by:singlequote}] AS value FROM journey_funnels\n"
            f"WHERE {in_range} AND mapContains(attrs, ${{variant_by:singlequote}})\n"
            "ORDER BY value",
        ),
    ]


def _change(expression: str) -> str:
    """One field of the chosen change (its type's default when there is none)."""
    return f"(SELECT any({expression}) FROM {LIVE_CHANGES} WHERE id = {CHANGE})"


def change_counts(funnel: FunnelSpec, config: BoardConfig) -> str:
    """`impact_counts` of the chosen change for this funnel, over the window variable, as of the
    store's clock."""
    name = f"'{sql.ident(funnel.name)}'"
    filters = _change("filters")
    where = f"arrayAll((k, v) -> attrs[k] = v, mapKeys({filters}), mapValues({filters}))"
    times = (
        _change("toUnixTimestamp64Milli(at)"),
        "toInt64(${window:singlequote}) * 1000",
        "toUnixTimestamp64Milli(now64(3))",
    )
    costs = (repr(float(config.assisted_cost)), repr(float(config.self_service_cost)))
    return impact_counts(name, len(funnel.steps), where, times, costs)


def change_impact(funnel: FunnelSpec, config: BoardConfig) -> str:
    """Per step k >= 2 and per outcome: before and after (count, rate), then after against
    before as the API's impact gives them."""
    later = sql.names_array([s.name for s in funnel.steps][1:])
    outcomes = sql.names_array(IMPACT_OUTCOMES)
    stats = comparison_sql("xa", "after_journeys", "xb", "before_journeys")
    return f"""SELECT measure, intDiv(length_ms, 1000) AS window_seconds,
    before_journeys, xb AS before_count, {rate_sql("xb", "before_journeys")} AS before_rate,
    after_journeys, xa AS after_count, {rate_sql("xa", "after_journeys")} AS after_rate,
    {", ".join(f"{stats[s]} AS {s}" for s in _STATS)},
    {significant_sql(stats["p_value"])} AS significant
FROM (
{change_counts(funnel, config)}
)
ARRAY JOIN arrayConcat({later}, {outcomes}) AS measure,
    arrayConcat(arraySlice(before_reached, 2), [{", ".join(f"before_{o}" for o in IMPACT_OUTCOMES)}]) AS xb,
    arrayConcat(arraySlice(after_reached, 2), [{", ".join(f"after_{o}" for o in IMPACT_OUTCOMES)}]) AS xa"""  # noqa: E501


def change_cost(funnel: FunnelSpec, config: BoardConfig) -> str:
    """Escalations and self-served journeys the change added, and their cost to serve."""
    return f"""SELECT closed_escalated AS escalations_added,
    closed_self_served AS self_served_added, cost_delta
FROM (
{change_counts(funnel, config)}
)"""


def experiment(funnel: FunnelSpec) -> str:
    """Per group (value of the variant_by attribute) and step k >= 2: reached, rate, and against
    the control group as the API's compare gives them (Bonferroni over every group and step)."""
    steps = [s.name for s in funnel.steps]
    later = sql.names_array(steps[1:])
    where = (
        f"funnel = '{sql.ident(funnel.name)}' AND entered_at >= {sql.FROM} "
        f"AND entered_at < {sql.TO}\n  AND {sql.segment_filters('attrs')}"
    )
    control = "${control:singlequote}"
    stats = comparison_sql("x", "journeys", "xc", "control_journeys")
    tests = f"((groups - 1) * {len(steps) - 1})"
    columns = {s: f"if(is_control, NULL, {stats[s]})" for s in _STATS}
    columns["p_adjusted"] = f"if(is_control, NULL, {adjusted_sql(stats['p_value'], tests)})"
    columns["significant"] = (
        f"if(is_control, NULL, {significant_sql(adjusted_sql(stats['p_value'], tests))})"
    )
    return f"""SELECT value, step, journeys, x AS reached, {rate_sql("x", "journeys")} AS rate,
    {", ".join(f"{e} AS {n}" for n, e in columns.items())}
FROM (
SELECT value, journeys, reached, value = {control} AS is_control,
    anyIf(journeys, value = {control}) OVER () AS control_journeys,
    arrayResize(anyIf(reached, value = {control}) OVER (), {len(steps)}) AS control_reached,
    count() OVER () AS groups
FROM (
{compare_counts(where, "${variant_by:singlequote}", len(steps))}
)
)
ARRAY JOIN {later} AS step, arrayEnumerate({later}) AS k,
    arraySlice(reached, 2) AS x, arraySlice(control_reached, 2) AS xc
ORDER BY value, k"""


def tables(funnel: FunnelSpec, config: BoardConfig) -> Sequence[tuple[str, str, str]]:
    """(title, SQL, description) of each table panel, in layout order."""
    return (
        ("Change impact", change_impact(funnel, config),
         "The Change variable's change: after against before, per step (rate from step 1) and "
         "outcome, over the Impact window (shorter while it has not passed)"),
        ("Change impact: cost", change_cost(funnel, config),
         "(after - before rate) x after journeys, priced as cost to serve; negative: saved"),
        ("Experiment comparison", experiment(funnel),
         "Each group of the Experiment attribute against the Control group; p_adjusted: "
         "Bonferroni over every group and step"),
    )  # fmt: skip
