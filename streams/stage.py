"""The journey stage: key state in, snapshot rows and state out. No faust, no broker.

`process` handles one keyed batch message of a partition; `tick` closes journeys whose
inactivity gap the watermark has passed. Both hand their output to a sender and say which keys'
state must be persisted; the faust agent (`app.py`) flushes all of it before acknowledging.

Watermark (design section 5) = max(newest event time seen, wall clock) - allowed lateness: live
journeys close on time, and replayed history closes as soon as it is processed.
"""

from __future__ import annotations

import dataclasses
import heapq
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

import msgspec

from cxpulse.schemas.deadletters import Source, dead_letter
from cxpulse.schemas.times import ch_time, now_ms
from cxpulse.schemas.validate import Rejection
from cxpulse.streams import metrics, topics
from cxpulse.streams.contacts import ShiftTable, default_shifts
from cxpulse.streams.frozen import Frozen, freeze, unit_records
from cxpulse.streams.funnels import FunnelSpec
from cxpulse.streams.ingest import KeyedRecord, decode_batch
from cxpulse.streams.keyed import (
    CORRUPT_INTERNAL,
    DEFAULT_KEY_LIMITS,
    KeyLimits,
    apply,
    count_bytes,
    expired_keys,
    horizon_ms,
)
from cxpulse.streams.keystate import KeyState
from cxpulse.streams.units import record_key
from cxpulse.streams.windows import DEFAULT_WINDOWS, Windows

ALLOWED_LATENESS_MS = 2 * 60_000
#: A partition with no keyed message for this long (wall clock) and no consumer lag is quiet:
#: its freshness watermark follows the wall clock (see `_freshness`).
QUIET_MS = 30_000
#: A partition taken over with nothing consumed from it since is quiet only after this long:
#: its lag is not known until a fetch returns from it, and a backlog shows up well before.
TAKEOVER_QUIET_MS = 4 * QUIET_MS
#: Keys holding more events stay live: a thaw rebuilds the whole key, so its cost must not grow
#: with a customer's history (weeks of visits); keys this small are the many short ones.
FREEZE_MAX_EVENTS = 32
#: Keys frozen per partition and tick at most (~0.3 s of work), so that a partition restored
#: with many keys (all idle at once) is frozen over several ticks, not in one long pause.
FREEZE_PER_TICK = 10_000
TABLE_TOPICS = {table: topic for topic, table in topics.STORE_TABLES.items()}


class Sender(Protocol):
    def send(
        self, topic: str, key: str | bytes | None, value: object, partition: int | None = None
    ) -> None: ...


