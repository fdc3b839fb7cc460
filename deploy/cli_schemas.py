"""`cxpulse schemas export`: the event contract's generated files."""

from __future__ import annotations

import typer

from cxpulse.deploy.cli_common import console

schemas_app = typer.Typer(help="The event contract's generated files.", no_args_is_help=True)


@schemas_app.command("export")
def schemas_export() -> None:
    """Rewrite schemas/json/event.v1.schema.json and docs/events.md from the Structs."""
    from cxpulse.schemas.export import export

    for path in export():
        console.print(f"wrote {path}")
