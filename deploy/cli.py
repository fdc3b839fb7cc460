"""The `cxpulse` command line (typer)."""

from __future__ import annotations

import json
import logging
from typing import Annotated

import typer
from rich.console import Console

from cxpulse.deploy.kafka import KafkaError
from cxpulse.deploy.settings import Settings

app = typer.Typer(
    help="cxpulse: self-service funnels and contact-center KPIs, live.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
kafka_app = typer.Typer(
    help="The local Apache Kafka broker (KRaft, single node).", no_args_is_help=True
)
app.add_typer(kafka_app, name="kafka")
console = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def _settings() -> Settings:
    settings = Settings()
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return settings


def _fail(message: str) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}")
    return typer.Exit(code=1)


@kafka_app.command("fetch")
def kafka_fetch() -> None:
    """Resolve the broker jars with Maven (cached in ~/.m2 and the data dir)."""
    from cxpulse.deploy.stack import local_broker

    try:
        libs = local_broker(_settings()).fetch()
    except KafkaError as exc:
        raise _fail(str(exc)) from exc
    console.print(f"Kafka jars ready in {libs}")


@kafka_app.command("start")
def kafka_start() -> None:
    """Start the local broker in the background and wait until it accepts clients."""
    from cxpulse.deploy.stack import local_broker

    broker = local_broker(_settings())
    if broker.running_pid() is not None:
        console.print(f"Kafka is already running on {broker.config.bootstrap}.")
        return
    try:
        broker.start(attached=False)
    except KafkaError as exc:
        raise _fail(str(exc)) from exc
    console.print(
        f"Kafka {broker.version} is running on {broker.config.bootstrap} "
        f"(pid {broker.running_pid()}, log {broker.logs_dir / 'server.log'})"
    )


@kafka_app.command("stop")
def kafka_stop() -> None:
    """Stop the local broker (SIGTERM, SIGKILL after 30 s)."""
    from cxpulse.deploy.stack import local_broker

    stopped = local_broker(_settings()).stop()
    console.print("Kafka stopped." if stopped else "Kafka was not running.")


@kafka_app.command("status")
def kafka_status(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Whether the local broker runs, where, and its version. Exit code 1 when it does not."""
    from cxpulse.deploy.stack import local_broker

    status = local_broker(_settings()).status()
    if as_json:
        console.print_json(json.dumps(status))
    else:
        state = "running" if status["running"] else "not running"
        console.print(
            f"Kafka {status['version']} {state} ({status['bootstrap']}, home {status['home']})"
        )
    if not status["running"]:
        raise typer.Exit(code=1)


@app.command()
def migrate() -> None:
    """Apply pending ClickHouse migrations (idempotent)."""
    from cxpulse.sinks.migrate import migrate as run_migrations
    from cxpulse.sinks.store import StoreError, open_store

    settings = _settings()
    try:
        with open_store(
            settings.clickhouse_url, settings.chdb_path, settings.clickhouse_database
        ) as store:
            applied = run_migrations(store)
    except StoreError as exc:
        raise _fail(str(exc)) from exc
    for migration in applied:
        console.print(f"applied {migration.version:04d}_{migration.name}")
    console.print(f"{len(applied)} migrations applied; the store is up to date.")


@app.command()
def worker() -> None:
    """Run a stream worker (faust); start as many as there are partitions to share."""
    from cxpulse.deploy.stack import resolve_bootstrap
    from cxpulse.streams import topics
    from cxpulse.streams.app import create_app, run_worker

    settings = _settings()
    try:
        bootstrap = resolve_bootstrap(settings)
    except KafkaError as exc:
        raise _fail(str(exc)) from exc
    topics.ensure_topics(bootstrap, settings.topic_partitions)
    run_worker(create_app(bootstrap, settings.topic_partitions), settings.log_level)


@app.command()
def writer() -> None:
    """Run a store writer on its own (server mode; `cxpulse up` runs one in-process)."""
    import signal
    import threading

    from cxpulse.deploy.stack import resolve_bootstrap
    from cxpulse.sinks.store import open_store
    from cxpulse.sinks.writer import StoreWriter
    from cxpulse.streams import topics

    settings = _settings()
    try:
        bootstrap = resolve_bootstrap(settings)
    except KafkaError as exc:
        raise _fail(str(exc)) from exc
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with open_store(
        settings.clickhouse_url, settings.chdb_path, settings.clickhouse_database
    ) as store:
        StoreWriter(
            store,
            bootstrap,
            topics.STORE_TABLES,
            batch_rows=settings.writer_batch_rows,
            flush_seconds=settings.writer_flush_seconds,
        ).run(stop)


@app.command()
def up(
    no_simulator: Annotated[
        bool, typer.Option("--no-simulator", help="Run the stack without generated traffic.")
    ] = False,
    rate: Annotated[float, typer.Option(help="Demo events per second.", min=0.1)] = 5.0,
) -> None:
    """Run everything locally: broker (unless configured), migrations, worker, writer, traffic."""
    from cxpulse.deploy.stack import Stack

    try:
        code = Stack(_settings(), simulator=not no_simulator, demo_rate=rate).run()
    except KafkaError as exc:
        raise _fail(str(exc)) from exc
    raise typer.Exit(code=code)


@app.command()
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Where the running `cxpulse up` stack is: Kafka bootstrap, store, data dir, pids."""
    settings = _settings()
    try:
        info = json.loads(settings.stack_file.read_text())
    except FileNotFoundError:
        err.print(f"no cxpulse stack is running from {settings.data_dir.resolve()}")
        raise typer.Exit(code=1) from None
    if as_json:
        console.print_json(json.dumps(info))
    else:
        for key, value in info.items():
            console.print(f"{key}: {value}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
