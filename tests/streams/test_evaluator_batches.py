"""The evaluator reads its rules' counts for batches of grid points; at every point they must
equal the single-point queries (sinks.alert_queries.timely_dropoff, contact_alert_counts and a plain
count of funnel entries) on the same stored rows, live (one point due at a time) and catching up
(many points due at once), across tau refreshes and gaps in the grid."""

from __future__ import annotations

from typing import Any

import pytest

from cxpulse.schemas.times import ch_time
from cxpulse.sinks import alert_queries
from cxpulse.sinks.store import ChdbStore
from cxpulse.streams import alerting
from cxpulse.streams.alerting import Observation
from cxpulse.streams.evaluator import AlertConfig, AlertEvaluator
from cxpulse.streams.funnels import load_funnels
from cxpulse.streams.simulator.config import Incident, SimConfig
from tests.support.history import load_history

MINUTE = 60_000
HOUR = 60 * MINUTE
NOW_MS = 1_795_500_000_000  # on the 30 s grid
START = NOW_MS - 5 * HOUR
FUNNELS = load_funnels()
# A short baseline keeps the test quick; the batches do not depend on its length.
CONFIG = AlertConfig(baseline_ms=2 * HOUR, window_ms=15 * MINUTE, no_data_ms=5 * MINUTE)


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Any:
    store = ChdbStore(tmp_path_factory.mktemp("batches") / "chdb", "cxpulse_test")
    incident = Incident(step="diagnose", segment={"device": "mobile"}, start_ms=START + 3 * HOUR,
                        end_ms=START + 4 * HOUR, extra_dropoff=0.3)  # fmt: skip
    config = SimConfig(seed=5, start_ms=START, rate=3.0, incidents=(incident,))
    load_history(store, config, 5 * HOUR, NOW_MS, list(FUNNELS))
    yield store
    store.close()


def _direct(evaluator: AlertEvaluator, at: int) -> list[Observation]:
    """The observations at `at` from the single-point queries (with the evaluator's taus)."""
    store, c = evaluator.store, evaluator.config
    out: list[Observation] = []
    for funnel in FUNNELS:
        taus = evaluator._taus(funnel, at)
        rows = alert_queries.timely_dropoff(
            store, funnel.name, taus, at, window_ms=c.window_ms, baseline_ms=c.baseline_ms,
            span_ms=funnel.window_ms, segment_attrs=c.segment_attrs,
        )  # fmt: skip
        steps = [s.name for s in funnel.steps]
        out += alerting.dropoff_observations(funnel.name, steps, rows)
        (counts,) = store.query(
            "SELECT countIf(entered_at >= {mid:DateTime64(3, 'UTC')}) AS seen, "
            "countIf(entered_at < {mid:DateTime64(3, 'UTC')}) AS base "
            "FROM journey_funnels FINAL WHERE funnel = {f:String} AND "
            "entered_at >= {lo:DateTime64(3, 'UTC')} AND entered_at < {hi:DateTime64(3, 'UTC')}",
            {"f": funnel.name, "lo": ch_time(at - c.no_data_ms - c.baseline_ms),
             "mid": ch_time(at - c.no_data_ms), "hi": ch_time(at)},
        )  # fmt: skip
        out.append(alerting.no_data_observation(funnel.name, steps[0], int(counts["seen"]),
                                                int(counts["base"]), c.no_data_ms,
                                                c.baseline_ms))  # fmt: skip
    rows = alert_queries.contact_alert_counts(
        store, at, settle_ms=c.contact_settle_ms, window_ms=c.window_ms,
        baseline_ms=c.baseline_ms, segment_columns=c.contact_segments,
    )  # fmt: skip
    return out + alerting.contact_observations(rows, c.service_level_target)


def _key(o: Observation) -> tuple[Any, ...]:
    return (o.id, o.window_hits, o.window_n, o.base_hits, o.base_n, o.gate, o.expected)


def _points() -> list[int]:
    """60 grid points over the incident's start: 50 in a row (five tau refreshes), a gap, and
    10 more."""
    first = START + 3 * HOUR - 15 * MINUTE
    points = [first + i * 30_000 for i in range(50)]
    return points + [points[-1] + 47 * 30_000 + i * 30_000 for i in range(10)]


@pytest.mark.parametrize("catching_up", [False, True], ids=["live", "catching-up"])
def test_batched_counts_equal_the_single_point_queries(history: ChdbStore,
                                                       catching_up: bool) -> None:  # fmt: skip
    evaluator = AlertEvaluator(history, FUNNELS, CONFIG)
    points = _points()
    compared = fired = 0
    for at in points:
        # Live, only `at` is known complete; catching up, every point to the end is.
        evaluator._complete_to = points[-1] if catching_up else at
        got = sorted(map(_key, evaluator.observe(at)))
        assert got == sorted(map(_key, _direct(evaluator, at))), at
        compared += len(got)
        fired += sum(1 for o in got if o[0].startswith("dropoff") and o[2] >= 30)
    assert compared > 60 * 100  # steps x segments, contacts and no_data at every point
    assert fired > 60 * 20  # most windows are big enough to be tested


def test_the_batches_read_far_fewer_rows_than_a_query_per_point(history: ChdbStore) -> None:
    """Catching up 50 points costs 5 batches per rule, not 50 baseline scans."""
    calls: list[str] = []
    evaluator = AlertEvaluator(history, FUNNELS, CONFIG)
    original = history.query

    def query(sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        calls.append(sql)
        return original(sql, params)

    history.query = query  # type: ignore[method-assign]
    try:
        points = _points()[:50]
        evaluator._complete_to = points[-1]
        for at in points:
            evaluator.observe(at)
    finally:
        del history.query
    # Per 10 points: a batch for drop-off, no_data and contacts, and one p90 estimate.
    assert len(calls) == 5 * 4, len(calls)
