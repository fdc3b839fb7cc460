"""The simulated customers' behaviour as data: every probability and duration of the model.

One frozen (hashable) dataclass, so that a test or a demo overrides one knob with
`dataclasses.replace` and the rate calibration caches its result per `Behaviour`.
"""

from __future__ import annotations

from dataclasses import dataclass

from cxpulse.streams.simulator.clock import DAY_MS, HOUR_MS, MINUTE_MS, SECOND_MS

#: Steps of the default self-service flow, in order (design section 3).
FLOW_STEPS: tuple[str, ...] = (
    "identify_device",
    "diagnose",
    "troubleshoot",
    "eligibility",
    "part_selection",
    "shipping",
    "confirm",
)

# A weighted choice: (value, weight) pairs; weights need not sum to 1.
Weighted = tuple[tuple[str, float], ...]
# Per-key probability, e.g. per flow step or per end state.
PerKey = tuple[tuple[str, float], ...]
# (median seconds, sigma of the log) of a log-normal duration.
LogNormal = tuple[float, float]
# (low ms, high ms, weight): one component of a log-uniform mixture.
DelayMix = tuple[tuple[int, int, float], ...]


@dataclass(frozen=True)
class Behaviour:
    """Every knob of the model, so tests and demos can tune behaviour without code changes.

    Defaults follow the domain facts of design section 1.

    Calibration targets (rough by design): ~12 % of portal journeys end resolved without live help
    (troubleshooting passed, or a part ordered online), and only a few per cent of the parts
    shipped to portal customers are ordered online without an escalation: most customers who need
    a part give up at part selection/shipping/confirm or ask for help, then contact the center.
    """

    # Root arrivals: a new customer starting on the portal, or one contacting the center directly.
    direct_contact_share: float = 0.30

    # Segment mix. Attrs are per customer: identical on all their sessions and contacts.
    product_lines: Weighted = (
        ("printers", 0.38),
        ("laptops", 0.32),
        ("monitors", 0.14),
        ("accessories", 0.16),
    )
    devices: Weighted = (("desktop", 0.52), ("mobile", 0.40), ("tablet", 0.08))
    # locale -> region is fixed; weights are the locale mix.
    locales: tuple[tuple[str, str, float], ...] = (
        ("en-US", "amer", 0.34),
        ("es-MX", "amer", 0.06),
        ("pt-BR", "amer", 0.05),
        ("en-GB", "emea", 0.10),
        ("de-DE", "emea", 0.10),
        ("fr-FR", "emea", 0.08),
        ("ja-JP", "apj", 0.09),
        ("zh-CN", "apj", 0.08),
        ("en-IN", "apj", 0.10),
    )
    tiers: Weighted = (("consumer", 0.78), ("business", 0.22))
    entries: Weighted = (
        ("support_home", 0.45),
        ("search", 0.30),
        ("email_link", 0.12),
        ("chat_deflection", 0.13),
    )

    # Portal flow. bounce = leave right after session_started, before any step is viewed.
    bounce: float = 0.10
    # P(drop | step viewed), before segment adjustments and incidents.
    dropoff: PerKey = (
        ("identify_device", 0.12),
        ("diagnose", 0.15),
        ("troubleshoot", 0.22),
        ("eligibility", 0.04),
        ("part_selection", 0.75),
        ("shipping", 0.65),
        ("confirm", 0.50),
    )
    # (attr, value, step, added drop-off): mobile and business customers struggle with the test.
    dropoff_adjust: tuple[tuple[str, str, str, float], ...] = (
        ("device", "mobile", "troubleshoot", 0.12),
        ("device", "tablet", "troubleshoot", 0.05),
        ("tier", "business", "troubleshoot", 0.08),
        ("device", "mobile", "shipping", 0.08),
        ("tier", "business", "part_selection", 0.06),
        ("entry", "chat_deflection", "identify_device", 0.08),
        ("entry", "email_link", "identify_device", -0.05),
    )
    # P(help_requested | step viewed): later steps are more confusing and more urgent.
    help: PerKey = (
        ("identify_device", 0.01),
        ("diagnose", 0.03),
        ("troubleshoot", 0.05),
        ("eligibility", 0.06),
        ("part_selection", 0.15),
        ("shipping", 0.18),
        ("confirm", 0.18),
    )
    help_via: Weighted = (("chat", 0.45), ("call", 0.30), ("callback", 0.10), ("email", 0.15))
    # After asking for help most customers leave the portal; the rest carry on meanwhile.
    leave_after_help: float = 0.75
    # P(the requested help turns into a contact), per via.
    help_contact: PerKey = (("chat", 0.92), ("call", 0.85), ("callback", 0.80), ("email", 0.75))
    # Delay from help_requested to cc.contact_started, per via: (low ms, high ms), log-uniform.
    help_delay: tuple[tuple[str, int, int], ...] = (
        ("chat", 5 * SECOND_MS, 90 * SECOND_MS),
        ("call", 30 * SECOND_MS, 20 * MINUTE_MS),
        ("callback", 5 * MINUTE_MS, 4 * HOUR_MS),
        ("email", MINUTE_MS, 2 * HOUR_MS),
    )
    # A chat started from the portal's help button carries the session id (anonymous sessions!).
    help_chat_linked: float = 0.90
    troubleshoot_outcomes: Weighted = (("pass", 0.30), ("fail", 0.55), ("null", 0.15))
    # A failed test makes the customer eligible unless out of warranty / not covered.
    fail_eligible: float = 0.85
    # Think times, log-normal (median s, sigma): before viewing a step, and viewing -> completing.
    view_time: PerKey = (
        ("identify_device", 8.0),
        ("diagnose", 5.0),
        ("troubleshoot", 5.0),
        ("eligibility", 3.0),
        ("part_selection", 4.0),
        ("shipping", 4.0),
        ("confirm", 3.0),
    )
    work_time: PerKey = (
        ("identify_device", 25.0),
        ("diagnose", 60.0),
        ("troubleshoot", 180.0),
        ("eligibility", 4.0),
        ("part_selection", 50.0),
        ("shipping", 70.0),
        ("confirm", 25.0),
    )
    think_sigma: float = 0.8
    leave_time: LogNormal = (40.0, 1.0)
    # Now and then a customer walks away mid-flow and resumes the same session later: a gap of
    # more than 30 min, so the rest counts as a new journey (without a session_started).
    long_pause: float = 0.02
    long_pause_ms: tuple[int, int] = (31 * MINUTE_MS, 8 * HOUR_MS)
    # portal.session_ended is sent when a session closes without an order (else: tab closed).
    session_ended_sent: float = 0.55

    # After the portal, by end state: P(contact the center), P(come back to the portal later).
    # early = bounced or dropped before troubleshooting; needs_part = eligible but no order.
    contact_after: PerKey = (
        ("early", 0.20),
        ("troubleshoot", 0.35),
        ("no_result", 0.45),
        ("not_eligible", 0.50),
        ("needs_part", 0.70),
        ("resolved", 0.04),
        ("ordered", 0.05),
    )
    return_visit: PerKey = (
        ("early", 0.20),
        ("troubleshoot", 0.18),
        ("no_result", 0.15),
        ("not_eligible", 0.08),
        ("needs_part", 0.15),
        ("resolved", 0.06),
        ("ordered", 0.03),
        ("helped", 0.05),
        ("contact", 0.05),
    )
    return_visit_ms: tuple[int, int] = (HOUR_MS, 10 * DAY_MS)
    # Delay from leaving the portal to contacting the center: minutes to days, some > 72 h.
    escalation_delay: DelayMix = (
        (2 * MINUTE_MS, HOUR_MS, 0.35),
        (HOUR_MS, DAY_MS, 0.35),
        (DAY_MS, 3 * DAY_MS, 0.22),
        (3 * DAY_MS, 7 * DAY_MS, 0.08),
    )
    contact_channels: Weighted = (("voice", 0.55), ("chat", 0.28), ("email", 0.17))
    business_channels: Weighted = (("voice", 0.70), ("chat", 0.18), ("email", 0.12))
    # A chat opened within the hour from a portal page (not the help button) is sometimes linked.
    late_chat_linked: float = 0.40
    direct_reasons: Weighted = (
        ("hardware_failure", 0.30),
        ("part_request", 0.15),
        ("order_status", 0.15),
        ("setup_help", 0.20),
        ("billing", 0.10),
        ("warranty", 0.10),
    )

    # Contact center.
    ivr_time: LogNormal = (60.0, 0.6)
    ivr_outcomes: Weighted = (
        ("contained", 0.12),
        ("to_queue", 0.68),
        ("zero_out", 0.14),
        ("abandoned", 0.06),
    )
    business_ivr_outcomes: Weighted = (
        ("contained", 0.07),
        ("to_queue", 0.66),
        ("zero_out", 0.22),
        ("abandoned", 0.05),
    )
    # Queue wait until answered, and caller patience, per channel (median s, sigma).
    answer_wait: tuple[tuple[str, float, float], ...] = (
        ("voice", 12.0, 0.9),
        ("chat", 20.0, 0.9),
        ("email", 7200.0, 0.8),
    )
    patience: tuple[tuple[str, float, float], ...] = (
        ("voice", 120.0, 1.2),
        ("chat", 180.0, 1.0),
    )
    # Callers who hang up within seconds (short abandons, excluded from service level).
    quick_hangup: float = 0.02
    handle_time: tuple[tuple[str, float, float], ...] = (
        ("voice", 420.0, 0.5),
        ("chat", 720.0, 0.5),
        ("email", 360.0, 0.6),
    )
    transfer: float = 0.12
    second_transfer: float = 0.20
    transfer_queues: tuple[str, ...] = ("tech_l2", "parts_desk", "warranty_desk", "billing")
    resolve: PerKey = (("voice", 0.74), ("chat", 0.68), ("email", 0.60))
    transfer_resolve_penalty: float = 0.06
    # P(part shipped | resolved), per contact reason.
    part_shipped: PerKey = (
        ("part_request", 0.85),
        ("hardware_failure", 0.50),
        ("warranty", 0.30),
    )
    agents_per_team: int = 25
    # Repeat contacts: (probability, low ms, high ms), log-uniform delay after the contact ended.
    repeat_unresolved: tuple[float, int, int] = (0.50, 10 * MINUTE_MS, 5 * DAY_MS)
    repeat_resolved: tuple[float, int, int] = (0.12, DAY_MS, 10 * DAY_MS)
    repeat_ivr_contained: tuple[float, int, int] = (0.25, 20 * MINUTE_MS, 30 * HOUR_MS)
    repeat_abandoned: tuple[float, int, int] = (0.60, MINUTE_MS, 4 * HOUR_MS)
    # Surveys: P(sent and answered) after an answered / IVR-contained contact, delay, null shares.
    survey_answered: float = 0.22
    survey_ivr: float = 0.08
    survey_delay_ms: tuple[int, int] = (MINUTE_MS, 48 * HOUR_MS)
    survey_null: tuple[float, float, float] = (0.08, 0.25, 0.40)  # csat, nps, ces
    # Safety net: a customer stops generating follow-ups after this many interactions.
    max_interactions: int = 12
    # True: new customers arrive faster while follow-ups (contacts days after a visit) build up,
    # so the total event rate equals `rate` from time zero and new-customer arrivals decay to
    # their steady rate over ~10 days (x1.7 in the first half hour, x1.2 at 24 h, x1.08 at 72 h).
    # False: a homogeneous Poisson arrival process; the event rate then starts at ~60 % of `rate`
    # and reaches it as follow-ups build up (~70 % after 1 h, ~85 % after 24 h).
    steady_rate_from_start: bool = True


DEFAULT_BEHAVIOUR = Behaviour()
