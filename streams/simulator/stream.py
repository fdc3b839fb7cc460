"""The simulator: the behaviour model as an endless, time-ordered stream of event dicts.

How it streams: a journey's (or contact's) events are generated when it starts and pushed onto a
heap ordered by event time; the heap is drained up to the next start, so the output is in
non-decreasing `occurred_at` order. A journey or contact that runs long (a customer pausing for
hours, an email waiting for an agent) is generated in segments of SEGMENT_MS and resumed from the
start heap, and later follow-ups wait there as small start records. Memory therefore holds
in-flight work only: it grows with the rate, never with how many events have been streamed.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterator
from typing import Any

from cxpulse.schemas.events import SCHEMA_VERSION
from cxpulse.streams.simulator.calibration import RATE_BUCKET_MS, arrival_profile
from cxpulse.streams.simulator.clock import format_ms
from cxpulse.streams.simulator.config import SimConfig
from cxpulse.streams.simulator.model import Model


class Simulator(Model):
    """The endless, deterministic, time-ordered event stream of one `SimConfig`.

    Iterate it once. `pending_events` (events built, not yet yielded: about rate x SEGMENT_MS)
    and `scheduled_starts` (future journeys/contacts/surveys and paused ones, a few references
    each: about 7,500 per event/s of rate once the ~10-day follow-up horizon is reached, ~0.4 KB
    each) are the only state that grows, with the rate, not with how much has been streamed.
    """

    def __init__(self, config: SimConfig) -> None:
        rng = random.Random(config.seed)
        prefix = f"{rng.getrandbits(32):08x}"
        super().__init__(
            config.behaviour,
            rng,
            prefix,
            config.dropoff_incidents(),
            config.anonymous_share,
            config.experiments,
        )
        self.config = config
        self._pending: list[tuple[int, int, dict[str, Any]]] = []
        self._starts: list[tuple[int, int, int, tuple[Any, ...]]] = []
        self._seq = 0
        self._started = False
        profile, steady = arrival_profile(config.behaviour)
        per_ms = config.rate / 1000.0
        if config.behaviour.steady_rate_from_start:
            self._bucket_rates = tuple(a * per_ms for a in profile)
        else:
            self._bucket_rates = ()
        self.steady_arrival_rate_per_ms = steady * per_ms
        self.events_per_arrival = 1.0 / steady
        self.events_yielded = 0
        self.max_pending_events = 0
        self.max_scheduled_starts = 0

    @property
    def pending_events(self) -> int:
        return len(self._pending)

    @property
    def scheduled_starts(self) -> int:
        return len(self._starts)

    def emit(
        self,
        t: int,
        etype: str,
        customer_id: str | None,
        id_key: str,
        id_value: str,
        attrs: dict[str, str],
        data: dict[str, Any],
    ) -> None:
        self._seq += 1
        event = {
            "event_id": f"{self.rng.getrandbits(96):024x}",
            "schema_version": SCHEMA_VERSION,
            "type": etype,
            "occurred_at": format_ms(t),
            "customer_id": customer_id,
            id_key: id_value,
            "attrs": dict(attrs),
            "data": data,
        }
        heapq.heappush(self._pending, (t, self._seq, event))

    def schedule(self, t: int, kind: int, payload: tuple[Any, ...]) -> None:
        self._seq += 1
        heapq.heappush(self._starts, (t, self._seq, kind, payload))

    def _arrivals(self) -> Iterator[int]:
        """Poisson root arrivals with the piecewise-constant rate of `arrival_profile`."""
        start = self.config.start_ms
        rates = self._bucket_rates
        t = float(start)
        while True:
            k = int((t - start) // RATE_BUCKET_MS)
            if k < len(rates):
                step = self.rng.expovariate(rates[k])
                boundary = start + (k + 1) * RATE_BUCKET_MS
                if t + step >= boundary:
                    t = float(boundary)  # memoryless: redraw with the next bucket's rate
                    continue
                t += step
            else:
                t += self.rng.expovariate(self.steady_arrival_rate_per_ms)
            yield int(t)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        if self._started:
            raise RuntimeError("a Simulator streams once; create a new one to start over")
        self._started = True
        return self._run()

    def _run(self) -> Iterator[dict[str, Any]]:
        arrivals = self._arrivals()
        next_root = next(arrivals)
        pending, starts = self._pending, self._starts
        pop = heapq.heappop
        while True:
            if starts and starts[0][0] < next_root:
                t, _, kind, payload = pop(starts)
                is_root = False
            else:
                t, is_root = next_root, True
            while pending and pending[0][0] <= t:
                self.events_yielded += 1
                yield pop(pending)[2]
            if is_root:
                self.root(t)
                next_root = next(arrivals)
            else:
                self.start(t, kind, payload)
            if len(pending) > self.max_pending_events:
                self.max_pending_events = len(pending)
            if len(starts) > self.max_scheduled_starts:
                self.max_scheduled_starts = len(starts)


def generate(config: SimConfig) -> Iterator[dict[str, Any]]:
    """Endless clean events of `config`, in non-decreasing occurred_at order (see Simulator)."""
    return iter(Simulator(config))
