"""The `cxpulse` command line (typer): every command, in the order `cxpulse --help` lists them.

Each group of commands lives in its own `cli_*` module; they import what they run only when
called, so `cxpulse --help` and the short commands start fast.
"""

from __future__ import annotations

import typer

from cxpulse.deploy import cli_stack, cli_traffic, cli_views
from cxpulse.deploy.cli_changes import change_app
from cxpulse.deploy.cli_dlq import dlq_app
from cxpulse.deploy.cli_grafana import grafana_app
from cxpulse.deploy.cli_kafka import kafka_app
from cxpulse.deploy.cli_schemas import schemas_app

app = typer.Typer(
    help="cxpulse: self-service funnels and contact-center KPIs, live.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
for command in (
    cli_stack.migrate,
    cli_stack.worker,
    cli_stack.writer,
    cli_traffic.simulate,
    cli_traffic.replay,
    cli_stack.up,
    cli_stack.api,
    cli_views.watch,
    cli_views.report,
    cli_stack.status,
):
    app.command()(command)
app.add_typer(kafka_app, name="kafka")
app.add_typer(dlq_app, name="dlq")
app.add_typer(schemas_app, name="schemas")
app.add_typer(grafana_app, name="grafana")
app.add_typer(change_app, name="change")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
