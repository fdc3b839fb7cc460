"""The alert rules' queries on hand-made snapshot rows, on both store backends: which journeys
and contacts fall in the window and in the baseline, and which of them count as hits."""

from __future__ import annotations

from typing import Any

from cxpulse.schemas.times import ch_time
from cxpulse.sinks import alert_batches, alert_queries
from cxpulse.sinks.migrate import migrate
from cxpulse.sinks.store import Store

S = 1000
T = 1_790_000_000_000  # the evaluation time


def _journey(
    jid: str, entered_s_ago: int, reach_s: list[int | None], attrs: dict[str, str],
    *, funnel: str = "f", version: int = 1, deleted: int = 0,
) -> dict[str, Any]:  # fmt: skip
    entered = T - entered_s_ago * S
    return {
        "funnel": funnel, "journey_key": "k-" + jid, "journey_id": jid, "version": version,
        "is_deleted": deleted, "start_at": ch_time(entered), "entered_at": ch_time(entered),
        "closed": 0, "outcome": "in_progress", "attrs": attrs,
        "reach_ms": [None if r is None else r * S for r in reach_s],
        "last_step": 0, "dropped_step": -1, "escalated_step": -1, "abandoned_step": -1,
    }  # fmt: skip


JOURNEYS = [
    # k=1 window is [T-660 s, T-60 s) (tau 60 s, window 600 s); its baseline the hour before.
    _journey("j1", 300, [0, 30, None], {"device": "mobile"}),  # k1 in time; k2 never: dropped
    _journey("j2", 400, [0, 5, None], {"device": "mobile"}),  # replaced by version 2:
    _journey("j2", 400, [0, 90, 100], {"device": "mobile"}, version=2),  # k1 late; k2 in time
    _journey("j3", 1000, [0, None, None], {"device": "desktop"}),  # baseline, dropped at k1
    _journey("j4", 30, [0, 5, None], {"device": "mobile"}),  # too recent for any window
    _journey("j5", 5000, [0, None, None], {"device": "mobile"}),  # before the baseline
    _journey("j7", 200, [0, None, None], {"device": "mobile"}),  # tombstoned:
    _journey("j7", 200, [0, None, None], {"device": "mobile"}, version=2, deleted=1),
    _journey("j8", 300, [0, None, None], {"device": "mobile"}, funnel="g"),  # other funnel
    _journey("j9", 2000, [0, 20, 500], {"tier": "business"}),  # baseline; k2 too slow
]


def test_timely_dropoff_counts_window_and_baseline_per_step_and_segment(store: Store) -> None:
    migrate(store)
    store.insert("journey_funnels", JOURNEYS)
    rows = alert_queries.timely_dropoff(
        store, "f", {1: 60 * S, 2: 120 * S}, T, window_ms=600 * S, baseline_ms=3600 * S,
        span_ms=86_400 * S, segment_attrs=["device"],
    )  # fmt: skip
    got = {(r["k"], r["attr"], r["value"], r["window_n"], r["window_hits"], r["base_n"],
            r["base_hits"]) for r in rows}  # fmt: skip
    assert got == {
        (1, "", "", 2, 1, 2, 1),  # window j1, j2 (late: a hit); baseline j3 (hit), j9
        (1, "device", "mobile", 2, 1, 0, 0),
        (1, "device", "desktop", 0, 0, 1, 1),
        (2, "", "", 2, 1, 1, 1),  # window j1 (hit), j2; baseline j9 (480 s > 120 s: a hit)
        (2, "device", "mobile", 2, 1, 0, 0),
    }


def test_step_delay_p90_reads_only_what_was_known(store: Store) -> None:
    migrate(store)
    store.insert("journey_funnels", JOURNEYS)
    # Step 1 delays that made it: j1 30 s, j2 90 s, j4 5 s, j9 20 s -> p90 (exact, high) 90 s.
    # Step 2: j9 480 s and j2 10 s.
    assert alert_queries.step_delay_p90(store, "f", 3, T - 6000 * S, T, 86_400 * S) == {
        1: 90 * S, 2: 480 * S}  # fmt: skip
    # Up to T-390 s only j9 made step 1 (j2 made it at T-310 s: later) and j9 step 2 (T-1500 s).
    assert alert_queries.step_delay_p90(store, "f", 3, T - 6000 * S, T - 390 * S, 86_400 * S) == {
        1: 20 * S, 2: 480 * S}  # fmt: skip
    assert alert_queries.step_delay_p90(store, "f", 3, T - 6000 * S, T - 1600 * S, 86_400 * S) == {
        1: 20 * S}  # fmt: skip
    assert alert_queries.step_delay_p90(store, "f", 3, T - 6000 * S, T - 1990 * S, 86_400 * S) == {}


def _contact(
    cid: str, started_s_ago: int, queue: str, channel: str, **flags: int
) -> dict[str, Any]:
    return {"journey_key": "c-" + cid, "contact_id": cid, "version": 1, "is_deleted": 0,
            "started_at": ch_time(T - started_s_ago * S), "queue": queue, "channel": channel,
            "queued": 1, **flags}  # fmt: skip


