"""Rate calibration: how many new customers per millisecond give a target event rate.

A new customer causes events over days (contacts, repeat contacts, surveys), so the arrival rate
that yields `rate` events/s is measured, once per `Behaviour`, by running a pilot population of
the same model with a fixed seed and counting what each arrival causes over time.
"""

from __future__ import annotations

import heapq
import random
from functools import lru_cache
from typing import Any

from cxpulse.streams.simulator.behaviour import Behaviour
from cxpulse.streams.simulator.clock import DAY_MS, MINUTE_MS
from cxpulse.streams.simulator.model import Model

#: Width of the arrival-rate buckets and how far the start-up compensation looks ahead.
RATE_BUCKET_MS = 30 * MINUTE_MS
RATE_HORIZON_MS = 21 * DAY_MS
_PILOT_ROOTS = 3_000
_PILOT_SEED = 20_261_123


class _Pilot(Model):
    """Counts, per age bucket, the events a root arrival causes (itself and all follow-ups)."""

    def __init__(self, behaviour: Behaviour) -> None:
        super().__init__(behaviour, random.Random(_PILOT_SEED), "pilot")
        self.buckets = [0] * (RATE_HORIZON_MS // RATE_BUCKET_MS + 1)
        self.total = 0
        self._todo: list[tuple[int, int, int, tuple[Any, ...]]] = []
        self._seq = 0

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
        self.total += 1
        index = t // RATE_BUCKET_MS
        if index < len(self.buckets):
            self.buckets[index] += 1

    def schedule(self, t: int, kind: int, payload: tuple[Any, ...]) -> None:
        self._seq += 1
        heapq.heappush(self._todo, (t, self._seq, kind, payload))

    def run(self) -> None:
        for _ in range(_PILOT_ROOTS):
            self.root(int(self.rng.random() * RATE_BUCKET_MS))
            while self._todo:
                t, _, kind, payload = heapq.heappop(self._todo)
                self.start(t, kind, payload)


@lru_cache(maxsize=16)
def arrival_profile(behaviour: Behaviour) -> tuple[tuple[float, ...], float]:
    """Root arrivals per event-per-ms of target rate: (per start-up bucket, steady state).

    A root arrival causes E events on average, spread over days (contacts, repeat contacts,
    surveys). Arriving at rate/E from time zero would leave the first days short of follow-ups
    and the stream well below `rate`; instead the arrival rate of each 30-min bucket solves
    sum_j A[k-j] * f[j] = 1 (f[j] = events a root causes j buckets later), so the total event rate
    is flat from the start and converges to 1/E. Multiply by rate (events/ms) to use.
    """
    pilot = _Pilot(behaviour)
    pilot.run()
    f = [n / _PILOT_ROOTS for n in pilot.buckets]
    steady = _PILOT_ROOTS / pilot.total
    arrivals: list[float] = []
    for k in range(len(f)):
        carried = sum(arrivals[k - j] * f[j] for j in range(1, k + 1))
        arrivals.append(max(0.2 * steady, (1.0 - carried) / f[0]))
    return tuple(arrivals), steady
