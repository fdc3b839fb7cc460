"""Where alert changes go besides the alerts table: the alerts topic, webhooks and Grafana.

Webhooks and Grafana are remote and may be slow or down: each destination gets its own thread
and bounded queue, with retries and exponential backoff, so a dead receiver delays only its own
notifications and never the evaluator, the stream or another receiver. When a queue is full
the oldest notification is dropped (and counted).

A destination is named by its host only (`webhook[0] hooks.example.com`) in metrics, logs and
thread names: the path, query and userinfo of a Slack- or Teams-style hook URL are its secret,
and `/metrics` is open.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx
from grafana_client import GrafanaApi
from grafana_client.client import GrafanaClientError, GrafanaServerError

from cxpulse.schemas.times import iso_time
from cxpulse.sinks.alerts import document
from cxpulse.sinks.driver_queries import drivers_text
from cxpulse.streams import metrics, topics
from cxpulse.streams.stage import Sender

log = logging.getLogger(__name__)

NEVER = "0001-01-01T00:00:00Z"  # Alertmanager's endsAt of an alert that has not ended


class Retryable(Exception):
    """A delivery that may succeed later (connection error, timeout, 5xx, 429)."""


class Refused(Exception):
    """A delivery the receiver refused (4xx other than 429): not retried."""


def host_of(url: str) -> str:
    """The host (and port) of a URL: what may be shown of it in metrics and logs."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
    except ValueError:
        return "?"
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:  # a port out of range: the host alone
        port = ""
    return f"[{host}]{port}" if ":" in host else f"{host}{port}"


def redacted_reason(exc: BaseException, url: str) -> str:
    """An exception's text for a log line, or only its type when the text quotes any secret
    part of `url` (path, query, fragment, userinfo), raw or percent-decoded."""
    text = str(exc)
    try:
        parts = urlsplit(url)
    except ValueError:
        return type(exc).__name__
    secrets = [parts.path.strip("/"), parts.query, parts.fragment, parts.username, parts.password]
    secrets += [unquote(s) for s in secrets if s]
    if not text or any(s and s in text for s in secrets):
        return type(exc).__name__
    return f"{type(exc).__name__}: {text}"


