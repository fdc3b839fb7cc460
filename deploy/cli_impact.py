"""`cxpulse report --change ID`: a change's impact (the API's figures) read from the store."""

from __future__ import annotations

import json
import time
from typing import Any

from rich.table import Table

from cxpulse.deploy.cli_common import console, fail, load_settings


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _number(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _row(name: str, count: str, row: dict[str, Any]) -> list[str]:
    ci = row["ci95"]
    return [
        name,
        f"{row['before'][count]} ({_pct(row['before']['rate'])})",
        f"{row['after'][count]} ({_pct(row['after']['rate'])})",
        "-" if row["diff"] is None else f"{row['diff'] * 100:+.1f} pt",
        "-" if row["relative"] is None else f"{row['relative']:+.1%}",
        "-" if ci is None else f"[{ci[0] * 100:+.1f}, {ci[1] * 100:+.1f}] pt",
        _number(row["z"], ".2f"),
        _number(row["p_value"], ".3g"),
        "yes" if row["significant"] else "",
    ]


def impact_tables(doc: dict[str, Any]) -> list[Table | str]:
    """One table per funnel block, each followed by what the change added and cost."""
    state = "provisional" if doc["provisional"] else "final"
    out: list[Table | str] = []
    for block in doc["funnels"]:
        before, after = block["before"], block["after"]
        table = Table(
            title=f"{doc['change']} ({doc['title']}) on {block['funnel']}, {state}: "
            f"{after['start']} .. {after['end']} ({after['journeys']} journeys) against "
            f"{before['start']} .. {before['end']} ({before['journeys']})"
        )
        for column in ("", "before", "after", "diff", "relative", "95 % CI", "z", "p", "sig."):
            table.add_column(column, justify="left" if not column else "right")
        for step in block["steps"]:
            table.add_row(*_row(step["step"], "reached", step))
        for outcome in block["outcomes"]:
            table.add_row(*_row(outcome["outcome"], "count", outcome))
        cost = block["cost"]
        out += [
            table,
            f"added: escalations {_number(cost['escalations_added'], '+.1f')}, self-served "
            f"{_number(cost['self_served_added'], '+.1f')}; cost to serve "
            f"{_number(cost['cost_delta'], '+.2f')} {cost['currency']}",
        ]
    return out


def report_impact(change_id: str, window: str, as_json: bool) -> None:
    from cxpulse.api.problems import Problem
    from cxpulse.api.routes.impact import change_impact, parse_window_ms
    from cxpulse.deploy.stack import store_for
    from cxpulse.sinks.changes import get_change
    from cxpulse.sinks.store import StoreError
    from cxpulse.streams.funnels import FunnelConfigError, load_funnels

    settings = load_settings()
    try:
        window_ms = parse_window_ms(window, settings.api_max_range_days)
        funnels = load_funnels(settings.funnels_file)
        with store_for(settings) as store:
            change = get_change(store, change_id)
            if change is None:
                raise fail(f"no change {change_id!r} in the store (GET /v1/changes lists them)")
            now_ms = time.time_ns() // 1_000_000
            doc = change_impact(store, funnels, settings, change, window_ms, now_ms)
    except Problem as exc:
        raise fail(exc.detail or exc.title) from exc
    except (StoreError, FunnelConfigError) as exc:
        raise fail(str(exc)) from exc
    if as_json:
        console.print_json(json.dumps(doc))
        return
    for item in impact_tables(doc):
        console.print(item)
