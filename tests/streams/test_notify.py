"""Alert notifications against real local HTTP servers (a webhook receiver, a stand-in for
Grafana's annotations API) and the real broker (the alerts topic)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
import pytest
from confluent_kafka import Consumer
from prometheus_client import REGISTRY, generate_latest

from cxpulse.deploy.kafka import free_port
from cxpulse.sinks.alerts import document
from cxpulse.streams import topics
from cxpulse.streams.notify import (
    NEVER,
    Delivery,
    GrafanaAnnotationSink,
    TopicSink,
    WebhookSink,
    alertmanager_payload,
)
from cxpulse.streams.producer import JsonProducer

ALERT: dict[str, Any] = {
    "id": "dropoff_rising/self_service/diagnose/device=mobile",
    "rule": "dropoff_rising",
    "state": "firing",
    "funnel": "self_service",
    "step": "diagnose",
    "segment": {"device": "mobile"},
    "current_rate": 0.5,
    "baseline_rate": 0.3,
    "window_journeys": 400,
    "z": 8.1,
    "started_ms": 1_790_000_000_000,
    "resolved_ms": None,
    "silenced_ms": None,
    "recent_changes": [],
    "top_drivers": [],
}
FAST = {"first_backoff_s": 0.02, "max_backoff_s": 0.05}


class Received:
    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, str], Any]] = []
        self.arrived = threading.Condition()

    def wait_for(self, count: int, timeout_s: float = 20) -> None:
        with self.arrived:
            assert self.arrived.wait_for(lambda: len(self.requests) >= count, timeout_s), (
                self.requests
            )


@contextmanager
def receiver(
    statuses: list[int], before_reply: Callable[[], None] = lambda: None
) -> Iterator[tuple[str, Received]]:
    """A real HTTP server answering POSTs with `statuses` in turn (then 200), recording them."""
    received = Received()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            before_reply()
            with received.arrived:
                received.requests.append(
                    (self.command, self.path, dict(self.headers), orjson.loads(body))
                )
                status = statuses.pop(0) if statuses else 200
                received.arrived.notify_all()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"id": 1, "message": "ok"}')

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()


def test_webhook_retries_after_500s_and_posts_alertmanager_json() -> None:
    with receiver([500, 500, 503]) as (url, received):
        sink = WebhookSink(f"{url}/hook", "http://api.example:8000", **FAST)
        sink.publish("firing", ALERT, notify=True)
        received.wait_for(4)
        sink.close()
    assert len(received.requests) == 4  # three failures, then delivered once
    method, path, headers, payload = received.requests[-1]
    assert (method, path, headers["Content-Type"]) == ("POST", "/hook", "application/json")
    assert payload == alertmanager_payload("firing", ALERT, "http://api.example:8000")
    assert payload["version"] == "4"
    assert payload["status"] == "firing"
    (alert,) = payload["alerts"]
    assert alert["labels"] == {
        "alertname": "dropoff_rising", "alert_id": ALERT["id"], "source": "cxpulse",
        "funnel": "self_service", "step": "diagnose", "segment_device": "mobile",
    }  # fmt: skip
    assert (alert["startsAt"], alert["endsAt"]) == ("2026-09-21T14:13:20+00:00", NEVER)
    assert alert["annotations"]["summary"] == (
        "dropoff_rising at self_service diagnose (device=mobile): 50.0% vs baseline 30.0%"
    )


def test_a_refused_webhook_is_not_retried_and_a_silenced_alert_not_sent() -> None:
    with receiver([400]) as (url, received):
        sink = WebhookSink(url, "http://api", **FAST)
        sink.publish("firing", ALERT, notify=False)  # silenced
        resolved = {**ALERT, "state": "resolved", "resolved_ms": ALERT["started_ms"] + 60_000}
        sink.publish("resolved", resolved, notify=True)
        received.wait_for(1)
        sink.close()
    assert len(received.requests) == 1
    payload = received.requests[0][3]
    assert payload["status"] == "resolved"
    assert payload["alerts"][0]["endsAt"] == "2026-09-21T14:14:20+00:00"


def test_a_stuck_or_dead_receiver_blocks_no_one_else() -> None:
    release = threading.Event()
    dead = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens there
    with (
        receiver([], before_reply=release.wait) as (stuck_url, stuck),
        receiver([]) as (
            url,
            fine,
        ),
    ):
        sinks = [WebhookSink(dead, "http://api", **FAST), WebhookSink(stuck_url, "http://api"),
                 WebhookSink(url, "http://api")]  # fmt: skip
        for sink in sinks:
            sink.publish("firing", ALERT, notify=True)  # returns at once for every one
        fine.wait_for(1)  # delivered while the stuck receiver still holds its request
        assert not release.is_set()
        assert stuck.requests == []
        release.set()
        stuck.wait_for(1)
        for sink in sinks:
            sink.close()


def test_webhook_urls_never_reach_metrics_logs_or_thread_names(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Hook URLs carry secrets in their path, query and userinfo; /metrics is open and logs are
    shipped: only `webhook[<index>] <host>` may show, on every path (delivered, retried,
    refused, unreachable, invalid)."""
    secrets = ["hookuser", "pa55w0rd-userinfo", "T0SECRETPATH", "B0SECRET", "q-secret-token"]
    caplog.set_level(logging.DEBUG)
    with receiver([500, 404]) as (url, received):
        host, dead_host = url.removeprefix("http://"), f"127.0.0.1:{free_port()}"
        user = "http://hookuser:pa55w0rd-userinfo@"
        hook = f"{user}{host}/services/T0SECRETPATH/B0SECRET?token=q-secret-token"
        dead = f"{user}{dead_host}/T0SECRETPATH"  # nothing listens there
        invalid = f"{user}127.0.0.1:99999/T0SECRETPATH?q-secret-token"  # port out of range
        sinks = [WebhookSink(u, "http://api", index=i, max_attempts=2, **FAST)
                 for i, u in enumerate((hook, dead, invalid))]  # fmt: skip
        for sink in sinks:
            sink.publish("firing", ALERT, notify=True)  # 500, then 404: refused
        received.wait_for(2)
        sinks[0].publish("resolved", ALERT, notify=True)  # 200
        received.wait_for(3)
        threads = [sink.delivery.thread.name for sink in sinks]
        for sink in sinks:
            sink.close()
    assert received.requests[0][1] == "/services/T0SECRETPATH/B0SECRET?token=q-secret-token"

    def count(destination: str, result: str) -> float | None:
        labels = {"destination": destination, "result": result}
        return REGISTRY.get_sample_value("cxpulse_notifications_total", labels)

    names = [f"webhook[0] {host}", f"webhook[1] {dead_host}", "webhook[2] 127.0.0.1"]
    assert threads == [f"notify-{name}" for name in names]
    assert [count(names[0], result) for result in ("retried", "failed", "delivered")] == [1, 1, 1]
    assert count(names[1], "failed") == count(names[2], "failed") == 1
    # httpx's own request log is there, with the host only.
    assert f"HTTP Request: POST http://{host}/..." in caplog.text
    shown = "\n".join(
        [generate_latest().decode(), caplog.text, *threads]
        + [f"{r.threadName} {r.getMessage()} {r.exc_text}" for r in caplog.records]
    )
    assert not [secret for secret in secrets if secret in shown]


