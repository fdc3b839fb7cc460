"""How cxpulse's processes are wired: a stream worker, a store writer, and `cxpulse up`, the
all-in-one local stack in one supervising process.

In `up` the broker and the faust worker run as child processes tied to this one (they die with
it even on kill -9); the store writer runs in this process because chdb admits one process per
database directory. Ctrl-C stops everything in dependency order: producer, worker, writer,
broker.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.table import Table

from cxpulse.api.app import create_api
from cxpulse.api.server import BackgroundApi, resolve_keys
from cxpulse.dashboards.build import GRAFANA_DIR
from cxpulse.deploy.children import Respawned, spawn_child, stop_child
from cxpulse.deploy.cli_common import console
from cxpulse.deploy.kafka import BrokerConfig, KafkaBroker, KafkaError
from cxpulse.deploy.logs import logging_config
from cxpulse.deploy.traffic import history_to_send_ms, run_simulator
from cxpulse.sinks.funnel_queries import freshness
from cxpulse.sinks.migrate import migrate
from cxpulse.sinks.sink import StoreSink
from cxpulse.sinks.store import Store, open_store
from cxpulse.sinks.writer import StoreWriter
from cxpulse.streams import metrics, topics
from cxpulse.streams.app import create_app, die, run_worker
from cxpulse.streams.evaluator import AlertEvaluator, AlertSink
from cxpulse.streams.funnels import FunnelSpec, load_funnels
from cxpulse.streams.ingest_stage import IngestStage
from cxpulse.streams.notify import GrafanaAnnotationSink, TopicSink, WebhookSink
from cxpulse.streams.producer import DeadLetterProducer, JsonProducer
from cxpulse.streams.settings import Settings, redact_url

log = logging.getLogger(__name__)
_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def local_broker(settings: Settings) -> KafkaBroker:
    return KafkaBroker(
        BrokerConfig(
            home=settings.kafka_home,
            port=settings.kafka_port,
            controller_port=settings.kafka_controller_port,
            heap=settings.kafka_heap,
        )
    )


def store_for(settings: Settings) -> Store:
    """The configured ClickHouse server, else embedded chdb under the data dir."""
    return open_store(settings.clickhouse_url, settings.chdb_path, settings.clickhouse_database)


def writer_for(store: Store, bootstrap: str, settings: Settings) -> StoreWriter:
    return StoreWriter(
        StoreSink(store),
        bootstrap,
        topics.STORE_TABLES,
        DeadLetterProducer(bootstrap, "writer"),
        batch_rows=settings.writer_batch_rows,
        flush_seconds=settings.writer_flush_seconds,
    )


class AlertService:
    """The alert evaluator and its outputs (topic, webhooks, Grafana) in a thread beside the
    store writer, since the rules read every partition's figures from the store. Nothing is
    started when alerting is off (`CXPULSE_ALERT_EVALUATION_SECONDS=0`)."""

    def __init__(
        self, store: Store, bootstrap: str, settings: Settings, funnels: Sequence[FunnelSpec]
    ) -> None:
        self.store, self.bootstrap, self.settings, self.funnels = (
            store,
            bootstrap,
            settings,
            funnels,
        )
        self.stop_event = threading.Event()
        self.thread: threading.Thread | None = None
        self.producer: JsonProducer | None = None
        self.sinks: list[TopicSink | WebhookSink | GrafanaAnnotationSink] = []

    def start(self) -> None:
        settings = self.settings
        if settings.alert_evaluation_seconds <= 0:
            return
        self.producer = JsonProducer(self.bootstrap)
        external = f"http://{settings.api_host}:{settings.api_port}"
        retry = {"max_attempts": settings.alert_webhook_max_attempts}
        self.sinks = [TopicSink(self.producer, self.producer.flush)]
        hooks = settings.alert_webhook_urls
        urls = [url.strip() for url in (hooks.get_secret_value() if hooks else "").split(",")]
        self.sinks += [
            WebhookSink(url, external, index=i, **retry) for i, url in enumerate(filter(None, urls))
        ]
        if settings.grafana_url:
            token = settings.grafana_token.get_secret_value() if settings.grafana_token else None
            self.sinks.append(GrafanaAnnotationSink(settings.grafana_url, token, **retry))
        sinks: list[AlertSink] = list(self.sinks)
        evaluator = AlertEvaluator(self.store, self.funnels, settings.alert_config(), sinks)
        # A daemon: a round stuck on an unreachable store must not keep the process alive.
        self.thread = threading.Thread(
            target=evaluator.run,
            args=(self.stop_event, settings.alert_evaluation_seconds),
            name="alerts",
            daemon=True,
        )
        self.thread.start()

    def stop(self) -> None:
        """Stop within about a minute even with Kafka or a receiver gone."""
        self.stop_event.set()
        if self.thread is not None:
            self.thread.join(timeout=60)
        for sink in self.sinks:
            sink.close()
        if self.producer is not None and (left := self.producer.flush_within(10.0)):
            log.warning("%d alert events not acknowledged by Kafka at shutdown", left)


def resolve_bootstrap(settings: Settings) -> str:
    """The configured broker, else the local one `cxpulse up` or `cxpulse kafka start` runs."""
    if settings.kafka_bootstrap:
        return settings.kafka_bootstrap
    broker = local_broker(settings)
    if broker.running_pid() is not None:
        return broker.config.bootstrap
    raise KafkaError(
        "no Kafka broker: set CXPULSE_KAFKA_BOOTSTRAP, or start the local one with "
        "`cxpulse kafka start` (or run the whole stack with `cxpulse up`)."
    )


def run_stream_worker(settings: Settings, bootstrap: str, metrics_port: int | None) -> None:
    """This process as a stream worker: the ingest stage in a thread beside the faust journey
    agent, until faust stops (SIGTERM, Ctrl-C). A failed ingest stage ends the process, so no
    worker looks alive while it ingests nothing."""
    topics.ensure_topics(bootstrap, settings.topic_partitions)
    if metrics_port is not None:
        # A log line, not console output: it must be JSON too when the logs are.
        port = metrics.serve(metrics_port)
        logging.getLogger("cxpulse.worker").info("metrics on http://127.0.0.1:%d/metrics", port)
    funnels = load_funnels(settings.funnels_file)
    stop = threading.Event()
    stage = IngestStage(bootstrap, bounds=settings.bounds())

    def run_ingest() -> None:
        try:
            stage.run(stop)
        except Exception:
            die("the ingest stage failed")

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
            windows=settings.windows(),
        )
        run_worker(app, logging_config(settings.log_level, settings.log_format))
    finally:
        stop.set()
        ingest.join(timeout=60)


def run_store_writer(settings: Settings, bootstrap: str, evaluate_alerts: bool) -> None:
    """This process as a store writer, with the alert evaluator beside it when
    `evaluate_alerts`, until SIGINT or SIGTERM."""
    stop = threading.Event()
    for sig in _SIGNALS:
        signal.signal(sig, lambda *_: stop.set())
    funnels = load_funnels(settings.funnels_file)
    with store_for(settings) as store:
        alerts = AlertService(store, bootstrap, settings, funnels) if evaluate_alerts else None
        if alerts is not None:
            alerts.start()
        try:
            writer_for(store, bootstrap, settings).run(stop)
        finally:
            if alerts is not None:
                alerts.stop()


def next_steps(api_url: str, key: str | None, funnel: str, server_store: bool) -> list[str]:
    """The end of `up`'s banner: what a new user can try once the stack runs."""
    bearer = key or "<a key of CXPULSE_API_KEYS>"
    grafana = (
        "`cxpulse grafana sync --url <Grafana URL>` loads them onto a Grafana"
        if server_store
        else "Grafana needs a ClickHouse server, not embedded chdb: `docker compose --profile "
        "demo up -d` serves them on http://127.0.0.1:3000"
    )
    return [
        "Try next:",
        "  cxpulse watch  (in another terminal: the funnel, contact-center KPIs and alerts, live)",
        f"  curl -H 'Authorization: Bearer {bearer}' '{api_url}/v1/funnels/{funnel}/summary'",
        f"  dashboards: Grafana JSON in {GRAFANA_DIR / 'dashboards'} "
        f"(`cxpulse grafana build` regenerates it); {grafana}",
    ]


