"""Sampling profiles of a running worker with py-spy: where its threads spend their time.

py-spy reads the process from outside (no instrumentation, `--nonblocking`), so the worker runs
at nearly full speed and the profile is of the real pipeline, Kafka clients included, not of a
stage replayed in process. The raw output (one line per distinct stack with its sample count)
is summarised per thread and per function: own samples (the frame on top) and inclusive ones.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

RATE_HZ = 100
_SOURCE = re.compile(r" \((?:.*/site-packages/|.*/cxpulse/|/.*/main/)?([^()]*)\)$")


def py_spy() -> str:
    """The py-spy executable beside this interpreter (a dev dependency), or on PATH."""
    beside = Path(sys.executable).with_name("py-spy")
    found = str(beside) if beside.exists() else shutil.which("py-spy")
    if found is None:
        raise RuntimeError("py-spy is not installed: run `make setup` (it is a dev dependency)")
    return found


@contextmanager
def sampling(pid: int, out: Path) -> Iterator[None]:
    """Sample `pid` with py-spy until the block ends; the raw profile is written to `out`."""
    command = [py_spy(), "record", "--pid", str(pid), "--rate", str(RATE_HZ), "--nonblocking",
               "--threads", "--function", "--format", "raw", "--output", str(out)]  # fmt: skip
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        yield
    finally:
        proc.send_signal(2)  # SIGINT: py-spy writes what it has and exits
        _, err = proc.communicate(timeout=60)
        if not out.exists():
            raise RuntimeError(f"py-spy wrote no profile: {err.decode(errors='replace')}")


def _frame(frame: str) -> str:
    """`function (path/to/file.py:line)` -> `function (file.py:line)`; with `--function` the
    line is the function's first, so samples add up per function."""
    return _SOURCE.sub(lambda m: f" ({Path(m.group(1)).name})", frame)


def summarise(raw: Path, top: int = 12) -> dict[str, Any]:
    """Share of samples per thread, and the functions with most own and inclusive samples."""
    threads: Counter[str] = Counter()
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        thread, *frames = stack.split(";")
        name = re.sub(r"^thread \(\d+\)(: )?", "", thread) or "unnamed"
        if name.startswith("Thread-") and "process_request_thread" in name:
            name = "metrics scrape"
        threads[name] += samples
        total += samples
        seen = {_frame(f) for f in frames}
        for frame in seen:
            inclusive[frame] += samples
        if frames:
            own[_frame(frames[-1])] += samples

    def shares(counter: Counter[str], n: int) -> list[dict[str, Any]]:
        return [{"name": k, "share": round(v / total, 3)} for k, v in counter.most_common(n)]

    return {
        "samples": total,
        "rate_hz": RATE_HZ,
        "threads": shares(threads, 8),
        "own": shares(own, top),
        "inclusive": shares(
            Counter({k: v for k, v in inclusive.items() if not _is_frame_of_runtime(k)}), top
        ),
    }


def _is_frame_of_runtime(frame: str) -> bool:
    """Entry frames every sample shares (interpreter start, event loop, CLI, threads)."""
    return bool(
        re.match(
            r"(<module>|_run_module_as_main|_run_code|main|Thread\.|BaseEventLoop\.|Handle\._run"
            r"|Typer|Command\.|Context\.invoke|TyperGroup|_main|get_callback|Worker\.|worker "
            r"|run_worker|Service|Agent\.|WorkerThread|ServiceThread|_bootstrap)",
            frame,
        )
    )