def test_a_full_queue_drops_its_oldest_notification() -> None:
    sent: list[int] = []
    gate = threading.Event()

    def send(item: int) -> None:
        gate.wait()
        sent.append(item)

    delivery = Delivery("test", send, capacity=2)
    delivery.submit(0)
    while delivery.items.qsize():  # the thread took item 0 and waits at the gate
        time.sleep(0.01)
    for item in (1, 2, 3, 4):
        delivery.submit(item)
    gate.set()
    delivery.close()
    assert sent == [0, 3, 4]


def test_grafana_annotations_through_its_http_api_with_retries() -> None:
    with receiver([502]) as (url, received):
        sink = GrafanaAnnotationSink(url, "glsa_token", **FAST)
        sink.publish("firing", ALERT, notify=True)
        received.wait_for(2)
        sink.close()
    method, path, headers, body = received.requests[-1]
    assert (method, path, headers["Authorization"]) == (
        "POST", "/api/annotations", "Bearer glsa_token")  # fmt: skip
    assert body.pop("panelId", None) is None  # organization-wide (grafana-client sends null)
    assert body == {
        "time": ALERT["started_ms"],
        "timeEnd": ALERT["started_ms"],
        "tags": ["cxpulse", "dropoff_rising", "firing", "self_service", "diagnose",
                 "device=mobile"],
        "text": "firing: dropoff_rising at self_service diagnose (device=mobile): 50.0% vs "
                "baseline 30.0%",
    }  # fmt: skip


def test_every_change_goes_to_the_alerts_topic(bootstrap: str) -> None:
    topics.ensure_topics(bootstrap, 4)
    producer = JsonProducer(bootstrap)
    marker = f"{ALERT['id']}/{time.time_ns()}"
    TopicSink(producer, producer.flush).publish("firing", {**ALERT, "id": marker}, notify=False)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": marker,
                         "auto.offset.reset": "earliest"})  # fmt: skip
    consumer.subscribe([topics.ALERTS.name])
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None or message.error() or message.key() != marker.encode():
                continue
            event = orjson.loads(message.value())
            assert event == {"event": "firing", "notified": False,
                             "alert": document({**ALERT, "id": marker})}  # fmt: skip
            return
        raise AssertionError("no alert event on the topic")
    finally:
        consumer.close()