@dataclass
class Stack:
    settings: Settings
    simulator: bool = True
    rate: float = 20.0
    history_ms: int = 0
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> int:
        """Run until Ctrl-C/SIGTERM or until a part dies; 0 on a requested stop, 1 otherwise."""
        settings = self.settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        logs = settings.data_dir.resolve() / "logs"
        broker: KafkaBroker | None = None
        workers: Respawned | None = None
        store = None
        writer_stop = threading.Event()
        writer_thread: threading.Thread | None = None
        api: BackgroundApi | None = None
        alerts: AlertService | None = None
        simulator: threading.Thread | None = None
        failure: str | None = "startup failed"
        previous = {sig: signal.signal(sig, lambda *_: self.stop.set()) for sig in _SIGNALS}
        try:
            if settings.kafka_bootstrap:
                bootstrap = settings.kafka_bootstrap
            else:
                broker = local_broker(settings)
                console.print(f"starting Kafka {broker.version} on {broker.config.bootstrap} ...")
                broker.start(attached=True)
                bootstrap = broker.config.bootstrap
            topics.ensure_topics(bootstrap, settings.topic_partitions)
            store = store_for(settings)
            applied = migrate(store)
            stored = bool(freshness(store))
            history_ms = history_to_send_ms(self.history_ms, self.simulator, stored)
            writer = writer_for(store, bootstrap, settings)
            writer_thread = threading.Thread(target=writer.run, args=(writer_stop,), name="writer")
            writer_thread.start()
            keys, shown_key = resolve_keys(settings, generate=True)
            funnels = load_funnels(settings.funnels_file)
            api = BackgroundApi(create_api(store, funnels, settings, keys), settings)
            api.start()
            alerts = AlertService(store, bootstrap, settings, funnels)
            alerts.start()
            worker_env = {"CXPULSE_KAFKA_BOOTSTRAP": bootstrap, "CXPULSE_LOG_FORMAT": "json"}
            workers = Respawned(lambda: spawn_child(["worker"], worker_env, logs / "worker.log"))
            if self.simulator:
                # A daemon: a producer stuck on an unreachable broker must not keep `up` alive.
                simulator = threading.Thread(
                    target=run_simulator,
                    args=(bootstrap, self.rate, self.stop, history_ms),
                    name="simulator",
                    daemon=True,
                )
                simulator.start()
            info = {
                "pid": os.getpid(),
                "kafka_bootstrap": bootstrap,
                "kafka_local": broker is not None,
                "store": store.backend,
                "store_location": redact_url(settings.clickhouse_url)
                if settings.clickhouse_url
                else str(settings.chdb_path),
                "data_dir": str(settings.data_dir.resolve()),
                "api_url": api.url,
                "worker_pids": [workers.proc.pid],
                "broker_pid": broker.running_pid() if broker else None,
                "logs": str(logs),
            }
            settings.stack_file.write_text(json.dumps(info, indent=2))
            self._print_banner(info, len(applied), shown_key, history_ms, funnels[0].name)
            failure = self._supervise(writer, writer_thread, workers, broker, api)
        finally:
            worker = None if workers is None else workers.proc
            # In dependency order: traffic, worker (flushes its output), writer (stores what the
            # worker produced), broker.
            self.stop.set()
            if simulator is not None:
                simulator.join(timeout=10)
            if worker is not None:
                stop_child(worker)
            if writer_thread is not None:
                time.sleep(2 * settings.writer_flush_seconds)
                writer_stop.set()
                writer_thread.join(timeout=60)
            if alerts is not None:
                alerts.stop()
            if api is not None:
                api.stop()
            if store is not None:
                store.close()
            if broker is not None:
                broker.stop()
            settings.stack_file.unlink(missing_ok=True)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            left = int(worker is not None and worker.poll() is None)
            left += int(broker is not None and broker.running_pid() is not None)
            if left:
                console.print(f"[red]cxpulse stopped, but {left} of its processes still run[/red]")
            else:
                console.print("cxpulse stopped; no process left running.")
        if failure:
            console.print(f"[red]{failure}[/red]")
            return 1
        return 0

    def _supervise(
        self,
        writer: StoreWriter,
        writer_thread: threading.Thread,
        workers: Respawned,
        broker: KafkaBroker | None,
        api: BackgroundApi,
    ) -> str | None:
        """Wait for a stop request (None) or a dead part (what died). A worker that exits to
        have its work redone from Kafka is started again, unless it keeps doing so."""
        next_report = time.monotonic() + 5
        while not self.stop.wait(0.5):
            failure = workers.check()
            if failure is not None:
                return failure
            if not writer_thread.is_alive():
                return "the store writer stopped; see the log above"
            if not api.alive:
                return "the API stopped; see the log above"
            if broker is not None and broker.running_pid() is None:
                return f"the Kafka broker exited; see {broker.logs_dir / 'server.log'}"
            if time.monotonic() >= next_report:
                next_report += 5
                stored = ", ".join(f"{t}={n}" for t, n in writer.stats.rows_written.items())
                console.print(f"rows stored: {stored or 'none yet'}")
        return None

    def _print_banner(
        self,
        info: dict[str, Any],
        migrations_applied: int,
        key: str | None,
        history_ms: int,
        funnel: str,
    ) -> None:
        table = Table(title="cxpulse is running", show_header=False)
        table.add_row(
            "Kafka", f"{info['kafka_bootstrap']}" + (" (local)" if info["kafka_local"] else "")
        )
        table.add_row("Store", f"{info['store']} at {info['store_location']}")
        table.add_row("Migrations", f"{migrations_applied} applied now")
        table.add_row("API", f"{info['api_url']}/v1/... (OpenAPI: {info['api_url']}/docs)")
        table.add_row("API key", "below" if key else "from CXPULSE_API_KEYS")
        table.add_row("Worker", f"pid {info['worker_pids'][0]}, log {info['logs']}/worker.log")
        traffic = f"live traffic, about {self.rate:g} events/s"
        if history_ms:
            traffic = (
                f"{history_ms / 3_600_000:g} h of history first (a first start), then {traffic}"
            )
        table.add_row("Simulator", traffic if self.simulator else "off")
        table.add_row("Data dir", info["data_dir"])
        console.print(table)
        if key:
            console.print(f"API key (kept in the data dir): {key}")
        console.print("Press Ctrl-C to stop.")
        server_store = self.settings.clickhouse_url is not None
        for line in next_steps(info["api_url"], key, funnel, server_store):
            console.print(line, markup=False)
