"""The `cxpulse` command line (typer)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from pydantic import ValidationError
from rich.console import Console

from cxpulse.deploy.grafana_cli import grafana_app
from cxpulse.deploy.kafka import KafkaError
from cxpulse.deploy.logs import configure as configure_logging
from cxpulse.deploy.logs import logging_config
from cxpulse.streams.settings import Settings

app = typer.Typer(
    help="cxpulse: self-service funnels and contact-center KPIs, live.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
kafka_app = typer.Typer(
    help="The local Apache Kafka broker (KRaft, single node).", no_args_is_help=True
)
dlq_app = typer.Typer(help="The dead-letter topic: inspect and replay.", no_args_is_help=True)
schemas_app = typer.Typer(help="The event contract's generated files.", no_args_is_help=True)
app.add_typer(kafka_app, name="kafka")
app.add_typer(dlq_app, name="dlq")
app.add_typer(schemas_app, name="schemas")
app.add_typer(grafana_app, name="grafana")
console = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def load_settings() -> Settings:
    try:
        settings = Settings()
    except ValidationError as exc:
        for error in exc.errors():
            name = f"CXPULSE_{'_'.join(str(part) for part in error['loc']).upper()}"
            err.print(f"[red]error:[/red] {name}: {error['msg']} (got {error.get('input')!r})")
        raise typer.Exit(code=2) from None
    configure_logging(settings.log_level, settings.log_format)
    return settings


def fail(message: str) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}")
    return typer.Exit(code=1)


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


@schemas_app.command("export")
def schemas_export() -> None:
    """Rewrite schemas/json/event.v1.schema.json and docs/events.md from the Structs."""
    from cxpulse.schemas.export import export

    for path in export():
        console.print(f"wrote {path}")


def _bootstrap_or_fail(settings: Settings) -> str:
    from cxpulse.deploy.stack import resolve_bootstrap

    try:
        return resolve_bootstrap(settings)
    except KafkaError as exc:
        raise fail(str(exc)) from exc


@dlq_app.command("inspect")
def dlq_inspect(
    samples: Annotated[int, typer.Option(help="Samples shown per reason.", min=0)] = 3,
    reason: Annotated[str | None, typer.Option(help="Only this reason code.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Count dead letters by reason and show samples (reads, never consumes)."""
    from rich.table import Table

    from cxpulse.streams.dlq import inspect, read_dead_letters

    letters = read_dead_letters(_bootstrap_or_fail(load_settings()))
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

    bootstrap = _bootstrap_or_fail(load_settings())
    sent = replay(read_dead_letters(bootstrap), bootstrap, select, dry_run=dry_run)
    verb = "would replay" if dry_run else "replayed"
    total = sum(sent.values())
    per_topic = "".join(f", {n} to {t}" for t, n in sent.items())
    console.print(f"{verb} {total} dead letters{per_topic}")


@app.command()
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


@app.command()
def worker(
    metrics_port: Annotated[
        int | None,
        typer.Option(help="Serve Prometheus /metrics on 127.0.0.1:PORT (0: a free port)."),
    ] = None,
) -> None:
    """Run a stream worker (ingest + journey stage); start several to share the partitions."""
    import signal
    import threading

    # Until faust installs its own handler, SIGTERM (an orchestrator stopping a worker that is
    # still starting) ends the process at once with exit status 0.
    signal.signal(signal.SIGTERM, _exit_quietly)

    from cxpulse.streams import metrics, topics
    from cxpulse.streams.app import create_app, die, run_worker
    from cxpulse.streams.funnels import FunnelConfigError, load_funnels
    from cxpulse.streams.ingest_stage import IngestStage

    settings = load_settings()
    bootstrap = _bootstrap_or_fail(settings)
    topics.ensure_topics(bootstrap, settings.topic_partitions)
    if metrics_port is not None:
        # A log line, not console output: it must be JSON too when the logs are.
        port = metrics.serve(metrics_port)
        logging.getLogger("cxpulse.worker").info("metrics on http://127.0.0.1:%d/metrics", port)
    try:
        funnels = load_funnels(settings.funnels_file)
    except FunnelConfigError as exc:
        raise fail(str(exc)) from exc
    stop = threading.Event()
    stage = IngestStage(bootstrap, bounds=settings.bounds())

    def run_ingest() -> None:
        try:
            stage.run(stop)
        except Exception:
            die("the ingest stage failed")  # never a worker that looks alive but ingests nothing

    ingest = threading.Thread(target=run_ingest, name="ingest")
    ingest.start()
    try:
        app = create_app(
            bootstrap,
            settings.topic_partitions,
            funnels,
            settings.shift_table(),
            settings.worker_group_messages,
            limits=settings.key_limits(),
        )
        run_worker(app, logging_config(settings.log_level, settings.log_format))
    finally:
        stop.set()
        ingest.join(timeout=60)


