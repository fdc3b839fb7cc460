"""The simulated traffic of `cxpulse up`: on a first start, hours of history first, then live.

Live traffic alone leaves every journey open for its first half hour (a journey closes after
its inactivity gap), so the first look would show no drop-off, no containment and no cost. A
first start therefore sends a few hours of history as fast as possible, ending now, before live
traffic paced to the wall clock; later starts send none, or the history would pile up.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable

from cxpulse.streams.simulator.config import SimConfig
from cxpulse.streams.simulator.noise import Message
from cxpulse.streams.simulator.output import paced, send_to_kafka
from cxpulse.streams.simulator.run import Plan

#: Simulated history a first start sends: enough for closed journeys in the default views
#: (`cxpulse watch` shows the last hour) and a baseline for the alert rules.
DEFAULT_HISTORY = "3h"


def history_to_send_ms(history_ms: int, simulator: bool, events_stored: bool) -> int:
    """How much history `up` sends before live traffic: the requested span on a first start
    (nothing stored yet) with the simulator on, else none."""
    return history_ms if simulator and not events_stored else 0


def _send(messages: Iterable[Message], bootstrap: str, stop: threading.Event) -> bool:
    """Send until the messages end (True) or `stop` is set (False)."""
    return all(not stop.is_set() for _ in send_to_kafka(messages, bootstrap))


def run_simulator(bootstrap: str, rate: float, stop: threading.Event, history_ms: int = 0) -> None:
    """`history_ms` of history ending now, as fast as possible, then live traffic paced to the
    wall clock, until `stop` is set. Each part has its own seed, so no event id repeats."""
    seed = time.time_ns() % 1_000_000
    now_ms = time.time_ns() // 1_000_000
    if history_ms > 0:
        config = SimConfig(seed=seed, start_ms=now_ms - history_ms, rate=rate)
        if not _send(Plan(config, duration_ms=history_ms).messages(), bootstrap, stop):
            return
    live = Plan(SimConfig(seed=seed + 1, start_ms=time.time_ns() // 1_000_000, rate=rate))
    _send(paced(live.messages()), bootstrap, stop)
