"""Simulated history through the real journey stage (no Kafka) into a store, quickly."""

from __future__ import annotations

from typing import Any

from cxpulse.schemas.deadletters import Source
from cxpulse.sinks.migrate import migrate
from cxpulse.sinks.store import Store
from cxpulse.streams.funnels import FunnelSpec
from cxpulse.streams.ingest import encode_batch, route
from cxpulse.streams.simulator.config import SimConfig
from cxpulse.streams.simulator.run import Plan
from cxpulse.streams.stage import JourneyStage
from tests.support.rows import insert_sent_rows


class Collector:
    """The stage's output, as the Kafka producer would carry it."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, Any, Any, int | None]] = []

    def send(self, topic: str, key: Any, value: Any, partition: int | None = None) -> None:
        self.messages.append((topic, key, value, partition))


def load_history(
    store: Store,
    config: SimConfig,
    duration_ms: int,
    now_ms: int,
    funnels: list[FunnelSpec],
    batch: int = 5000,
) -> int:
    """Simulate `duration_ms` of traffic, run it through the journey stage with the clock at
    `now_ms` (journeys quiet for 30 min close), and store the snapshot rows; returns the number
    of events."""
    out = Collector()
    stage = JourneyStage(out, funnels, restore=lambda p: {}, clock=lambda: now_ms)
    raws = [m.value for m in Plan(config, duration_ms=duration_ms).messages()]
    for start in range(0, len(raws), batch):
        pieces = raws[start : start + batch]
        chunk = [(raw, Source("cx.portal.v1", 0, i)) for i, raw in enumerate(pieces)]
        for partition, keyed in route(chunk, 4, now_ms).keyed.items():
            for piece in keyed:
                stage.process(partition, encode_batch(piece))
    stage.tick()
    migrate(store)
    insert_sent_rows(store, out.messages)
    return len(raws)