@app.command()
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
    import signal
    import threading

    from cxpulse.deploy.stack import AlertService, store_for, writer_for
    from cxpulse.sinks.store import StoreError
    from cxpulse.streams.funnels import FunnelConfigError, load_funnels

    settings = load_settings()
    bootstrap = _bootstrap_or_fail(settings)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        funnels = load_funnels(settings.funnels_file)
    except FunnelConfigError as exc:
        raise fail(str(exc)) from exc
    try:
        with store_for(settings) as store:
            alerts = AlertService(store, bootstrap, settings, funnels) if evaluate_alerts else None
            if alerts is not None:
                alerts.start()
            try:
                writer_for(store, bootstrap, settings).run(stop)
            finally:
                if alerts is not None:
                    alerts.stop()
    except StoreError as exc:
        raise fail(str(exc)) from exc


def _progress(total: int | None, description: str) -> Any:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    columns: list[Any] = [SpinnerColumn(), TextColumn(description)]
    if total is not None:
        columns += [BarColumn(), MofNCompleteColumn()]
    else:
        columns += [TextColumn("{task.completed:,} messages")]
    columns += [TimeElapsedColumn()]
    return Progress(*columns, console=err, transient=False)


@app.command()
def simulate(
    output: Annotated[
        str, typer.Option(help="'kafka', or a .jsonl file path to write instead.")
    ] = "kafka",
    rate: Annotated[float, typer.Option(help="Mean events per simulated second.", min=0.01)] = 50.0,
    count: Annotated[int | None, typer.Option(help="Stop after this many clean events.")] = None,
    duration: Annotated[
        str | None, typer.Option(help="Simulated time to cover, e.g. 30m, 6h, 7d.")
    ] = None,
    start: Annotated[
        str | None,
        typer.Option(
            help="Event time of the start: 'now', relative ('-7d') or RFC 3339. Default: now "
            "when paced, else so the generated history ends now."
        ),
    ] = None,
    fast: Annotated[
        bool, typer.Option("--fast", help="As fast as possible instead of in real time.")
    ] = False,
    seed: Annotated[int, typer.Option(help="Same seed, same traffic.")] = 42,
    incident: Annotated[
        list[str] | None,
        typer.Option(
            help="Raise drop-off at a step for a segment, repeatable: "
            "'step=troubleshoot,start=+30m,end=+90m,extra=0.2,product_line=printers'."
        ),
    ] = None,
    duplicates: Annotated[float, typer.Option(help="Share of events sent twice.")] = 0.0,
    out_of_order: Annotated[float, typer.Option(help="Share delayed up to 30 s.")] = 0.0,
    late: Annotated[float, typer.Option(help="Share delayed minutes to hours.")] = 0.0,
    malformed: Annotated[float, typer.Option(help="Share followed by a malformed message.")] = 0.0,
    ground_truth: Annotated[
        Path | None, typer.Option(help="Write the exact final figures of what was sent here.")
    ] = None,
) -> None:
    """Generate realistic portal and contact-center traffic (with optional noise)."""
    import time

    from cxpulse.schemas.durations import parse_duration_ms
    from cxpulse.streams.simulator.groundtruth import load_funnels
    from cxpulse.streams.simulator.model import SimConfig
    from cxpulse.streams.simulator.noise import NoiseConfig
    from cxpulse.streams.simulator.output import paced, send_to_kafka, write_jsonl
    from cxpulse.streams.simulator.run import (
        GroundTruthCollector,
        Plan,
        parse_incident,
        parse_time_ms,
    )

    now_ms = time.time_ns() // 1_000_000
    try:
        duration_ms = parse_duration_ms(duration) if duration else None
        span_ms = duration_ms or (int(count / rate * 1000) if count else 0)
        default_start = "now" if not fast else f"-{span_ms}ms"
        start_ms = parse_time_ms(start or default_start, now_ms)
        incidents = tuple(parse_incident(text, start_ms, now_ms) for text in incident or [])
        noise = NoiseConfig(
            duplicates=duplicates, out_of_order=out_of_order, late=late, malformed=malformed
        )
        plan = Plan(SimConfig(seed=seed, start_ms=start_ms, rate=rate, incidents=incidents),
                    noise, count, duration_ms)  # fmt: skip
    except ValueError as exc:
        raise fail(str(exc)) from exc
    if ground_truth is not None and count is None and duration_ms is None:
        raise fail("--ground-truth needs --count or --duration (the run must end)")
    messages = plan.messages() if fast else paced(plan.messages())
    collector = GroundTruthCollector() if ground_truth is not None else None
    with contextlib.ExitStack() as stack:
        if output == "kafka":
            sent = send_to_kafka(messages, _bootstrap_or_fail(load_settings()))
        else:
            sent = write_jsonl(messages, stack.enter_context(Path(output).open("wb")))
        progress = stack.enter_context(_progress(count, f"simulating to {output}"))
        task = progress.add_task("send", total=count)
        try:
            for message in sent:
                if collector is not None:
                    collector.observe(message, now_ms)
                if message.kind == "event":
                    progress.advance(task)
        except KeyboardInterrupt:
            err.print("stopped.")
    if collector is not None and ground_truth is not None:
        truth = collector.ground_truth(load_funnels())
        ground_truth.write_bytes(orjson.dumps(truth, option=orjson.OPT_INDENT_2))
        console.print(f"ground truth of {len(collector.events):,} distinct events: {ground_truth}")


