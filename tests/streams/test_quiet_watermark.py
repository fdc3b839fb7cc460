"""The journey stage's freshness watermark (design section 5): a partition with input is
complete up to its newest event time minus the allowed lateness; a quiet one (no keyed message
for QUIET_MS, no consumer lag) up to the wall clock minus the lateness, written by `tick`, so the
alert evaluator goes on when traffic stops."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest

from cxpulse.schemas.deadletters import Source
from cxpulse.schemas.times import ch_time
from cxpulse.streams import metrics, topics
from cxpulse.streams.funnels import load_funnels
from cxpulse.streams.ingest import encode_batch, route
from cxpulse.streams.simulator.config import SimConfig
from cxpulse.streams.simulator.run import Plan
from cxpulse.streams.stage import ALLOWED_LATENESS_MS, QUIET_MS, TAKEOVER_QUIET_MS, JourneyStage
from tests.support.history import Collector

T0 = 1_795_500_000_000


class Clock:
    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def lag() -> Iterator[Any]:
    """The consumer-lag gauge the worker sets per keyed partition, removed afterwards."""
    yield lambda partition, value: metrics.CONSUMER_LAG.labels(
        "journeys", topics.KEYED.name, str(partition)).set(value)  # fmt: skip
    for partition in range(4):
        with contextlib.suppress(KeyError):
            metrics.CONSUMER_LAG.remove("journeys", topics.KEYED.name, str(partition))


def _stage(clock: Clock) -> tuple[JourneyStage, Collector]:
    out = Collector()
    return JourneyStage(out, load_funnels(), restore=lambda p: {}, clock=clock), out


def _feed(stage: JourneyStage, end_ms: int, seed: int = 3) -> dict[int, int]:
    """Ten minutes of traffic ending at `end_ms` into two partitions; returns each one's newest
    event time."""
    plan = Plan(SimConfig(seed=seed, start_ms=end_ms - 600_000, rate=2.0), duration_ms=600_000)
    raws = [(m.value, Source("cx.portal.v1", 0, i)) for i, m in enumerate(plan.messages())]
    for partition, pieces in route(raws, 2, end_ms).keyed.items():
        for piece in pieces:
            stage.process(partition, encode_batch(piece))
    assert all(end_ms - 60_000 < stage.newest_ms[p] <= end_ms for p in (0, 1))
    return dict(stage.newest_ms)


def _freshness(out: Collector) -> dict[int, dict[str, Any]]:
    """The last freshness row sent per partition; clears what was sent."""
    rows = {row["partition"]: row for topic, _, row, _ in out.messages
            if topic == topics.STORE_FRESHNESS.name}  # fmt: skip
    out.messages.clear()
    return rows


def test_a_partition_with_input_is_complete_to_its_newest_event_minus_lateness(lag: Any) -> None:
    clock = Clock(T0)
    stage, out = _stage(clock)
    newest = _feed(stage, T0 - 60_000)  # a minute behind the wall clock
    rows = _freshness(out)
    assert set(rows) == set(newest) == {0, 1}
    for partition, row in rows.items():
        assert row["newest_event_at"] == ch_time(newest[partition])
        assert row["watermark_at"] == ch_time(newest[partition] - ALLOWED_LATENESS_MS)


def test_a_quiet_partition_follows_the_wall_clock_unless_it_lags(lag: Any) -> None:
    clock = Clock(T0)
    stage, out = _stage(clock)
    newest = _feed(stage, T0)
    for partition in newest:
        lag(partition, 0)
    _freshness(out)
    clock.now = T0 + QUIET_MS - 1
    stage.tick()
    assert _freshness(out) == {}  # not quiet yet: nothing new to say
    lag(1, 250)  # partition 1 has input waiting that this worker has not consumed
    clock.now = T0 + QUIET_MS + 60_000
    stage.tick()
    rows = _freshness(out)
    assert set(rows) == {0}
    assert rows[0]["watermark_at"] == ch_time(clock.now - ALLOWED_LATENESS_MS)
    assert rows[0]["newest_event_at"] == ch_time(newest[0])  # freshness still shows the gap
    assert rows[0]["updated_at"] == ch_time(clock.now)
    # New input makes it a partition with input again: its watermark moves back to its newest
    # event time minus the lateness (a minute before the wall clock here).
    newest = _feed(stage, clock.now - 60_000, seed=4)
    row = _freshness(out)[0]
    assert row["watermark_at"] == ch_time(newest[0] - ALLOWED_LATENESS_MS)
    assert row["watermark_at"] < ch_time(clock.now - ALLOWED_LATENESS_MS)
    clock.now += 5_000
    stage.tick()
    assert _freshness(out) == {}


def test_an_owned_partition_without_any_input_turns_quiet_after_takeover_quiet_ms(
    lag: Any,
) -> None:
    clock = Clock(T0)
    stage, out = _stage(clock)
    lag(2, 99)  # left from an earlier owning of partition 2: nothing consumed since says more
    stage.install(2, {})
    stage.tick()  # owned since now
    clock.now = T0 + TAKEOVER_QUIET_MS - 1
    stage.tick()
    assert _freshness(out) == {}  # a backlog would have been fetched by now: not yet sure
    clock.now = T0 + TAKEOVER_QUIET_MS
    stage.tick()
    assert _freshness(out)[2]["watermark_at"] == ch_time(
        T0 + TAKEOVER_QUIET_MS - ALLOWED_LATENESS_MS
    )
    # Given up and taken back later: quiet again only QUIET_MS after it was taken back.
    stage.forget({2})
    clock.now += 3_600_000
    stage.install(2, {})
    stage.tick()
    assert _freshness(out) == {}
