"""The commands that run cxpulse's processes: `up` (everything locally), and in server mode
`migrate`, `worker`, `writer` and `api` each on its own; `status` finds a running `up`."""

from __future__ import annotations

import json
import logging
import os
from typing import Annotated

import typer

from cxpulse.deploy.cli_common import bootstrap_or_fail, console, err, fail, load_settings
from cxpulse.deploy.kafka import KafkaError


def migrate() -> None:
    """Apply pending ClickHouse migrations (idempotent)."""
    from cxpulse.deploy.stack import store_for
    from cxpulse.sinks.migrate import migrate as run_migrations
    from cxpulse.sinks.store import StoreError

    try:
        with store_for(load_settings()) as store:
            applied = run_migrations(store)
    except StoreError as exc:
        raise fail(str(exc)) from exc
    for migration in applied:
        console.print(f"applied {migration.version:04d}_{migration.name}")
    console.print(f"{len(applied)} migrations applied; the store is up to date.")


def _exit_quietly(_signum: int, _frame: object) -> None:
    """Exit 0 at once: a SystemExit raised here can surface inside a Kafka client's C call as
    another exception. Nothing is lost: whatever was not committed is redone by the next owner."""
    logging.shutdown()
    os._exit(0)


def worker(
    metrics_port: Annotated[
        int | None,
        typer.Option(help="Serve Prometheus /metrics on 127.0.0.1:PORT (0: a free port)."),
    ] = None,
) -> None:
    """Run a stream worker (ingest + journey stage); start several to share the partitions."""
    import signal

    # Until faust installs its own handler, SIGTERM (an orchestrator stopping a worker that is
    # still starting) ends the process at once with exit status 0; set before the slow imports.
    signal.signal(signal.SIGTERM, _exit_quietly)

    from cxpulse.deploy.stack import run_stream_worker
    from cxpulse.streams.funnels import FunnelConfigError

    settings = load_settings()
    try:
        run_stream_worker(settings, bootstrap_or_fail(settings), metrics_port)
    except FunnelConfigError as exc:
        raise fail(str(exc)) from exc


def writer(
    evaluate_alerts: Annotated[
        bool,
        typer.Option(
            "--alerts/--no-alerts",
            help="Also run the alert evaluator (run it in exactly one writer).",
        ),
    ] = True,
) -> None:
    """Run a store writer on its own (server mode; `cxpulse up` runs one in-process)."""
    from cxpulse.deploy.stack import run_store_writer
    from cxpulse.sinks.store import StoreError
    from cxpulse.streams.funnels import FunnelConfigError

    settings = load_settings()
    try:
        run_store_writer(settings, bootstrap_or_fail(settings), evaluate_alerts)
    except (FunnelConfigError, StoreError) as exc:
        raise fail(str(exc)) from exc


def up(
    no_simulator: Annotated[
        bool, typer.Option("--no-simulator", help="Run the stack without generated traffic.")
    ] = False,
    rate: Annotated[float, typer.Option(help="Simulated events per second.", min=0.1)] = 20.0,
    history: Annotated[
        str,
        typer.Option(
            help="Simulated history sent first, as fast as possible, when nothing is stored yet "
            "(a first start), so the first look shows closed journeys: 30m, 3h, 1d; 0s for none."
        ),
    ] = "3h",
) -> None:
    """Run everything locally: broker (unless configured), migrations, worker, writer, simulator."""
    from cxpulse.api.server import ApiError
    from cxpulse.deploy.stack import Stack
    from cxpulse.schemas.durations import parse_duration_ms
    from cxpulse.sinks.migrate import MigrationError
    from cxpulse.sinks.store import StoreError
    from cxpulse.streams.funnels import FunnelConfigError

    try:
        history_ms = parse_duration_ms(history)
    except ValueError as exc:
        raise fail(f"--history: {exc}") from exc
    stack = Stack(load_settings(), simulator=not no_simulator, rate=rate, history_ms=history_ms)
    try:
        code = stack.run()
    except (KafkaError, StoreError, MigrationError, ApiError, FunnelConfigError) as exc:
        raise fail(str(exc)) from exc
    raise typer.Exit(code=code)


def api() -> None:
    """Serve the metrics API on its own (server mode; `cxpulse up` serves it in-process)."""
    from cxpulse.api.app import create_api
    from cxpulse.api.server import ApiError, resolve_keys, serve_forever
    from cxpulse.deploy.stack import store_for
    from cxpulse.sinks.store import StoreError
    from cxpulse.streams.funnels import FunnelConfigError, load_funnels

    settings = load_settings()
    try:
        keys, _ = resolve_keys(settings, generate=False)
        funnels = load_funnels(settings.funnels_file)
        with store_for(settings) as store:
            console.print(f"API on http://{settings.api_host}:{settings.api_port}")
            serve_forever(create_api(store, funnels, settings, keys), settings)
    except (ApiError, StoreError, FunnelConfigError) as exc:
        raise fail(str(exc)) from exc


def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Where the running `cxpulse up` stack is: Kafka bootstrap, store, data dir, pids."""
    settings = load_settings()
    try:
        info = json.loads(settings.stack_file.read_text())
        os.kill(int(info["pid"]), 0)
    except (FileNotFoundError, ProcessLookupError, ValueError, KeyError):
        err.print(f"no cxpulse stack is running from {settings.data_dir.resolve()}")
        raise typer.Exit(code=1) from None
    if as_json:
        console.print_json(json.dumps(info))
    else:
        for key, value in info.items():
            console.print(f"{key}: {value}")
