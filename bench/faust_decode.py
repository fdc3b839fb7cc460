"""The faust ceiling of `bench.worker_throughput`: an agent that only decodes, one event per
message, over the input topics; run as its own process (faust owns the event loop and signals).

Usage: python -m bench.faust_decode BOOTSTRAP DATADIR. Every second it prints a JSON line
(starting with `{"events"`): events decoded so far and the perf_counter times of the first and
the latest one. It runs until SIGTERM; the parent decides when the topic is drained.
"""

from __future__ import annotations

import sys
import time

import faust
import orjson

from cxpulse.streams import topics


def main(bootstrap: str, datadir: str) -> None:
    app = faust.App("cxpulse-bench-decode", broker=f"kafka://{bootstrap}", store="memory://",
                    web_enabled=False, datadir=datadir, consumer_auto_offset_reset="earliest",
                    topic_partitions=4)  # fmt: skip
    source = app.topic(*(t.name for t in topics.INPUT_TOPICS), value_serializer="raw")
    seen = {"events": 0, "first": 0.0, "last": 0.0}

    @app.agent(source)
    async def decode(stream: faust.StreamT[bytes]) -> None:
        async for value in stream:
            orjson.loads(value)
            seen["events"] += 1
            seen["last"] = time.perf_counter()
            if seen["events"] == 1:
                seen["first"] = seen["last"]

    @app.timer(1.0)
    async def report() -> None:
        print(orjson.dumps(seen).decode(), flush=True)

    worker = faust.Worker(app, loglevel="warning", quiet=True, redirect_stdouts=False)
    worker.execute_from_commandline()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
