"""Contact-center KPIs on small hand-computed fixtures, through the journey stage into chdb.

Each fixture pins an edge of docs/decisions.md ("Metric semantics"): the expected numbers are
written by hand from the events, not computed by cxpulse code.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from cxpulse.schemas.deadletters import Source
from cxpulse.sinks.contact_queries import contact_kpis
from cxpulse.sinks.containment_queries import containment
from cxpulse.sinks.migrate import migrate
from cxpulse.sinks.store import ChdbStore
from cxpulse.streams.funnels import load_funnels
from cxpulse.streams.ingest import encode_batch, route
from cxpulse.streams.stage import JourneyStage
from cxpulse.streams.windows import DEFAULT_WINDOWS, Windows
from tests.streams.test_stage import Collector
from tests.support.rows import insert_sent_rows

T0 = datetime(2026, 11, 10, 9, 0, tzinfo=UTC)
NOW_MS = int((T0 + timedelta(days=12)).timestamp() * 1000)  # every window has passed
S = timedelta(seconds=1)


class Fixture:
    def __init__(self) -> None:
        self.raws: list[bytes] = []

    def cc(self, contact: str, at: datetime, event_type: str, customer: str = "cust-a",
           **data: Any) -> None:  # fmt: skip
        self.raws.append(orjson.dumps({
            "event_id": f"{contact}-{event_type}-{len(self.raws)}", "schema_version": 1,
            "type": event_type, "occurred_at": at.isoformat(), "customer_id": customer,
            "contact_id": contact, "data": data,
        }))  # fmt: skip

    def queued_call(self, contact: str, at: datetime, customer: str = "cust-a") -> None:
        self.cc(contact, at, "cc.contact_started", customer, channel="voice")
        self.cc(contact, at + 10 * S, "cc.ivr_completed", customer, outcome="to_queue")
        self.cc(contact, at + 11 * S, "cc.queued", customer, queue="printers")

    def store(self, store: ChdbStore, windows: Windows = DEFAULT_WINDOWS) -> None:
        out = Collector()
        stage = JourneyStage(out, load_funnels(), restore=lambda p: {}, clock=lambda: NOW_MS,
                             windows=windows)  # fmt: skip
        chunk = [(raw, Source("cx.contact.v1", 0, i)) for i, raw in enumerate(self.raws)]
        for partition, pieces in route(chunk, 2, NOW_MS).keyed.items():
            for piece in pieces:
                stage.process(partition, encode_batch(piece))
        migrate(store)
        insert_sent_rows(store, out.messages)


def _kpis(store: ChdbStore, **filters: str) -> dict[str, Any]:
    start = int((T0 - timedelta(days=1)).timestamp() * 1000)
    [kpis] = contact_kpis(store, start, NOW_MS, filters)
    return kpis


def test_thresholds_transfers_and_surveys(chdb_store: ChdbStore) -> None:
    f = Fixture()
    # c1: answered after exactly 20 s in queue (within SL), handled 300 s, two transfers.
    f.queued_call("c1", T0, "cust-1")
    f.cc("c1", T0 + 31 * S, "cc.answered", "cust-1", agent_id="a1", team="blue")
    f.cc("c1", T0 + 60 * S, "cc.transferred", "cust-1", to_queue="l2")
    f.cc("c1", T0 + 90 * S, "cc.transferred", "cust-1", to_queue="l3")
    f.cc("c1", T0 + 331 * S, "cc.contact_ended", "cust-1", resolved=True, part_shipped=False)
    f.cc("c1", T0 + 400 * S, "cc.survey_submitted", "cust-1", csat=5, nps=10, ces=2)
    # c2: answered after 21 s (outside SL), handled 100 s, unresolved, survey without csat.
    f.queued_call("c2", T0 + 3600 * S, "cust-2")
    f.cc("c2", T0 + 3632 * S, "cc.answered", "cust-2", agent_id="a2", team="red")
    f.cc("c2", T0 + 3732 * S, "cc.contact_ended", "cust-2", resolved=False, part_shipped=False)
    f.cc("c2", T0 + 3800 * S, "cc.survey_submitted", "cust-2", csat=None, nps=3, ces=None)
    # c3: abandoned after exactly 5 s (not a short abandon).
    f.queued_call("c3", T0 + 7200 * S, "cust-3")
    f.cc("c3", T0 + 7216 * S, "cc.abandoned", "cust-3")
    # c4: abandoned after 4 s (a short abandon).
    f.queued_call("c4", T0 + 7300 * S, "cust-4")
    f.cc("c4", T0 + 7315 * S, "cc.abandoned", "cust-4")
    # c5: contained in the IVR, no repeat: contained.
    f.cc("c5", T0 + 9000 * S, "cc.contact_started", "cust-5", channel="voice")
    f.cc("c5", T0 + 9030 * S, "cc.ivr_completed", "cust-5", outcome="contained")
    # c6: zeroed out in the IVR.
    f.cc("c6", T0 + 9100 * S, "cc.contact_started", "cust-6", channel="voice")
    f.cc("c6", T0 + 9110 * S, "cc.ivr_completed", "cust-6", outcome="zero_out")
    f.store(chdb_store)

    k = _kpis(chdb_store)
    counts = k["counts"]
    assert counts == {
        "contacts": 6, "queued": 4, "answered": 2, "abandoned": 2, "short_abandoned": 1,
        "answered_within_sl": 1, "transferred": 1, "ivr_contained": 1, "resolved": 1,
        "first_contact_resolved": 1, "handled": 2, "ivr_contacts": 6, "zero_out": 1,
        "csat_responses": 1, "nps_responses": 2, "ces_responses": 1,
    }  # fmt: skip
    assert k["service_level"] == 1 / 3  # 1 within SL / (2 answered + 2 abandoned - 1 short)
    assert k["asa_seconds"] == (20 + 21) / 2
    assert k["abandonment_rate"] == 2 / 4
    assert k["aht_seconds"] == (300 + 100) / 2
    assert k["transfer_rate"] == 1 / 2  # two transfers count once
    assert k["ivr_containment_rate"] == 1 / 6
    assert k["zero_out_rate"] == 1 / 6
    assert k["fcr_rate"] == 1.0
    assert k["csat"] == 1.0  # the survey without csat is not a csat response
    assert k["nps"] == 100 * (1 - 1) / 2
    assert k["ces"] == 2.0
    assert (k["fcr_final"], k["ivr_final"]) == (True, True)
    assert _kpis(chdb_store, team="blue")["counts"]["answered"] == 1
    assert _kpis(chdb_store, queue="printers")["counts"]["queued"] == 4


def test_repeat_contacts_decide_fcr_and_ivr_containment(chdb_store: ChdbStore) -> None:
    f = Fixture()
    for contact, customer, gap in (("r1", "near", timedelta(days=6, hours=23)),
                                   ("r2", "far", timedelta(days=7, hours=1))):  # fmt: skip
        f.cc(contact, T0, "cc.contact_started", customer, channel="chat")
        f.cc(contact, T0 + 60 * S, "cc.contact_ended", customer, resolved=True, part_shipped=True)
        f.cc(contact + "b", T0 + gap, "cc.contact_started", customer, channel="email")
    # An IVR-contained call followed by another call 23 h later is not contained.
    f.cc("v1", T0, "cc.contact_started", "ivr", channel="voice")
    f.cc("v1", T0 + 20 * S, "cc.ivr_completed", "ivr", outcome="contained")
    f.cc("v2", T0 + timedelta(hours=23), "cc.contact_started", "ivr", channel="voice")
    f.store(chdb_store)
    k = _kpis(chdb_store)
    assert (k["counts"]["resolved"], k["counts"]["first_contact_resolved"]) == (2, 1)
    assert k["fcr_rate"] == 0.5  # 6 d 23 h later: not first-contact resolved; 7 d 1 h: it is
    assert (k["counts"]["ivr_contacts"], k["counts"]["ivr_contained"]) == (1, 0)


@pytest.mark.parametrize(
    ("windows", "within", "short", "service_level"),
    [(DEFAULT_WINDOWS, 0, 0, 0 / 4),
     (replace(DEFAULT_WINDOWS, short_abandon_ms=10_000, service_level_ms=30_000), 1, 1, 1 / 3)],
)  # fmt: skip
def test_configured_thresholds_decide_service_level_and_short_abandons(
    chdb_store: ChdbStore, windows: Windows, within: int, short: int, service_level: float
) -> None:
    """Waits of 25 s and 31 s answered, 8 s and 12 s abandoned: none within the default 20 s
    service level nor under the 5 s short abandon; with 30 s and 10 s, 25 s is within and 8 s
    short: 1 within / (2 answered + 2 abandoned - 1 short)."""
    f = Fixture()
    for contact, wait, kind in (("w1", 25, "cc.answered"), ("w2", 31, "cc.answered"),
                                ("w3", 8, "cc.abandoned"), ("w4", 12, "cc.abandoned")):  # fmt: skip
        f.queued_call(contact, T0, contact)
        data = {"agent_id": "a1", "team": "blue"} if kind == "cc.answered" else {}
        f.cc(contact, T0 + (11 + wait) * S, kind, contact, **data)
    f.store(chdb_store, windows)
    k = _kpis(chdb_store)
    counts = k["counts"]
    assert (counts["answered"], counts["abandoned"]) == (2, 2)
    assert (counts["answered_within_sl"], counts["short_abandoned"]) == (within, short)
    assert k["service_level"] == service_level


def test_no_answered_contacts_gives_null_ratios(chdb_store: ChdbStore) -> None:
    f = Fixture()
    f.queued_call("z1", T0, "cust-z")
    f.store(chdb_store)
    k = _kpis(chdb_store)
    assert k["counts"]["answered"] == 0
    for name in ("service_level", "asa_seconds", "aht_seconds", "transfer_rate", "fcr_rate",
                 "csat", "nps", "ces"):  # fmt: skip
        assert k[name] is None, name
    assert k["abandonment_rate"] == 0.0
    [empty] = containment(chdb_store, NOW_MS - 1000, NOW_MS)
    assert (empty["journeys"], empty["containment_rate"]) == (0, None)


def test_an_unknown_filter_is_refused(chdb_store: ChdbStore) -> None:
    from cxpulse.sinks.query_sql import QueryError

    migrate(chdb_store)
    with pytest.raises(QueryError, match="queue, team, channel, shift"):
        _kpis(chdb_store, agent="a1")
