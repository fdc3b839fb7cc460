"""`cxpulse simulate` and `cxpulse replay`: traffic into Kafka or a JSON-lines file."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import orjson
import typer

from cxpulse.deploy.cli_common import bootstrap_or_fail, console, err, fail, load_settings

if TYPE_CHECKING:  # imported where used: the CLI starts without loading the simulator
    from cxpulse.streams.settings import Settings
    from cxpulse.streams.simulator.truth_events import GroundTruthConfig


def _progress(total: int | None, description: str) -> Any:
    """A progress display on stderr (stdout stays for results): a bar when the count is known."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    columns: list[Any] = [SpinnerColumn(), TextColumn(description)]
    if total is not None:
        columns += [BarColumn(), MofNCompleteColumn()]
    else:
        columns += [TextColumn("{task.completed:,} messages")]
    columns += [TimeElapsedColumn()]
    return Progress(*columns, console=err, transient=False)


def simulate(
    output: Annotated[
        str, typer.Option(help="'kafka', or a .jsonl file path to write instead.")
    ] = "kafka",
    rate: Annotated[float, typer.Option(help="Mean events per simulated second.", min=0.01)] = 50.0,
    count: Annotated[int | None, typer.Option(help="Stop after this many clean events.")] = None,
    duration: Annotated[
        str | None, typer.Option(help="Simulated time to cover, e.g. 30m, 6h, 7d.")
    ] = None,
    start: Annotated[
        str | None,
        typer.Option(
            help="Event time of the start: 'now', relative ('-7d') or RFC 3339. Default: now "
            "when paced, else so the generated history ends now."
        ),
    ] = None,
    fast: Annotated[
        bool, typer.Option("--fast", help="As fast as possible instead of in real time.")
    ] = False,
    seed: Annotated[int, typer.Option(help="Same seed, same traffic.")] = 42,
    incident: Annotated[
        list[str] | None,
        typer.Option(
            help="Raise drop-off at a step for a segment, repeatable: "
            "'step=troubleshoot,start=+30m,end=+90m,extra=0.2,product_line=printers'."
        ),
    ] = None,
    change: Annotated[
        list[str] | None,
        typer.Option(
            help="A portal change, repeatable: from `at` (relative to now or RFC 3339) drop-off at "
            "a step moves by `effect`, optionally for attr=value only: "
            "'at=-3d,step=diagnose,effect=-0.05[,id=sim-change-1][,attr=value]'."
        ),
    ] = None,
    experiment: Annotated[
        list[str] | None,
        typer.Option(
            help="An experiment, repeatable: customers split evenly into the values of a new "
            "attribute, each value's extra drop-off at a step: "
            "'attr=variant,values=A:B:C,step=troubleshoot,effect=B:0.1'."
        ),
    ] = None,
    impact_window: Annotated[
        str, typer.Option(help="With --ground-truth: the window of each change's impact.")
    ] = "7d",
    duplicates: Annotated[float, typer.Option(help="Share of events sent twice.")] = 0.0,
    out_of_order: Annotated[float, typer.Option(help="Share delayed up to 30 s.")] = 0.0,
    late: Annotated[float, typer.Option(help="Share delayed minutes to hours.")] = 0.0,
    malformed: Annotated[float, typer.Option(help="Share followed by a malformed message.")] = 0.0,
    ground_truth: Annotated[
        Path | None, typer.Option(help="Write the exact final figures of what was sent here.")
    ] = None,
) -> None:
    """Generate realistic portal and contact-center traffic (with optional noise)."""
    import time

    from cxpulse.schemas.durations import parse_duration_ms
    from cxpulse.streams.simulator.config import (
        SimConfig,
        parse_change,
        parse_experiment,
        parse_incident,
        parse_time_ms,
    )
    from cxpulse.streams.simulator.noise import NoiseConfig
    from cxpulse.streams.simulator.output import paced, send_to_kafka, write_jsonl
    from cxpulse.streams.simulator.run import GroundTruthCollector, Plan, questions_of
    from cxpulse.streams.simulator.truth_funnels import load_funnels

    now_ms = time.time_ns() // 1_000_000
    try:
        duration_ms = parse_duration_ms(duration) if duration else None
        span_ms = duration_ms or (int(count / rate * 1000) if count else 0)
        default_start = "now" if not fast else f"-{span_ms}ms"
        start_ms = parse_time_ms(start or default_start, now_ms)
        incidents = tuple(parse_incident(text, start_ms, now_ms) for text in incident or [])
        changes = tuple(parse_change(text, n, now_ms) for n, text in enumerate(change or [], 1))
        experiments = tuple(parse_experiment(text) for text in experiment or [])
        window_ms = parse_duration_ms(impact_window)
        if window_ms <= 0:
            raise ValueError("--impact-window must be longer than 0")
        noise = NoiseConfig(
            duplicates=duplicates, out_of_order=out_of_order, late=late, malformed=malformed
        )
        config = SimConfig(
            seed=seed,
            start_ms=start_ms,
            rate=rate,
            incidents=incidents,
            changes=changes,
            experiments=experiments,
        )
        plan = Plan(config, noise, count, duration_ms)
    except ValueError as exc:
        raise fail(str(exc)) from exc
    if ground_truth is not None and count is None and duration_ms is None:
        raise fail("--ground-truth needs --count or --duration (the run must end)")
    messages = plan.messages() if fast else paced(plan.messages())
    collector = GroundTruthCollector() if ground_truth is not None else None
    with contextlib.ExitStack() as stack:
        if output == "kafka":
            sent = send_to_kafka(messages, bootstrap_or_fail(load_settings()))
        else:
            sent = write_jsonl(messages, stack.enter_context(Path(output).open("wb")))
        progress = stack.enter_context(_progress(count, f"simulating to {output}"))
        task = progress.add_task("send", total=count)
        try:
            for message in sent:
                if collector is not None:
                    collector.observe(message, now_ms)
                if message.kind == "event":
                    progress.advance(task)
        except KeyboardInterrupt:
            err.print("stopped.")
    if collector is not None and ground_truth is not None:
        # Impact and the experiments' range end when the run does (a paced run ends after now).
        finished_ms = time.time_ns() // 1_000_000
        truth = collector.ground_truth(
            load_funnels(),
            questions=questions_of(config, window_ms, finished_ms),
            config=_truth_config(load_settings()),
        )
        ground_truth.write_bytes(orjson.dumps(truth, option=orjson.OPT_INDENT_2))
        console.print(f"ground truth of {len(collector.events):,} distinct events: {ground_truth}")


