"""`cxpulse watch`: a live terminal view of the funnel, contact-center KPIs, firing alerts, the
latest portal changes and freshness.

It reads the same HTTP API as any downstream service (so it also works against a remote
stack), refreshing every few seconds; errors are shown in the view instead of ending it.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
from rich.console import Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

#: How many of the latest changes the view shows.
RECENT_CHANGES = 5


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:5.1f} %"


def fetch(client: httpx.Client, funnel: str, since_s: int) -> dict[str, Any]:
    end = time.time()
    params = {
        "start": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(end - since_s)),
        "end": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(end + 1)),
    }
    views = {
        "summary": f"/v1/funnels/{funnel}/summary",
        "kpis": "/v1/contact-center/kpis",
        "containment": "/v1/self-service/containment",
    }
    result: dict[str, Any] = {}
    for name, path in views.items():
        response = client.get(path, params=params)
        if response.status_code != 200:
            detail = response.json().get("detail") if response.content else ""
            raise RuntimeError(f"{path}: {response.status_code} {detail}")
        result[name] = response.json()
    response = client.get("/v1/alerts", params={"state": "firing"})
    if response.status_code != 200:
        raise RuntimeError(f"/v1/alerts: {response.status_code}")
    result["alerts"] = response.json()["alerts"]
    response = client.get("/v1/changes", params={"funnel": funnel})
    if response.status_code != 200:
        raise RuntimeError(f"/v1/changes: {response.status_code}")
    result["changes"] = response.json()["changes"][-RECENT_CHANGES:]
    return result


def funnel_table(summary: dict[str, Any], since: str) -> Table:
    """A funnel summary as a table: reached, conversion, dropped and escalated per step."""
    table = Table(title=f"{summary['funnel']}: {summary['journeys']} journeys, last {since}")
    for column in ("step", "reached", "from prev.", "from start", "dropped", "escalated"):
        table.add_column(column, justify="left" if column == "step" else "right")
    for step in summary["steps"]:
        table.add_row(
            step["step"],
            str(step["reached"]),
            _pct(step["conversion_from_previous"]),
            _pct(step["conversion_from_start"]),
            str(step["dropped"]),
            str(step["escalated"]),
        )
    return table


def center_text(kpis: dict[str, Any], contained: dict[str, Any]) -> Text:
    """The main contact-center KPIs and self-service containment in two lines."""
    counts = kpis["counts"]
    fcr = _pct(kpis["fcr_rate"]) + ("" if kpis["fcr_final"] else " (provisional)")
    return Text(
        f"contacts {counts['contacts']}  service level {_pct(kpis['service_level'])}  "
        f"abandonment {_pct(kpis['abandonment_rate'])}  FCR {fcr}  CSAT {_pct(kpis['csat'])}\n"
        f"containment {_pct(contained['containment_rate'])} of {contained['closed']} closed "
        f"journeys  cost to serve {contained['cost_to_serve']:.2f} {contained['currency']}  "
        f"savings {contained['savings']:.2f} {contained['currency']}"
    )


def alerts_text(alerts: list[dict[str, Any]]) -> Text:
    """One line per firing alert: where, which segment, current vs baseline rate, since when."""
    if not alerts:
        return Text("no alert firing", style="green")
    lines = []
    for a in alerts:
        where = " ".join(x for x in (a["funnel"], a["step"]) if x) or "contact center"
        segment = ", ".join(f"{k}={v}" for k, v in sorted((a["segment"] or {}).items()))
        muted = " (silenced)" if a["silenced_until"] else ""
        after = ", ".join(c["id"] for c in a["recent_changes"])
        lines.append(
            f"{a['rule']} at {where} ({segment or 'overall'}): {_pct(a['current_rate'])} vs "
            f"{_pct(a['baseline_rate'])}, since {a['started_at']}{muted}"
            + (f", after change {after}" if after else "")
        )
    return Text("\n".join(lines), style="red")


def changes_text(changes: list[dict[str, Any]]) -> Text:
    """The latest changes, newest first: when, id, title and where."""
    if not changes:
        return Text("no change recorded")
    lines = [
        f"{c['at']}  {c['id']}: {c['title']}"
        + (f" ({' '.join(x for x in (c['funnel'], c['step']) if x)})" if c["funnel"] else "")
        for c in reversed(changes)
    ]
    return Text("\n".join(lines))


def render(data: dict[str, Any], since: str) -> Group:
    summary = data["summary"]
    center = Panel(center_text(data["kpis"], data["containment"]), title="contact center")
    firing = Panel(alerts_text(data["alerts"]), title="firing alerts")
    changes = Panel(changes_text(data["changes"]), title="recent changes")
    fresh = summary["freshness_seconds"]
    style = "green" if fresh is not None and fresh < 60 else "red"
    freshness = Text(f"data as of {fresh if fresh is not None else '?'} s ago", style=style)
    return Group(funnel_table(summary, since), center, firing, changes, freshness)


def watch(base_url: str, key: str, funnel: str, since: str, since_s: int, every_s: float) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    with (
        httpx.Client(base_url=base_url, headers=headers, timeout=10) as client,
        Live(Text("connecting ..."), refresh_per_second=4, screen=False) as live,
    ):
        while True:
            try:
                live.update(render(fetch(client, funnel, since_s), since))
            except (httpx.HTTPError, RuntimeError, KeyError) as exc:
                live.update(Text(f"{base_url}: {exc} (retrying)", style="red"))
            time.sleep(every_s)
