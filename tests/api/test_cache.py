"""The API's result cache: expiry, single flight, separate keys, errors never kept, refresh
ahead of expiry, bounded size. A fake clock decides every age, so nothing depends on timing."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from cxpulse.api.cache import ResultCache

N = 16


class Clock:
    """A settable clock that also lets a test wait until it has been read `n` times (each
    cache call reads it once under the cache's lock, before it decides to compute or wait)."""

    def __init__(self) -> None:
        self.now = 100.0
        self.reads = 0
        self._changed = threading.Condition()

    def __call__(self) -> float:
        with self._changed:
            self.reads += 1
            self._changed.notify_all()
        return self.now

    def wait_for_reads(self, n: int) -> None:
        with self._changed:
            assert self._changed.wait_for(lambda: self.reads >= n, timeout=30), "callers stuck"


class Counting:
    """A computation that counts its calls and returns (or raises) what it is told."""

    def __init__(self, value: str = "v") -> None:
        self.calls = 0
        self.value = value
        self.error: Exception | None = None
        self.before: Callable[[], None] = lambda: None

    def __call__(self) -> str:
        self.calls += 1
        self.before()
        if self.error is not None:
            raise self.error
        return f"{self.value}{self.calls}"


def _all_at_once(cache: ResultCache[str], compute: Counting) -> list[str | Exception]:
    """N threads ask for one key together; the computation holds until all N are inside."""
    clock = cache._clock
    assert isinstance(clock, Clock)
    reads = clock.reads
    compute.before = lambda: clock.wait_for_reads(reads + N)
    results: list[str | Exception] = []

    def ask() -> None:
        try:
            results.append(cache.get("k", compute))
        except Exception as exc:
            results.append(exc)

    threads = [threading.Thread(target=ask) for _ in range(N)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return results


def test_a_value_is_reused_until_it_expires() -> None:
    clock, compute = Clock(), Counting()
    cache: ResultCache[str] = ResultCache(2.0, clock=clock)
    assert cache.get("k", compute) == "v1"
    clock.now += 1.9
    assert cache.get("k", compute) == "v1"
    clock.now += 0.1  # 2 s after the computation started: expired
    assert cache.get("k", compute) == "v2"
    assert compute.calls == 2


def test_concurrent_identical_requests_share_one_computation() -> None:
    compute = Counting()
    cache: ResultCache[str] = ResultCache(2.0, clock=Clock())
    assert _all_at_once(cache, compute) == ["v1"] * N
    assert compute.calls == 1


def test_different_keys_are_different_entries() -> None:
    cache: ResultCache[str] = ResultCache(2.0, clock=Clock())
    mobile, desktop = Counting("mobile"), Counting("desktop")
    assert cache.get(("summary", "mobile"), mobile) == "mobile1"
    assert cache.get(("summary", "desktop"), desktop) == "desktop1"
    assert cache.get(("summary", "mobile"), mobile) == "mobile1"
    assert (mobile.calls, desktop.calls, len(cache)) == (1, 1, 2)


def test_errors_reach_the_waiting_requests_and_are_not_kept() -> None:
    compute = Counting()
    compute.error = RuntimeError("store down")
    cache: ResultCache[str] = ResultCache(2.0, clock=Clock())
    results = _all_at_once(cache, compute)
    assert len(results) == N
    assert all(isinstance(r, RuntimeError) for r in results)
    assert compute.calls == 1
    compute.error = None
    assert cache.get("k", compute) == "v2"  # the next request tries again at once
    assert compute.calls == 2


def test_a_value_asked_for_in_its_second_half_is_refreshed_in_the_background() -> None:
    clock, compute = Clock(), Counting()
    cache: ResultCache[str] = ResultCache(2.0, clock=clock)
    assert cache.get("k", compute) == "v1"
    clock.now += 0.5
    assert cache.fresh("k", compute) == "v1"  # first half: served, nothing started
    assert compute.calls == 1
    clock.now += 0.7
    assert cache.fresh("k", compute) == "v1"  # second half: served, and recomputed meanwhile
    clock.now += 1.0  # the first value has expired; the refresh started 1.2 s in is fresh
    assert cache.get("k", Counting("never")) == "v2"  # waits for the refresh if still running
    assert compute.calls == 2
    clock.now += 2.0
    assert cache.fresh("k", compute) is None  # never served past its age


def test_zero_seconds_turns_caching_off() -> None:
    compute = Counting()
    cache: ResultCache[str] = ResultCache(0, clock=Clock())
    assert [cache.get("k", compute) for _ in range(3)] == ["v1", "v2", "v3"]
    assert cache.fresh("k", compute) is None
    assert len(cache) == 0


@pytest.mark.parametrize("expired", [False, True])
def test_the_cache_is_bounded_and_drops_the_oldest_first(expired: bool) -> None:
    clock = Clock()
    cache: ResultCache[str] = ResultCache(2.0, max_entries=3, clock=clock)
    for key in range(3):
        cache.get(key, Counting(str(key)))
    if expired:
        clock.now += 5
    cache.get(3, Counting("3"))
    assert len(cache) == (1 if expired else 3)
    assert cache.fresh(0, Counting()) is None
    assert cache.fresh(3, Counting()) == "31"
