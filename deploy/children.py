"""The worker process of `cxpulse up`: a child tied to the parent (it dies with it, even on
kill -9, and ignores the terminal's Ctrl-C so the parent stops it in order), started again when
it exits to have its work redone from Kafka."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from cxpulse.deploy.cli_common import console
from cxpulse.deploy.kafka.broker import die_with_parent

#: A worker exits with this status to have its work redone from Kafka (streams/app.py `die`):
#: it lost a partition to another worker, or a failure left its state ahead of Kafka.
REDO_EXIT = 70
#: Restarts `up` makes within RESTART_WINDOW_S before it calls it a crash loop and stops.
MAX_RESTARTS = 5
RESTART_WINDOW_S = 600.0


class Respawned:
    """The worker process of `up`, started again when it exits with REDO_EXIT."""

    def __init__(self, start: Callable[[], subprocess.Popen[bytes]]) -> None:
        self.start = start
        self.proc = start()
        self.restarts: list[float] = []

    def check(self) -> str | None:
        """None while a worker runs; what went wrong when it exited for good."""
        code = self.proc.poll()
        if code is None:
            return None
        now = time.monotonic()
        self.restarts = [t for t in self.restarts if now - t < RESTART_WINDOW_S]
        if code != REDO_EXIT or len(self.restarts) >= MAX_RESTARTS:
            again = (
                f" ({len(self.restarts)} restarts in {RESTART_WINDOW_S:.0f} s)"
                if code == REDO_EXIT
                else ""
            )
            return f"the worker exited with code {code}{again}; see its log"
        self.restarts.append(now)
        console.print(f"the worker exited with code {code} to redo its work; starting it again")
        self.proc = self.start()
        return None


def spawn_child(args: list[str], env: dict[str, str], log_file: Path) -> subprocess.Popen[bytes]:
    """A cxpulse subcommand as a child that dies with this process and ignores terminal Ctrl-C."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "cxpulse.deploy.cli", *args],
            env={**os.environ, **env},
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )


def stop_child(proc: subprocess.Popen[bytes], timeout_s: float = 30.0) -> None:
    """SIGTERM (a worker flushes and commits what it holds), SIGKILL if it takes too long."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