@app.command()
def replay(
    file: Annotated[Path, typer.Argument(help="A .jsonl file written by `cxpulse simulate`.")],
    realtime: Annotated[
        bool, typer.Option("--realtime", help="Pace by event time instead of as fast as possible.")
    ] = False,
    speed: Annotated[float, typer.Option(help="With --realtime: 2 sends twice as fast.")] = 1.0,
) -> None:
    """Send a JSON-lines file of messages (or plain events) to Kafka."""
    from cxpulse.streams.simulator.output import paced, read_jsonl, send_to_kafka

    if not file.exists():
        raise fail(f"{file} does not exist")
    messages = read_jsonl(file)
    if realtime:
        messages = paced(messages, speed)
    try:
        with _progress(None, f"replaying {file}") as progress:
            task = progress.add_task("send", total=None)
            for _ in send_to_kafka(messages, _bootstrap_or_fail(load_settings())):
                progress.advance(task)
    except ValueError as exc:
        raise fail(str(exc)) from exc


@app.command()
def up(
    no_simulator: Annotated[
        bool, typer.Option("--no-simulator", help="Run the stack without generated traffic.")
    ] = False,
    rate: Annotated[float, typer.Option(help="Simulated events per second.", min=0.1)] = 20.0,
) -> None:
    """Run everything locally: broker (unless configured), migrations, worker, writer, simulator."""
    from cxpulse.api.server import ApiError
    from cxpulse.deploy.stack import Stack
    from cxpulse.sinks.migrate import MigrationError
    from cxpulse.sinks.store import StoreError
    from cxpulse.streams.funnels import FunnelConfigError

    try:
        code = Stack(load_settings(), simulator=not no_simulator, rate=rate).run()
    except (KafkaError, StoreError, MigrationError, ApiError, FunnelConfigError) as exc:
        raise fail(str(exc)) from exc
    raise typer.Exit(code=code)


@app.command()
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


@app.command()
def watch(
    funnel: Annotated[str, typer.Option(help="Funnel to show.")] = "self_service",
    since: Annotated[str, typer.Option(help="Range shown: the last 15m, 1h, 24h ...")] = "1h",
    every: Annotated[float, typer.Option(help="Seconds between refreshes.", min=0.5)] = 3.0,
    url: Annotated[
        str | None, typer.Option(help="API base URL. Default: the running `up` stack's.")
    ] = None,
) -> None:
    """A live terminal view: funnel, contact-center KPIs, firing alerts, freshness (Ctrl-C ends)."""
    from cxpulse.api.server import ApiError, resolve_keys
    from cxpulse.api.watch import watch as run_watch
    from cxpulse.schemas.durations import parse_duration_ms

    settings = load_settings()
    try:
        since_s = parse_duration_ms(since) // 1000
        _, shown = resolve_keys(settings, generate=False)
    except (ValueError, ApiError) as exc:
        raise fail(str(exc)) from exc
    key = shown or settings.api_keys.get_secret_value().split(",")[0].strip()  # type: ignore[union-attr]
    if key.startswith("sha256:"):
        raise fail("CXPULSE_API_KEYS holds only hashes; set a plain key to watch")
    base = url or f"http://{settings.api_host}:{settings.api_port}"
    with contextlib.suppress(KeyboardInterrupt):
        run_watch(base, key, funnel, since, since_s, every)


@app.command()
def report(
    since: Annotated[str, typer.Option(help="Range to report: the last 30m, 24h, 7d ...")] = "24h",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Funnel, contact-center KPIs and containment of a recent range, read from the store.

    With embedded chdb run it while `cxpulse up` is stopped (one process per database).
    """
    import time

    from cxpulse.deploy.stack import store_for
    from cxpulse.schemas.durations import parse_duration_ms
    from cxpulse.sinks.queries import contact_kpis, containment, funnel_summary
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
                    store, start, end, assisted_cost=settings.assisted_cost,
                    self_service_cost=settings.self_service_cost,
                )[0] | {"currency": settings.currency},
            }  # fmt: skip
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


@app.command()
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


def main() -> None:
    app()


if __name__ == "__main__":
    main()