def _truth_config(settings: Settings) -> GroundTruthConfig:
    """The ground truth under the windows and costs the stack is configured with, so a stack
    started with other windows agrees with its own truth file."""
    from cxpulse.streams.simulator.truth_events import GroundTruthConfig

    w = settings.windows()
    return GroundTruthConfig(
        gap_ms=w.gap_ms,
        escalation_window_ms=w.escalation_window_ms,
        ivr_followup_ms=w.ivr_followup_ms,
        fcr_window_ms=w.fcr_window_ms,
        short_abandon_ms=w.short_abandon_ms,
        service_level_ms=w.service_level_ms,
        assisted_cost=settings.assisted_cost,
        self_service_cost=settings.self_service_cost,
    )


def replay(
    file: Annotated[Path, typer.Argument(help="A .jsonl file written by `cxpulse simulate`.")],
    realtime: Annotated[
        bool, typer.Option("--realtime", help="Pace by event time instead of as fast as possible.")
    ] = False,
    speed: Annotated[float, typer.Option(help="With --realtime: 2 sends twice as fast.")] = 1.0,
) -> None:
    """Send a JSON-lines file of messages (or plain events) to Kafka."""
    from cxpulse.streams.simulator.output import paced, read_jsonl, send_to_kafka

    if not file.exists():
        raise fail(f"{file} does not exist")
    messages = read_jsonl(file)
    if realtime:
        messages = paced(messages, speed)
    try:
        with _progress(None, f"replaying {file}") as progress:
            task = progress.add_task("send", total=None)
            for _ in send_to_kafka(messages, bootstrap_or_fail(load_settings())):
                progress.advance(task)
    except ValueError as exc:
        raise fail(str(exc)) from exc
