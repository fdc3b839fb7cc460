"""A short-lived result cache with single flight, so a dashboard's polling costs one query.

Thirty-two panels or viewers asking for the same figures within a second would otherwise run
thirty-two identical store queries one after another (chdb serialises them). Here the first
request for a key computes it, requests arriving meanwhile wait for that same computation, and
later ones reuse the result until it is `ttl_s` old, counted from when its computation started:
a response never carries figures from a query that started more than `ttl_s` before the
request (one that joins a query in flight gets that query's result). A key still asked for in
the second half of its life is recomputed in the background, so steady polling never waits.
Errors are never kept: the requests waiting on a failed computation get its error, the next
request tries again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)


class _Flight(Generic[T]):
    """One computation in progress and the requests waiting for it."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: T | None = None
        self.error: BaseException | None = None
        self.stale = False  # its key was forgotten while it ran: its value is not kept

    def result(self) -> T:
        self.done.wait()
        if self.error is not None:
            raise self.error
        return self.value  # type: ignore[return-value]


class ResultCache(Generic[T]):
    """Values by key for `ttl_s` seconds (0: no caching, every call computes), thread-safe.

    At most `max_entries` are kept (expired ones are dropped first), so requests for ever new
    ranges cannot grow it without bound. Values must not be None (None means "not cached").
    """

    def __init__(
        self, ttl_s: float, max_entries: int = 1024, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        # key -> (computation started at, value). Every entry lives ttl_s, so insertion order is
        # about expiry order: pruning drops from the front (reads check every entry's age).
        self._entries: dict[Hashable, tuple[float, T]] = {}
        self._flights: dict[Hashable, _Flight[T]] = {}

    def fresh(self, key: Hashable, compute: Callable[[], T]) -> T | None:
        """The cached value while it is fresh, else None; never waits (the event loop's path).

        Past half its life, the first caller also starts recomputing it in the background: a
        key that keeps being asked for is replaced before it expires, so no request waits for
        its query, and none is served a value older than `ttl_s`.
        """
        now = self._clock()
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry[0] + self.ttl_s <= now:
                return None
            if now - entry[0] < self.ttl_s / 2 or key in self._flights:
                return entry[1]
            flight = self._flights[key] = _Flight()
        refresh = threading.Thread(
            target=self._refresh, args=(key, compute, flight, now), name="api-cache", daemon=True
        )
        refresh.start()
        return entry[1]

    def get(self, key: Hashable, compute: Callable[[], T]) -> T:
        """The fresh value of `key`, else the result of the one computation in flight for it,
        else `compute()` (blocking: call it from a worker thread)."""
        if self.ttl_s <= 0:
            return compute()
        with self._lock:
            now = self._clock()
            entry = self._entries.get(key)
            if entry is not None and entry[0] + self.ttl_s > now:
                return entry[1]
            flight = self._flights.get(key)
            if flight is None:
                flight = self._flights[key] = _Flight()
                leader = True
            else:
                leader = False
        if not leader:
            return flight.result()
        return self._compute(key, compute, flight, now)

    def _compute(
        self, key: Hashable, compute: Callable[[], T], flight: _Flight[T], started: float
    ) -> T:
        try:
            value = compute()
        except BaseException as exc:
            with self._lock:
                del self._flights[key]
            flight.error = exc
            flight.done.set()
            raise
        with self._lock:
            del self._flights[key]
            self._entries.pop(key, None)
            if not flight.stale:
                self._entries[key] = (started, value)
            self._prune()
        flight.value = value
        flight.done.set()
        return value

    def forget(self, key: Hashable) -> None:
        """Drop `key` after a write changed what it holds: the next request computes it anew
        (a computation already running answers its own waiters, but is not kept)."""
        with self._lock:
            self._entries.pop(key, None)
            flight = self._flights.get(key)
            if flight is not None:
                flight.stale = True

    def _refresh(
        self, key: Hashable, compute: Callable[[], T], flight: _Flight[T], started: float
    ) -> None:
        try:
            self._compute(key, compute, flight, started)
        except Exception as exc:  # the entry stays until it expires; then a request retries
            log.warning("refreshing the cached %r failed: %s", key, exc)

    def _prune(self) -> None:
        now = self._clock()
        while self._entries:
            oldest = next(iter(self._entries))
            if (
                self._entries[oldest][0] + self.ttl_s > now
                and len(self._entries) <= self.max_entries
            ):
                return
            del self._entries[oldest]

    def __len__(self) -> int:
        return len(self._entries)
