"""`cxpulse watch` and `cxpulse report`: the figures in a terminal, live from the API or once
from the store."""

from __future__ import annotations

import contextlib
import json
import logging
from typing import Annotated, Any

import typer

from cxpulse.deploy.cli_common import api_access, console, fail, load_settings


def watch(
    funnel: Annotated[str, typer.Option(help="Funnel to show.")] = "self_service",
    since: Annotated[str, typer.Option(help="Range shown: the last 15m, 1h, 24h ...")] = "1h",
    every: Annotated[float, typer.Option(help="Seconds between refreshes.", min=0.5)] = 3.0,
    url: Annotated[
        str | None, typer.Option(help="API base URL. Default: the running `up` stack's.")
    ] = None,
) -> None:
    """A live terminal view: funnel, contact-center KPIs, firing alerts, latest changes,
    freshness (Ctrl-C ends)."""
    from cxpulse.api.watch import watch as run_watch
    from cxpulse.schemas.durations import parse_duration_ms

    settings = load_settings()
    # Log lines written while the view is live push it down and repeat it, and libraries log
    # every request (httpx at INFO): keep them to warnings; cxpulse's own follow the settings.
    root = logging.getLogger()
    logging.getLogger("cxpulse").setLevel(root.level)
    root.setLevel(logging.WARNING)
    try:
        since_s = parse_duration_ms(since) // 1000
    except ValueError as exc:
        raise fail(str(exc)) from exc
    base, key = api_access(settings, url)
    with contextlib.suppress(KeyboardInterrupt):
        run_watch(base, key, funnel, since, since_s, every)


def report(
    since: Annotated[str, typer.Option(help="Range to report: the last 30m, 24h, 7d ...")] = "24h",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    change: Annotated[
        str | None, typer.Option(help="Report this change's impact instead (a change id).")
    ] = None,
    window: Annotated[str, typer.Option(help="With --change: before and after, e.g. 7d.")] = "7d",
) -> None:
    """Funnel, contact-center KPIs and containment of a recent range, read from the store; with
    --change, that change's impact.

    With embedded chdb run it while `cxpulse up` is stopped (one process per database).
    """
    if change is not None:
        from cxpulse.deploy.cli_impact import report_impact

        report_impact(change, window, as_json)
        return
    import time

    from cxpulse.deploy.stack import store_for
    from cxpulse.schemas.durations import parse_duration_ms
    from cxpulse.sinks.contact_queries import contact_kpis
    from cxpulse.sinks.containment_queries import containment
    from cxpulse.sinks.funnel_queries import funnel_summary
    from cxpulse.sinks.store import StoreError
    from cxpulse.streams.funnels import FunnelConfigError, load_funnels

    settings = load_settings()
    try:
        end = time.time_ns() // 1_000_000
        start = end - parse_duration_ms(since)
        funnels = load_funnels(settings.funnels_file)
        with store_for(settings) as store:
            result = {
                "funnels": [
                    funnel_summary(store, f.name, [s.name for s in f.steps], start, end)
                    for f in funnels
                ],
                "kpis": contact_kpis(store, start, end)[0],
                "containment": containment(
                    store,
                    start,
                    end,
                    assisted_cost=settings.assisted_cost,
                    self_service_cost=settings.self_service_cost,
                )[0]
                | {"currency": settings.currency},
            }
    except (ValueError, StoreError, FunnelConfigError) as exc:
        raise fail(str(exc)) from exc
    if as_json:
        console.print_json(json.dumps(result))
        return
    _print_report(result, since)


def _print_report(result: dict[str, Any], since: str) -> None:
    from cxpulse.api.watch import center_text, funnel_table

    for summary in result["funnels"]:
        console.print(funnel_table(summary, since))
    console.print(center_text(result["kpis"], result["containment"]))
