"""A simulation run: clean traffic cut to a count or duration, noise on top, and its ground truth.

The ground truth is computed from the messages actually produced, validated by the event
contract and deduplicated by event_id, never from what the generator meant to do.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from cxpulse.schemas.validate import Rejection, validate
from cxpulse.streams.simulator.clock import parse_ms
from cxpulse.streams.simulator.config import SimConfig
from cxpulse.streams.simulator.groundtruth import compute_ground_truth
from cxpulse.streams.simulator.noise import Message, NoiseConfig, add_noise
from cxpulse.streams.simulator.scenario import DEFAULT_FUNNEL, FUNNEL_STEP
from cxpulse.streams.simulator.stream import generate
from cxpulse.streams.simulator.truth_events import DEFAULT_CONFIG, GroundTruthConfig, epoch_ms
from cxpulse.streams.simulator.truth_scenario import Questions


@dataclass(frozen=True)
class Plan:
    config: SimConfig
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    count: int | None = None  # clean events
    duration_ms: int | None = None

    def messages(self) -> Iterator[Message]:
        events: Iterator[dict[str, Any]] = generate(self.config)
        if self.duration_ms is not None:
            end_ms = self.config.start_ms + self.duration_ms
            events = itertools.takewhile(lambda e: parse_ms(e["occurred_at"]) < end_ms, events)
        if self.count is not None:
            events = itertools.islice(events, self.count)
        return add_noise(events, self.noise, seed=self.config.seed)


def _precedence(doc: dict[str, Any]) -> tuple[int, bytes]:
    return epoch_ms(doc["occurred_at"]), orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)


@dataclass
class GroundTruthCollector:
    """The distinct valid events of the messages it sees, as the pipeline accepts them."""

    events: dict[str, dict[str, Any]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def observe(self, message: Message, now_ms: int | None = None) -> None:
        received = time.time_ns() // 1_000_000 if now_ms is None else now_ms
        outcome = validate(message.value, received)
        if isinstance(outcome, Rejection):
            kind = "dead_lettered"
        elif outcome.event_id in self.events:
            kind = "duplicates"
            # Copies that differ keep the earliest (docs/decisions.md, "Conflicting copies");
            # ties are broken here by the sorted JSON, which agrees with the worker's canonical
            # form only where the copies' times differ: the simulator's conflicts do.
            doc, kept = orjson.loads(message.value), self.events[outcome.event_id]
            if _precedence(doc) < _precedence(kept):
                self.events[outcome.event_id] = doc
        else:
            kind = "accepted"
            self.events[outcome.event_id] = orjson.loads(message.value)
        self.counts[kind] = self.counts.get(kind, 0) + 1

    def ground_truth(
        self,
        funnels: Sequence[dict[str, Any]],
        as_of_ms: int | None = None,
        questions: Questions | None = None,
        config: GroundTruthConfig = DEFAULT_CONFIG,
    ) -> dict[str, Any]:
        truth = compute_ground_truth(
            self.events.values(), funnels, as_of_ms=as_of_ms, config=config, questions=questions
        )
        return {"messages": dict(self.counts), **truth}


def questions_of(config: SimConfig, window_ms: int, now_ms: int) -> Questions:
    """What the ground truth answers about a run's changes and experiments: each change's impact
    as of `now_ms`, and over the run's [start, now) each experiment's comparison (control = its
    first value) and the drivers of every step a change or experiment acts on."""
    steps = [FUNNEL_STEP[c.step] for c in config.changes]
    steps += [FUNNEL_STEP[e.step] for e in config.experiments]
    return Questions(
        changes=tuple(change.record() for change in config.changes),
        window_ms=window_ms,
        now_ms=now_ms,
        experiments=tuple((e.attr, e.values[0]) for e in config.experiments),
        funnel=DEFAULT_FUNNEL,
        driver_steps=tuple(dict.fromkeys(steps)),
        start_ms=config.start_ms,
        end_ms=now_ms,
    )