CONTACTS = [
    _contact("c1", 400, "billing", "voice", answered=1, answered_within_sl=1),
    _contact("c2", 500, "billing", "chat", abandoned=1),
    _contact("c3", 600, "billing", "voice", abandoned=1, short_abandoned=1),
    _contact("c4", 2000, "tech", "voice", answered=1),
    _contact("c5", 100, "tech", "voice", answered=1),  # not settled yet
]


def test_contact_alert_counts(store: Store) -> None:
    migrate(store)
    store.insert("contacts", CONTACTS)
    rows = alert_queries.contact_alert_counts(
        store, T, settle_ms=300 * S, window_ms=600 * S, baseline_ms=3600 * S
    )
    got = {(r["attr"], r["value"]): tuple(int(r[c]) for c in (
        "window_sl_n", "window_sl_misses", "window_queued", "window_abandoned",
        "base_sl_n", "base_sl_misses", "base_queued", "base_abandoned")) for r in rows}  # fmt: skip
    assert got == {
        ("", ""): (2, 1, 3, 2, 1, 1, 1, 0),
        ("queue", "billing"): (2, 1, 3, 2, 0, 0, 0, 0),
        ("queue", "tech"): (0, 0, 0, 0, 1, 1, 1, 0),
        ("channel", "voice"): (1, 0, 2, 1, 1, 1, 1, 0),
        ("channel", "chat"): (1, 1, 1, 1, 0, 0, 0, 0),
    }


def test_batches_equal_the_single_point_queries_at_every_point(store: Store) -> None:
    """The evaluator's batch queries, on both backends: per grid point, the same counts as the
    single-point queries (windows for the first `known` points, baselines for all)."""
    migrate(store)
    store.insert("journey_funnels", JOURNEYS)
    store.insert("contacts", CONTACTS)
    taus = {1: 60 * S, 2: 120 * S}
    first, every, points, known = T - 1500 * S, 30 * S, 80, 50
    spans = {"window_ms": 600 * S, "baseline_ms": 3600 * S}
    dropoff = alert_batches.timely_dropoff_batch(
        store, "f", taus, first, every_ms=every, points=points, known=known, span_ms=86_400 * S,
        segment_attrs=["device", "tier"], **spans,
    )  # fmt: skip
    contacts = alert_batches.contact_alert_batch(store, first, every_ms=every, points=points,
                                           known=known, settle_ms=300 * S, **spans)  # fmt: skip
    entries = alert_batches.funnel_entries_batch(store, "f", first, every_ms=every, points=points,
                                           known=known, span_ms=600 * S,
                                           baseline_ms=3600 * S)  # fmt: skip
    moving = 0
    for j in range(points):
        at = first + j * every
        rows = alert_queries.timely_dropoff(store, "f", taus, at, span_ms=86_400 * S,
                                      segment_attrs=["device", "tier"], **spans)  # fmt: skip
        keyed = {(r["k"], r["attr"], r["value"]): r for r in rows}
        assert dropoff.baselines[j] == {
            k: (r["base_n"], r["base_hits"]) for k, r in keyed.items() if r["base_n"]
        }
        if j < known:
            assert dropoff.windows[j] == {
                k: (r["window_n"], r["window_hits"]) for k, r in keyed.items() if r["window_n"]
            }
        rows = alert_queries.contact_alert_counts(store, at, settle_ms=300 * S, **spans)
        names = ("sl_n", "sl_misses", "queued", "abandoned")
        for part, counts in (("base", contacts.baselines[j]),
                             ("window", contacts.windows[j] if j < known else None)):  # fmt: skip
            if counts is None:
                continue
            expected = {(r["attr"], r["value"]): tuple(int(r[f"{part}_{n}"]) for n in names)
                        for r in rows}  # fmt: skip
            assert {k: v[1:] for k, v in counts.items()} == {
                k: v for k, v in expected.items() if k in counts
            }
            assert all(v == (0, 0, 0, 0) for k, v in expected.items() if k not in counts)
        lo, mid = ch_time(at - 600 * S - 3600 * S), ch_time(at - 600 * S)
        (plain,) = store.query(
            "SELECT countIf(entered_at >= {mid:DateTime64(3, 'UTC')}) AS seen, "
            "countIf(entered_at < {mid:DateTime64(3, 'UTC')}) AS base FROM journey_funnels FINAL "
            "WHERE funnel = 'f' AND entered_at >= {lo:DateTime64(3, 'UTC')} "
            "AND entered_at < {at:DateTime64(3, 'UTC')}", {"lo": lo, "mid": mid, "at": ch_time(at)},
        )  # fmt: skip
        assert entries.baselines[j].get((), (0,)) == (int(plain["base"]),)
        if j < known:
            assert entries.windows[j].get((), (0,)) == (int(plain["seen"]),)
        moving += j > 0 and dropoff.baselines[j] != dropoff.baselines[j - 1]
    assert moving >= 5  # journeys enter and leave the baselines over the batch
