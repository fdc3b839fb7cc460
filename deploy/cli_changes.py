"""`cxpulse change add|list|rm`: portal changes, through the running stack's API.

The API, not the store: with embedded chdb only the `up` process may open the database, and the
API is where a change is validated (funnel, step, time) the same way for every client.
"""

from __future__ import annotations

import json
import logging
from typing import Annotated, Any
from urllib.parse import quote

import typer

from cxpulse.deploy.cli_common import api_access, console, fail, load_settings

change_app = typer.Typer(
    help="Portal changes: shown on the funnel dashboards and named by alerts that follow them.",
    no_args_is_help=True,
)
Url = Annotated[str | None, typer.Option(help="API base URL. Default: the running `up` stack's.")]


def _call(method: str, path: str, url: str | None, **request: Any) -> Any:
    """The API's JSON answer (None for 204), or exit with its problem's detail."""
    import httpx
    from rich.markup import escape

    base, key = api_access(load_settings(), url)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # every request at INFO: noise here
    try:
        with httpx.Client(base_url=base, timeout=10) as client:
            response = client.request(
                method, path, headers={"Authorization": f"Bearer {key}"}, **request
            )
    except httpx.HTTPError as exc:
        raise fail(f"cannot reach the API at {base}: {exc}; is `cxpulse up` running?") from exc
    if response.status_code >= 400:  # escaped: a detail may quote a pattern like [a-z]
        raise fail(escape(_problem_text(response.status_code, response.content)))
    return None if response.status_code == 204 else response.json()


def _problem_text(status: int, body: bytes) -> str:
    """A problem+json answer in one line: its detail, and each invalid field's message."""
    try:
        problem = json.loads(body)
    except ValueError:
        return f"HTTP {status}"
    parts = [f"{problem.get('title', 'HTTP')} ({status}): {problem.get('detail') or ''}"]
    for error in problem.get("errors") or []:
        where = ".".join(part for part in error["loc"] if part != "body")
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


@change_app.command("add")
def change_add(
    change_id: Annotated[str, typer.Option("--id", help="1 to 64 of a-z, 0-9, _ and -.")],
    title: Annotated[str, typer.Option(help="What changed, in a few words.")],
    at: Annotated[str | None, typer.Option(help="When (RFC 3339). Default: now.")] = None,
    funnel: Annotated[str | None, typer.Option(help="Funnel changed. Default: all.")] = None,
    step: Annotated[str | None, typer.Option(help="Step of that funnel.")] = None,
    filters: Annotated[
        list[str] | None,
        typer.Option("--filter", help="attr=value the change applies to (repeatable)."),
    ] = None,
    notes: Annotated[str, typer.Option(help="Anything else worth knowing.")] = "",
    url: Url = None,
) -> None:
    """Record a change to the portal."""
    parsed = {}
    for text in filters or []:
        name, sep, value = text.partition("=")
        if not sep or not name:
            raise fail(f"--filter {text!r} is not attr=value")
        parsed[name] = value
    body = {"id": change_id, "title": title, "at": at, "funnel": funnel, "step": step}
    change = _call("POST", "/v1/changes", url, json=body | {"filters": parsed, "notes": notes})
    console.print(f"added change {change['id']} at {change['at']}")


@change_app.command("list")
def change_list(
    funnel: Annotated[str | None, typer.Option(help="Only changes that concern it.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    url: Url = None,
) -> None:
    """List the changes by time."""
    from rich.table import Table

    params = {} if funnel is None else {"funnel": funnel}
    changes = _call("GET", "/v1/changes", url, params=params)["changes"]
    if as_json:
        console.print_json(json.dumps(changes))
        return
    table = Table(title=f"{len(changes)} changes")
    for column in ("id", "at", "title", "funnel", "step", "filters", "notes"):
        table.add_column(column)
    for c in changes:
        filters = ", ".join(f"{k}={v}" for k, v in sorted(c["filters"].items()))
        where = (c["funnel"] or "all", c["step"] or "")
        table.add_row(c["id"], c["at"], c["title"], *where, filters, c["notes"])
    console.print(table)


@change_app.command("rm")
def change_rm(
    change_id: Annotated[str, typer.Argument(help="The id of the change to remove.")],
    url: Url = None,
) -> None:
    """Remove a change."""
    # Quoted whole: an id such as '../alerts/x' or 'a#b' must not address another resource.
    _call("DELETE", f"/v1/changes/{quote(change_id, safe='')}", url)
    console.print(f"removed change {change_id}")