class _HostOnlyUrls(logging.Filter):
    """httpx logs every request's full URL at INFO (`HTTP Request: POST <url> ...`): keep the
    scheme and host of such URLs in the record, never the path, query or userinfo."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(isinstance(a, httpx.URL) for a in record.args):
            record.args = tuple(
                f"{a.scheme}://{host_of(str(a))}/..." if isinstance(a, httpx.URL) else a
                for a in record.args
            )
        return True


logging.getLogger("httpx").addFilter(_HostOnlyUrls())


class TopicSink:
    """Every change, silenced or not, as an event on `cx.alerts.v1` keyed by alert id. Sent
    from its own thread: with the broker down it waits there, not in the evaluator."""

    def __init__(self, producer: Sender, flush: Callable[[], None]) -> None:
        self.producer = producer
        self.flush = flush
        self.delivery = Delivery("alerts topic", self._send)

    def publish(self, change: str, alert: dict[str, Any], notify: bool) -> None:
        self.delivery.submit({"event": change, "notified": notify, "alert": document(alert)})

    def _send(self, event: dict[str, Any]) -> None:
        self.producer.send(topics.ALERTS.name, event["alert"]["id"], event)
        self.flush()

    def close(self) -> None:
        self.delivery.close()


class Delivery:
    """One destination: a thread that sends queued items, retrying what may succeed later."""

    def __init__(
        self,
        name: str,
        send: Callable[[Any], None],
        max_attempts: int = 8,
        first_backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        capacity: int = 1000,
    ) -> None:
        self.name = name
        self.send = send
        self.max_attempts = max_attempts
        self.first_backoff_s = first_backoff_s
        self.max_backoff_s = max_backoff_s
        self.items: queue.Queue[Any] = queue.Queue(capacity)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"notify-{name}", daemon=True)
        self.thread.start()

    def submit(self, item: Any) -> None:
        """Queue without blocking; a full queue loses its oldest item."""
        while True:
            try:
                self.items.put_nowait(item)
                return
            except queue.Full:
                try:
                    self.items.get_nowait()
                    metrics.NOTIFICATIONS.labels(self.name, "dropped").inc()
                    log.warning("%s: queue full, dropped the oldest notification", self.name)
                except queue.Empty:
                    pass

    def close(self, timeout_s: float = 5.0) -> bool:
        """Stop: what is queued is tried once more within `timeout_s` (no more retries), the
        rest dropped and counted. Returns whether the thread has ended."""
        self.stop.set()
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self.items.put(None, timeout=max(0.01, deadline - time.monotonic()))
                break
            except queue.Full:
                with contextlib.suppress(queue.Empty):
                    self.items.get_nowait()
                    metrics.NOTIFICATIONS.labels(self.name, "dropped").inc()
        self.thread.join(max(0.0, deadline - time.monotonic()))
        return not self.thread.is_alive()

    def _run(self) -> None:
        while True:
            item = self.items.get()
            if item is None:
                return
            self._deliver(item)

    def _deliver(self, item: Any) -> None:
        backoff = self.first_backoff_s
        for attempt in range(1, self.max_attempts + 1):
            try:
                self.send(item)
                metrics.NOTIFICATIONS.labels(self.name, "delivered").inc()
                return
            except Retryable as exc:
                if attempt == self.max_attempts or self.stop.is_set():
                    break
                log.warning(
                    "%s: attempt %d failed (%s); retrying in %.2f s",
                    self.name,
                    attempt,
                    exc,
                    backoff,
                )
                metrics.NOTIFICATIONS.labels(self.name, "retried").inc()
                if self.stop.wait(backoff):
                    break
                backoff = min(backoff * 2, self.max_backoff_s)
            except Exception:
                log.exception("%s: notification refused; not retried", self.name)
                break
        metrics.NOTIFICATIONS.labels(self.name, "failed").inc()
        log.error("%s: notification given up", self.name)


def alertmanager_payload(change: str, alert: dict[str, Any], external_url: str) -> dict[str, Any]:
    """Alertmanager's webhook payload (version 4) for one alert, so receivers built for
    Alertmanager (PagerDuty, Opsgenie, chat bridges) take cxpulse alerts unchanged."""
    labels = {"alertname": alert["rule"], "alert_id": alert["id"], "source": "cxpulse"}
    if alert["funnel"]:
        labels |= {"funnel": alert["funnel"], "step": alert["step"]}
    labels |= {f"segment_{k}": v for k, v in sorted(alert["segment"].items())}
    annotations = {
        "summary": summary(alert),
        "current_rate": f"{alert['current_rate']:.4f}",
        "baseline_rate": f"{alert['baseline_rate']:.4f}",
        "z": f"{alert['z']:.2f}",
        "window_count": str(alert["window_journeys"]),
    }
    if alert["recent_changes"]:
        annotations["recent_changes"] = changes_text(alert["recent_changes"])
    if alert["top_drivers"]:
        annotations["top_drivers"] = drivers_text(alert["top_drivers"])
    ended = alert["resolved_ms"]
    one = {
        "status": change,
        "labels": labels,
        "annotations": annotations,
        "startsAt": iso_time(alert["started_ms"]),
        "endsAt": NEVER if ended is None else iso_time(ended),
        "generatorURL": f"{external_url}/v1/alerts",
        "fingerprint": hashlib.sha256(alert["id"].encode()).hexdigest()[:16],
    }
    return {
        "version": "4",
        # One group per alert: receivers that dedupe on groupKey keep alerts apart.
        "groupKey": f'{{}}:{{alert_id="{alert["id"]}",alertname="{alert["rule"]}"}}',
        "truncatedAlerts": 0,
        "status": change,
        "receiver": "cxpulse",
        "groupLabels": {"alert_id": alert["id"], "alertname": alert["rule"]},
        "commonLabels": labels,
        "commonAnnotations": annotations,
        "externalURL": external_url,
        "alerts": [one],
    }


def changes_text(changes: list[dict[str, str]]) -> str:
    """The changes an alert names, readable in one line: `id "title" at time; ...`."""
    return "; ".join(f'{c["id"]} "{c["title"]}" at {c["at"]}' for c in changes)


def summary(alert: dict[str, Any]) -> str:
    where = " ".join(x for x in (alert["funnel"], alert["step"]) if x) or "contact center"
    segment = ", ".join(f"{k}={v}" for k, v in sorted(alert["segment"].items())) or "overall"
    return (
        f"{alert['rule']} at {where} ({segment}): {alert['current_rate']:.1%} vs baseline "
        f"{alert['baseline_rate']:.1%}"
    )


class WebhookSink:
    """POSTs Alertmanager-compatible JSON to one URL (not while the alert is silenced).

    Named `webhook[<index>] <host>` (`index`: its position in CXPULSE_ALERT_WEBHOOK_URLS), so
    two hooks on one host stay apart and the URL's secret parts are never shown.
    """

    def __init__(
        self, url: str, external_url: str, timeout_s: float = 5.0, index: int = 0, **retry: Any
    ) -> None:
        self.url = url
        self.external_url = external_url
        self.client = httpx.Client(timeout=timeout_s)
        self.delivery = Delivery(f"webhook[{index}] {host_of(url)}", self._post, **retry)

    def publish(self, change: str, alert: dict[str, Any], notify: bool) -> None:
        if notify:
            self.delivery.submit(alertmanager_payload(change, alert, self.external_url))

    def _post(self, payload: dict[str, Any]) -> None:
        # Errors are re-raised with redacted text and without their cause (`from None`): a
        # logged traceback would print the cause, and httpx's texts may quote the URL.
        try:
            response = self.client.post(self.url, json=payload)
        except httpx.HTTPError as exc:
            raise Retryable(redacted_reason(exc, self.url)) from None
        except Exception as exc:  # e.g. httpx.InvalidURL: a configuration error
            raise Refused(redacted_reason(exc, self.url)) from None
        if response.status_code == 429 or response.status_code >= 500:
            raise Retryable(f"HTTP {response.status_code}")
        if response.status_code >= 400:  # not raise_for_status(): its text holds the URL
            raise Refused(f"HTTP {response.status_code}")

    def close(self) -> None:
        if self.delivery.close():  # a thread still sending keeps its client
            self.client.close()


class GrafanaAnnotationSink:
    """An annotation per change (tags: cxpulse, rule, state, funnel step), for dashboards'
    alert history; organization-wide, so every dashboard can show it by tag."""

    def __init__(self, url: str, token: str | None, **retry: Any) -> None:
        self.api = GrafanaApi.from_url(url, credential=token)
        self.delivery = Delivery(f"grafana {host_of(url)}", self._annotate, **retry)

    def publish(self, change: str, alert: dict[str, Any], notify: bool) -> None:
        if notify:
            self.delivery.submit((change, alert))

    def _annotate(self, item: tuple[str, dict[str, Any]]) -> None:
        change, alert = item
        at = alert["started_ms"] if change == "firing" else alert["resolved_ms"]
        tags = ["cxpulse", alert["rule"], change]
        tags += [x for x in (alert["funnel"], alert["step"]) if x]
        tags += [f"{k}={v}" for k, v in sorted(alert["segment"].items())]
        text = f"{change}: {summary(alert)}"
        if alert["recent_changes"]:
            text += f" (after changes: {changes_text(alert['recent_changes'])})"
        if alert["top_drivers"]:
            text += f" (top drivers: {drivers_text(alert['top_drivers'])})"
        try:
            self.api.annotations.add_annotation(time_from=at, time_to=at, tags=tags, text=text)
        except (GrafanaServerError, OSError) as exc:  # requests' errors are OSErrors
            raise Retryable(str(exc)) from exc
        except GrafanaClientError as exc:
            if exc.status_code != 429:
                raise
            raise Retryable(str(exc)) from exc

    def close(self) -> None:
        self.delivery.close()
