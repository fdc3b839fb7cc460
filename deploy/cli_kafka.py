"""`cxpulse kafka fetch|start|stop|status`: the local Apache Kafka broker."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from cxpulse.deploy.cli_common import console, fail, load_settings
from cxpulse.deploy.kafka import KafkaError

kafka_app = typer.Typer(
    help="The local Apache Kafka broker (KRaft, single node).", no_args_is_help=True
)


@kafka_app.command("fetch")
def kafka_fetch() -> None:
    """Resolve the broker jars with Maven (cached in ~/.m2 and the data dir)."""
    from cxpulse.deploy.stack import local_broker

    try:
        libs = local_broker(load_settings()).fetch()
    except KafkaError as exc:
        raise fail(str(exc)) from exc
    console.print(f"Kafka jars ready in {libs}")


@kafka_app.command("start")
def kafka_start() -> None:
    """Start the local broker in the background and wait until it accepts clients."""
    from cxpulse.deploy.stack import local_broker

    broker = local_broker(load_settings())
    if broker.running_pid() is not None:
        console.print(f"Kafka is already running on {broker.config.bootstrap}.")
        return
    try:
        broker.start(attached=False)
    except KafkaError as exc:
        raise fail(str(exc)) from exc
    console.print(
        f"Kafka {broker.version} is running on {broker.config.bootstrap} "
        f"(pid {broker.running_pid()}, log {broker.logs_dir / 'server.log'})"
    )


@kafka_app.command("stop")
def kafka_stop() -> None:
    """Stop the local broker (SIGTERM, SIGKILL after 30 s)."""
    from cxpulse.deploy.stack import local_broker

    stopped = local_broker(load_settings()).stop()
    console.print("Kafka stopped." if stopped else "Kafka was not running.")


@kafka_app.command("status")
def kafka_status(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Whether the local broker runs, where, and its version. Exit code 1 when it does not."""
    from cxpulse.deploy.stack import local_broker

    status = local_broker(load_settings()).status()
    if as_json:
        console.print_json(json.dumps(status))
    else:
        state = "running" if status["running"] else "not running"
        console.print(
            f"Kafka {status['version']} {state} ({status['bootstrap']}, home {status['home']})"
        )
    if not status["running"]:
        raise typer.Exit(code=1)
