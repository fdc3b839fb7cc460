"""`cxpulse dlq inspect|replay`: the dead-letter topic."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from cxpulse.deploy.cli_common import bootstrap_or_fail, console, fail, load_settings

dlq_app = typer.Typer(help="The dead-letter topic: inspect and replay.", no_args_is_help=True)


@dlq_app.command("inspect")
def dlq_inspect(
    samples: Annotated[int, typer.Option(help="Samples shown per reason.", min=0)] = 3,
    reason: Annotated[str | None, typer.Option(help="Only this reason code.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Count dead letters by reason and show samples (reads, never consumes)."""
    from rich.table import Table

    from cxpulse.streams.dlq import inspect, read_dead_letters

    letters = read_dead_letters(bootstrap_or_fail(load_settings()))
    if reason:
        letters = (letter for letter in letters if letter.reason == reason)
    result = inspect(letters, samples)
    if as_json:
        console.print_json(json.dumps(result.as_json()))
        return
    table = Table(title=f"{result.total} dead letters")
    table.add_column("reason")
    table.add_column("count", justify="right")
    for name, count in result.by_reason.items():
        table.add_row(name, str(count))
    console.print(table)
    for name, letters_of_reason in result.samples.items():
        console.print(f"[bold]{name}[/bold]")
        for letter in letters_of_reason:
            console.print(
                f"  {letter.source_topic}[{letter.source_partition}]@{letter.source_offset} "
                f"{letter.received_at}: {letter.detail}\n    {letter.preview()!r}"
            )


@dlq_app.command("replay")
def dlq_replay(
    reason: Annotated[
        list[str] | None, typer.Option(help="Replay only these reason codes (repeatable).")
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="Only dead letters received at or after this RFC 3339 time.")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count, send nothing.")] = False,
) -> None:
    """Send selected dead letters' original bytes back to their source topics."""
    from datetime import datetime

    from cxpulse.streams.dlq import DeadLetter, read_dead_letters, replay

    threshold = datetime.fromisoformat(since) if since else None
    if threshold is not None and threshold.tzinfo is None:
        raise fail("--since needs a UTC offset, e.g. 2026-11-23T10:00:00+00:00")
    reasons = set(reason or [])

    def select(letter: DeadLetter) -> bool:
        if reasons and letter.reason not in reasons:
            return False
        return threshold is None or datetime.fromisoformat(letter.received_at) >= threshold

    bootstrap = bootstrap_or_fail(load_settings())
    sent = replay(read_dead_letters(bootstrap), bootstrap, select, dry_run=dry_run)
    verb = "would replay" if dry_run else "replayed"
    total = sum(sent.values())
    per_topic = "".join(f", {n} to {t}" for t, n in sent.items())
    console.print(f"{verb} {total} dead letters{per_topic}")