class JourneyStage:
    """Per-partition key state and what each batch and each tick produce from it."""

    def __init__(
        self,
        output: Sender,
        funnels: Sequence[FunnelSpec],
        restore: Callable[[int], dict[str, KeyState]],
        clock: Callable[[], int] = now_ms,
        shifts: ShiftTable | None = None,
        limits: KeyLimits = DEFAULT_KEY_LIMITS,
        windows: Windows = DEFAULT_WINDOWS,
    ) -> None:
        self.output = output
        self.windows = windows
        self.limits = dataclasses.replace(limits, identities=1 + len(funnels))
        self.funnels = tuple(funnels)
        self.shifts = shifts or default_shifts()
        self.restore = restore
        self.clock = clock
        self.partitions: dict[int, dict[str, KeyState | Frozen]] = {}
        # partition -> its live (not frozen) keys, least recently touched first, with when
        self.hot: dict[int, OrderedDict[str, int]] = {}
        self.due: dict[int, list[tuple[int, str]]] = {}  # partition -> heap of (close ms, key)
        # partition -> heap of (newest event ms, key), every key once (see `expired_keys`)
        self.aging: dict[int, list[tuple[int, str]]] = {}
        self.newest_ms: dict[int, int] = {}  # partition -> newest event time processed
        self.max_event_ms = 0
        self.dirty: set[tuple[int, str]] = set()  # (partition, key) whose state must be sent
        self.open: dict[int, dict[str, int]] = {}  # partition -> key -> journeys not closed
        self.open_total = 0  # the sum of self.open, kept as it changes (summing is O(keys))
        # partition -> (wall time of its last keyed message, or of taking it over; which one)
        self.seen: dict[int, tuple[int, bool]] = {}

    # -- state ----------------------------------------------------------------------------------

    def states(self, partition: int) -> dict[str, KeyState | Frozen]:
        if partition not in self.partitions:
            self.install(partition, self.restore(partition))
        return self.partitions[partition]

    def install(self, partition: int, states: dict[str, KeyState]) -> None:
        """Take over a partition's restored state (restored off the event loop).

        A partition already installed is kept: two restores may race (assignment handler and
        first message), and the later one must not undo what was processed since the first.
        """
        if partition in self.partitions:
            return
        self.newest_ms[partition] = max((s.newest_ms for s in states.values()), default=0)
        # The watermark must not move back after a restart or rebalance.
        self.max_event_ms = max(self.max_event_ms, self.newest_ms[partition])
        for key, state in states.items():
            self._prime(key, state)
        self.partitions[partition] = states  # type: ignore[assignment]  # a dict of live keys
        # Restored keys are idle until an event reaches them: frozen from the next tick on.
        self.hot[partition] = OrderedDict.fromkeys(states, 0)
        self.due[partition] = [(s.next_due_ms, k) for k, s in states.items() if s.next_due_ms]
        heapq.heapify(self.due[partition])
        self.aging[partition] = [(s.newest_ms, k) for k, s in states.items()]
        heapq.heapify(self.aging[partition])
        self.open[partition] = {k: s.open_runs for k, s in states.items() if s.open_runs}
        self.open_total += sum(self.open[partition].values())
        self._gauge_keys()
        metrics.OPEN_JOURNEYS.set(self.open_journeys())

    def forget(self, partitions: set[int]) -> None:
        """Drop state of partitions this worker may no longer own; re-read when needed again."""
        for partition in partitions:
            self.partitions.pop(partition, None)
            self.due.pop(partition, None)
            self.aging.pop(partition, None)
            self.hot.pop(partition, None)
            self.open_total -= sum(self.open.pop(partition, {}).values())
            self.seen.pop(partition, None)
        self.dirty = {(p, key) for p, key in self.dirty if p not in partitions}
        self._gauge_keys()
        metrics.OPEN_JOURNEYS.set(self.open_journeys())

    @contextmanager
    def only(self, partition: int) -> Iterator[None]:
        """Restrict the stage to one partition for the block: `process_all`, `tick` and
        `persist` then touch and send for that partition only, so the caller can route all of
        it into that partition's transaction. What the block adds is kept afterwards."""
        views = ("partitions", "due", "aging", "newest_ms", "open", "hot")
        saved = {name: getattr(self, name) for name in views}
        for name, whole in saved.items():
            setattr(self, name, {partition: whole[partition]} if partition in whole else {})
        try:
            yield
        finally:
            for name, whole in saved.items():
                whole.update(getattr(self, name))
                setattr(self, name, whole)

    def key_count(self) -> int:
        return sum(len(states) for states in self.partitions.values())

    def frozen_count(self) -> int:
        return self.key_count() - sum(len(hot) for hot in self.hot.values())

    def open_journeys(self) -> int:
        return self.open_total

    def watermark_ms(self) -> int:
        return max(self.max_event_ms, self.clock()) - ALLOWED_LATENESS_MS

    # -- work -----------------------------------------------------------------------------------

    def process(self, partition: int, value: bytes | None, offset: int = -1) -> None:
        """One keyed batch message (see `process_all`)."""
        self.process_all([(partition, value, offset)])

    def process_all(self, messages: Sequence[tuple[int, bytes | None, int]]) -> None:
        """Keyed batch messages, each (partition, value, offset): apply them all, then refresh
        each changed key once.

        A key that several of the messages touch is rebuilt, diffed and (by `persist`) sent
        once, so catching up on a backlog costs about one refresh per key per group instead of
        one per message; the rows are the same as processing the messages one by one and then
        refreshing, since a key's rows are a function of its event set and the watermark.
        """
        changed: dict[int, set[str]] = {}
        accepted = duplicates = conflicts = 0
        for partition, value, offset in messages:
            states = self.states(partition)
            keys = changed.setdefault(partition, set())
            records = self._decode(partition, value, offset)
            if records is None:
                continue
            for record in records:
                if type(states.get(record.key)) is Frozen:
                    self._live(partition, record.key)
            outcome = apply(states, records, self.limits, self.windows)  # type: ignore[arg-type]
            keys.update(outcome.changed)
            newest = self.newest_ms.get(partition, 0)
            aging = self.aging.setdefault(partition, [])
            for key in outcome.changed:
                state = states[key]
                assert isinstance(state, KeyState)  # thawed above, or new (`_refresh` touches it)
                newest = max(newest, state.newest_ms)
                if not state.aging:  # a new key
                    heapq.heappush(aging, (state.newest_ms, key))
                    state.aging = True
            self.newest_ms[partition] = newest
            self.max_event_ms = max(self.max_event_ms, newest)
            for key, row in outcome.raw_rows:
                self.output.send(topics.STORE_EVENTS_RAW.name, key, row)
            for reason, letter in outcome.dead_letters:
                self.output.send(topics.DLQ.name, None, letter)
                metrics.DEAD_LETTERS.labels("journeys", reason).inc()
            accepted += outcome.accepted
            duplicates += outcome.duplicates
            conflicts += outcome.conflicts
        watermark = self.watermark_ms()
        for partition, keys in changed.items():
            for key in sorted(keys):
                self._refresh(partition, key, watermark)
                self.dirty.add((partition, key))
            self._freshness(partition, watermark)
        metrics.EVENTS_ACCEPTED.inc(accepted)
        metrics.DUPLICATES.inc(duplicates)
        metrics.CONFLICTS.inc(conflicts)
        if any(changed.values()):
            self._gauge_keys()
            metrics.OPEN_JOURNEYS.set(self.open_journeys())
            metrics.EVENT_LAG.set(max(0.0, (self.clock() - self.max_event_ms) / 1000))

    def _decode(self, partition: int, value: bytes | None, offset: int) -> list[KeyedRecord] | None:
        """The records of a keyed batch, or None after dead-lettering one cxpulse never wrote."""
        try:
            if value is None:  # a message without a value: cxpulse never writes one here
                raise msgspec.DecodeError("keyed message without a value")
            return decode_batch(value)
        except Exception as exc:  # not invalid JSON alone: invalid UTF-8 raises ValueError
            rejection = Rejection(CORRUPT_INTERNAL, f"keyed batch: {type(exc).__name__}: {exc}")
            source = Source(topics.KEYED.name, partition, offset)
            letter = dead_letter(rejection, value or b"", source, self.clock())
            self.output.send(topics.DLQ.name, None, letter)
            metrics.DEAD_LETTERS.labels("journeys", CORRUPT_INTERNAL).inc()
            return None

    def tick(self) -> int:
        """Re-emit keys whose open journeys the watermark has closed; forget expired keys;
        write the freshness of quiet partitions (no keyed message for QUIET_MS, no consumer
        lag), whose watermark follows the wall clock, so alerting goes on when traffic stops."""
        watermark = self.watermark_ms()
        now = self.clock()
        lags = {
            sample.labels["partition"]: sample.value
            for family in metrics.CONSUMER_LAG.collect()
            for sample in family.samples
            if sample.labels.get("topic") == topics.KEYED.name
        }
        for partition in self.partitions:
            # The lag the agent recorded at this partition's last message; nothing consumed
            # since taking it over means nothing waits (a gauge from an earlier owning is stale).
            at, consumed = self.seen.setdefault(partition, (now, False))
            wait = QUIET_MS if consumed else TAKEOVER_QUIET_MS
            if now - at >= wait and not (consumed and lags.get(str(partition))):
                self._freshness(partition, watermark, quiet=True)
        refreshed = 0
        for partition, heap in self.due.items():
            states = self.partitions[partition]
            while heap and heap[0][0] <= watermark:
                due, key = heapq.heappop(heap)
                state = states.get(key)
                if state is None or state.next_due_ms != due:
                    continue  # superseded by a later refresh
                self._refresh(partition, key, watermark)
                self.dirty.add((partition, key))
                refreshed += 1
            aging = self.aging.setdefault(partition, [])
            horizon = horizon_ms(self.clock(), self.windows)
            for key in list(expired_keys(aging, states, horizon)):
                for kind, unit in self._live(partition, key).record_ids():
                    self.output.send(
                        topics.STATE.name, record_key(key, kind, unit), None, partition
                    )
                del states[key]
                del self.hot[partition][key]
                self.open_total -= self.open.get(partition, {}).pop(key, 0)
            self._freeze_idle(partition)
        self._gauge_keys()
        metrics.OPEN_JOURNEYS.set(self.open_journeys())
        return refreshed

    # -- internals ------------------------------------------------------------------------------

    def _prime(self, key: str, state: KeyState) -> None:
        """Derive what a key restored from its records holds besides them."""
        state.prime(key, self.funnels, self.windows)
        count_bytes(state, key, self.limits.identities)
        state.aging = True  # restored keys are in the expiry heap (`install`, `_freeze_idle`)

    def _touch(self, partition: int, key: str) -> None:
        hot = self.hot.setdefault(partition, OrderedDict())
        hot[key] = self.clock()
        hot.move_to_end(key)

    def _live(self, partition: int, key: str) -> KeyState:
        """The key's state, thawed if it was frozen; either way it counts as touched now."""
        states = self.partitions[partition]
        state = states[key]
        if isinstance(state, Frozen):
            state = states[key] = KeyState.restore(unit_records(state))
            self._prime(key, state)
            metrics.THAWS.inc()
        self._touch(partition, key)
        return state

    def _freeze_idle(self, partition: int) -> None:
        """Freeze the keys untouched for `freeze_after_ms` whose state is written (`frozen.py`)."""
        hot = self.hot.get(partition)
        after = self.limits.freeze_after_ms
        if not after or not hot:
            return
        states = self.partitions[partition]
        cutoff = self.clock() - after
        for _ in range(FREEZE_PER_TICK):
            if not hot:
                break
            key, touched = next(iter(hot.items()))
            if touched > cutoff:
                break
            state = states[key]
            assert isinstance(state, KeyState)  # hot keys are live
            if (partition, key) in self.dirty or len(state.events) > FREEZE_MAX_EVENTS:
                self._touch(partition, key)  # records not sent yet, or too costly to thaw
                continue
            del hot[key]
            states[key] = freeze(state)

    def _gauge_keys(self) -> None:
        metrics.KEYS.set(self.key_count())
        metrics.FROZEN_KEYS.set(self.frozen_count())

    def _refresh(self, partition: int, key: str, watermark: int) -> None:
        """Send the rows of what changed in the key, and of its units whose time has come."""
        state = self._live(partition, key)
        # Versions only grow, also across restarts and owners (the clock moves on meanwhile).
        version = max(self.clock() * 1000, state.last_version + 1)
        changes = state.refresh(key, watermark, version, self.funnels, self.shifts, self.windows)
        for table, row in changes:
            self.output.send(TABLE_TOPICS[table], key, row)
        horizon = horizon_ms(self.clock(), self.windows)
        if state.oldest_ms() < horizon and state.prune(horizon):
            count_bytes(state, key, self.limits.identities)
        counts = self.open.setdefault(partition, {})
        self.open_total += state.open_runs - counts.pop(key, 0)
        if state.open_runs:
            counts[key] = state.open_runs
        if state.next_due_ms:
            heapq.heappush(self.due.setdefault(partition, []), (state.next_due_ms, key))

    def persist(self) -> None:
        """Send the states changed since the last call (of the partitions in view, see `only`).

        The states must never become visible before the rows of the same work: the worker
        sends both in one Kafka transaction (`app.py`); a plain producer must flush the rows
        first. A crash in between then leaves the old state, and the redelivered input
        recomputes the rows (and tombstones) instead of finding its events already present and
        sending nothing.
        """
        mine = sorted(d for d in self.dirty if d[0] in self.partitions)
        for partition, key in mine:
            state = self.partitions[partition].get(key)
            if isinstance(state, KeyState):  # gone if expired; dirty keys are never frozen
                for kind, unit, value in state.records():
                    self.output.send(
                        topics.STATE.name, record_key(key, kind, unit), value, partition
                    )
        self.dirty.difference_update(mine)

    def _freshness(self, partition: int, watermark: int, quiet: bool = False) -> None:
        """The partition's freshness row; without `quiet`, it just processed keyed input.

        `watermark_at` is the event time up to which the partition's input is complete (what
        the alert evaluator advances on): its newest event time minus the allowed lateness
        while input arrives, so a replay or backlog is judged in event time; once it is quiet
        (caught up, nothing new for QUIET_MS), the wall clock minus the lateness as well
        (design section 5), never past the stage's `watermark`. Later input may move it back.
        """
        now = self.clock()
        newest = self.newest_ms.get(partition, 0)
        if not quiet:
            self.seen[partition] = (now, True)
        complete = min(watermark, max(newest, now if quiet else 0) - ALLOWED_LATENESS_MS)
        row: dict[str, Any] = {
            "partition": partition,
            "newest_event_at": ch_time(newest),
            "watermark_at": ch_time(max(0, complete)),
            "updated_at": ch_time(now),
        }
        self.output.send(topics.STORE_FRESHNESS.name, str(partition), row)
