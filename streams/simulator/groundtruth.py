"""Exact final figures from a complete set of events: the independent reference implementation.

Why it exists: the streaming pipeline computes journeys, funnels, containment and contact-center
KPIs incrementally, per key, in Faust state and ClickHouse snapshots. To know that it is right we
need the same numbers computed a second, boring way: this module and its truth_* modules recompute
them in one batch pass straight from design section 4 and "Metric semantics" in docs/decisions.md,
and import nothing else from cxpulse, so a bug in shared code cannot hide in both. Clarity wins
over speed: sort once, group by key, bisect in sorted lists (a million events in about 20 s,
nothing quadratic).

Rules that are easy to get wrong (all in docs/decisions.md, "Metric semantics"):
- "within W after t" is the half-open interval (t, t + W]; events are ordered by (time, event_id).
- Journey key = customer_id when non-empty ("~" + it when it starts "s:" or "~"), else "s:" +
  session_id, decided per event.
- A gap of exactly `gap` keeps portal events in one journey; gap + 1 ms splits it.
- Step k counts an event at the time step k-1 was reached (even the same event); window from step 1.
- Escalation = help request in the journey, or a contact start t with start < t <= last + 72 h and
  t < the key's next journey start; a contact start exactly at the next start escalates neither.
- Escalation at the same time as the order is self_served; an open journey shows a known outcome.
- Closed iff watermark >= last activity + gap; dropped = closed, not self_served, by last step.
- Escalated at step = last step reached at or before the escalation time.
- Medians are the lower median sorted[(n - 1) // 2] (ClickHouse quantileExactLow(0.5)).
- answered requires queued; abandoned requires abandoned_at >= queued_at; short = wait < 5 s;
  within service level = wait <= 20 s.
- IVR containment / FCR look for another contact of the same customer in (start, start + W].
- The last survey of a contact counts; each of csat / nps / ces counts only when present.
- A ratio with a zero denominator is None.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from cxpulse.streams.simulator.truth_contacts import contact_facts, summarize_kpis
from cxpulse.streams.simulator.truth_drivers import drivers, journey_facts
from cxpulse.streams.simulator.truth_events import (
    DEFAULT_CONFIG,
    GroundTruthConfig,
    ParsedEvent,
    parse_events,
)
from cxpulse.streams.simulator.truth_funnels import summarize_funnel
from cxpulse.streams.simulator.truth_journeys import journey_rows, summarize_containment
from cxpulse.streams.simulator.truth_scenario import Questions, compare_groups, impact


def compute_ground_truth(
    events: Iterable[Mapping[str, Any]],
    funnels: Sequence[Mapping[str, Any]],
    *,
    as_of_ms: int | None = None,
    config: GroundTruthConfig = DEFAULT_CONFIG,
    questions: Questions | None = None,
) -> dict[str, Any]:
    """Every figure of design section 4 for a complete set of accepted events, as JSON-ready
    rows (journeys, contacts) and their aggregates. `as_of_ms` is the watermark (None: infinity);
    it decides closure and finality only, every given event is used. With `questions`, also the
    changes, their impact, the experiments' comparisons and the drivers of section 4b."""
    parsed = parse_events(events)
    portal = [e for e in parsed if e.type.startswith("portal.")]
    cc = [e for e in parsed if e.type.startswith("cc.")]

    facts = contact_facts(cc, config, as_of_ms)
    journeys = journey_rows(portal, cc, facts, funnels, config, as_of_ms)
    contacts = [fact.row for fact in facts]
    answers = {} if questions is None else answer(questions, journeys, portal, funnels)
    return {
        **answers,
        "journeys": journeys,
        "contacts": contacts,
        "funnel_summary": {
            str(funnel["name"]): summarize_funnel(journeys, str(funnel["name"]), funnel["steps"])
            for funnel in funnels
        },
        "containment": summarize_containment(journeys, config),
        "kpis": summarize_kpis(contacts),
    }


def answer(
    questions: Questions,
    journeys: Sequence[Mapping[str, Any]],
    portal: Sequence[ParsedEvent],
    funnels: Sequence[Mapping[str, Any]],
) -> dict[str, Any]:
    """The section 4b figures a simulated scenario asks for, as the API's responses (without
    freshness): one impact per change, one comparison per experiment, drivers per step."""
    funnel = next(f for f in funnels if f["name"] == questions.funnel)
    span = (questions.start_ms, questions.end_ms)
    facts = journey_facts(journeys, portal) if questions.driver_steps else {}
    return {
        "changes": [dict(change) for change in questions.changes],
        "impact": [
            impact(journeys, change, funnels, questions.window_ms, questions.now_ms)
            for change in questions.changes
        ],
        "compare": [
            compare_groups(journeys, funnel, attr, control, *span)
            for attr, control in questions.experiments
        ],
        "drivers": [
            drivers(journeys, facts, funnel, step, *span) for step in questions.driver_steps
        ],
    }
