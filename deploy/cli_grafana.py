"""`cxpulse grafana build|sync`: the dashboards and alert rules of dashboards/ into files or
onto a Grafana."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cxpulse.deploy.cli_common import console, fail, load_settings

grafana_app = typer.Typer(
    help="Grafana dashboards and alert rules (dashboards/): build the files, sync a Grafana.",
    no_args_is_help=True,
)


@grafana_app.command("build")
def build(
    out: Annotated[
        Path | None,
        typer.Option(help="Directory to write. Default: dashboards/grafana of the checkout."),
    ] = None,
) -> None:
    """Regenerate the dashboards' JSON and the provisioning files (datasource, dashboard
    provider, alert rules) that the compose stack's Grafana reads."""
    from cxpulse.dashboards.build import GRAFANA_DIR, write
    from cxpulse.dashboards.config import BoardConfig

    changed = write(BoardConfig.from_settings(load_settings()), out or GRAFANA_DIR)
    for path in changed:
        console.print(f"wrote {path}")
    console.print(f"{len(changed)} files changed.")


@grafana_app.command("sync")
def sync(
    url: Annotated[
        str | None, typer.Option(help="Grafana base URL. Default: CXPULSE_GRAFANA_URL.")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the changes a sync would make; write none.")
    ] = False,
) -> None:
    """Create or update the folder, the ClickHouse datasource, the dashboards and the alert
    rules on a Grafana (token: CXPULSE_GRAFANA_TOKEN); a second run changes nothing."""
    from grafana_client.client import GrafanaException

    from cxpulse.dashboards.build import documents
    from cxpulse.dashboards.config import BoardConfig
    from cxpulse.dashboards.sync import GrafanaSync, connect

    settings = load_settings()
    target = url or settings.grafana_url
    if not target:
        raise fail("no Grafana: pass --url or set CXPULSE_GRAFANA_URL")
    clickhouse = settings.grafana_clickhouse_url or settings.clickhouse_url
    if not clickhouse:
        raise fail(
            "Grafana needs a ClickHouse server (embedded chdb is private to cxpulse): set "
            "CXPULSE_GRAFANA_CLICKHOUSE_URL or CXPULSE_CLICKHOUSE_URL"
        )
    token = settings.grafana_token.get_secret_value() if settings.grafana_token else None
    try:
        docs = documents(
            BoardConfig.from_settings(settings), clickhouse, settings.clickhouse_database
        )
        syncer = GrafanaSync(connect(target, token), docs)
        changes = syncer.plan() if dry_run else syncer.run()
    except ValueError as exc:  # a funnels file or a URL cxpulse refuses
        raise fail(str(exc)) from exc
    except (GrafanaException, OSError) as exc:  # requests' connection errors are OSErrors
        raise fail(f"Grafana at {target}: {exc}") from exc
    verb = "would " if dry_run else ""
    for change in changes:
        console.print(f"{verb}{change}")
    console.print(f"{len(changes)} changes{' (dry run)' if dry_run else ''}.")
