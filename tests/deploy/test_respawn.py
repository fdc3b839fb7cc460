"""`cxpulse up` starts its worker again when it exits to have its work redone, but not forever."""

from __future__ import annotations

import subprocess
import sys

from cxpulse.deploy import children
from cxpulse.deploy.children import MAX_RESTARTS, REDO_EXIT, Respawned


def _exiting(codes: list[int]) -> Respawned:
    started: list[int] = []

    def start() -> subprocess.Popen[bytes]:
        code = codes[min(len(started), len(codes) - 1)]
        started.append(code)
        return subprocess.Popen([sys.executable, "-c", f"raise SystemExit({code})"])

    return Respawned(start)


def _settle(workers: Respawned) -> str | None:
    """check() until it reports a failure or has a running worker after a restart."""
    for _ in range(50):
        workers.proc.wait(timeout=30)
        failure = workers.check()
        if failure is not None:
            return failure
    raise AssertionError("never settled")


def test_a_worker_that_exits_to_redo_its_work_is_started_again_until_it_loops() -> None:
    workers = _exiting([REDO_EXIT])
    failure = _settle(workers)
    assert len(workers.restarts) == MAX_RESTARTS
    assert failure == (
        f"the worker exited with code {REDO_EXIT} ({MAX_RESTARTS} restarts in "
        f"{children.RESTART_WINDOW_S:.0f} s); see its log"
    )


def test_any_other_exit_stops_the_stack_at_once() -> None:
    workers = _exiting([REDO_EXIT, 1])
    assert _settle(workers) == "the worker exited with code 1; see its log"
    assert len(workers.restarts) == 1


def test_a_running_worker_is_left_alone() -> None:
    workers = Respawned(
        lambda: subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    )
    try:
        assert workers.check() is None
        assert workers.restarts == []
    finally:
        workers.proc.kill()
        workers.proc.wait()
