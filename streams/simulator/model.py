"""Clean simulated traffic: support-portal journeys and the contact-center contacts they cause.

Why a behavioural model rather than random events: the pipeline's figures (funnel drop-off,
escalations, containment, service level, IVR containment, FCR, surveys) only get exercised when
events relate to each other the way real ones do. A customer walks the self-service flow, gives up
or asks for help, calls minutes to days later, calls again when the first contact did not fix it,
and comes back to the portal. All of that is generated here, deterministically from one seed, as
events that follow the contract of design section 3 exactly.

How it streams: a journey's (or contact's) events are generated when it starts and pushed onto a
heap ordered by event time; the heap is drained up to the next start, so the output is in
non-decreasing `occurred_at` order. A journey or contact that runs long (a customer pausing for
hours, an email waiting for an agent) is generated in segments of SEGMENT_MS and resumed from the
start heap. What happens later to the same customer (a contact days after a portal visit, a
repeat call, a survey) is scheduled as a small "start" record and only turned into events when its
time comes. Memory therefore holds in-flight work only: it grows with the rate, never with how
many events have been streamed.

Every probability and duration lives in `Behaviour` (defaults set from design section 1), so a test
or a demo can tune one thing without touching the code.
"""

from __future__ import annotations

import heapq
import math
import random
from bisect import bisect
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

SCHEMA_VERSION = 1

SECOND_MS = 1_000
MINUTE_MS = 60 * SECOND_MS
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS

#: Simulated time zero when the caller gives none; a live producer passes the wall clock.
DEFAULT_START_MS = 1_795_392_000_000  # 2026-11-23T00:00:00Z

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

PORTAL_TYPES: tuple[str, ...] = (
    "portal.session_started",
    "portal.step_viewed",
    "portal.step_completed",
    "portal.eligibility_checked",
    "portal.order_placed",
    "portal.help_requested",
    "portal.session_ended",
)
CONTACT_TYPES: tuple[str, ...] = (
    "cc.contact_started",
    "cc.ivr_completed",
    "cc.queued",
    "cc.answered",
    "cc.transferred",
    "cc.abandoned",
    "cc.contact_ended",
    "cc.survey_submitted",
)
EVENT_TYPES: tuple[str, ...] = PORTAL_TYPES + CONTACT_TYPES

# A weighted choice: (value, weight) pairs; weights need not sum to 1.
Weighted = tuple[tuple[str, float], ...]
# Per-key probability, e.g. per flow step or per end state.
PerKey = tuple[tuple[str, float], ...]
# (median seconds, sigma of the log) of a log-normal duration.
LogNormal = tuple[float, float]
# (low ms, high ms, weight): one component of a log-uniform mixture.
DelayMix = tuple[tuple[int, int, float], ...]


# -- time -----------------------------------------------------------------------------------------

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@lru_cache(maxsize=8192)
def _minute_text(minute: int) -> str:
    """'YYYY-MM-DDTHH:MM:' of an epoch minute; cached since journeys revisit the same minutes."""
    return (_EPOCH + timedelta(minutes=minute)).strftime("%Y-%m-%dT%H:%M:")


def format_ms(ms: int) -> str:
    """Epoch ms -> RFC 3339 UTC with milliseconds, e.g. 2026-11-23T10:00:00.250+00:00.

    Hand-rolled (cached minute prefix, string tables) because datetime formatting per event
    would be a large share of generation time.
    """
    minute, rem = divmod(ms, MINUTE_MS)
    return _minute_text(minute) + _SECONDS[rem // 1000] + _MILLIS[rem % 1000]


_SECONDS = tuple(f"{s:02d}." for s in range(60))
_MILLIS = tuple(f"{m:03d}+00:00" for m in range(1000))


def _parse_iso_ms(text: str) -> int:
    stamp = datetime.fromisoformat(text)
    if stamp.tzinfo is None:
        raise ValueError(f"no UTC offset in {text!r}")
    return (stamp - _EPOCH) // timedelta(milliseconds=1)


@lru_cache(maxsize=8192)
def _minute_ms(prefix: str) -> int:
    return _parse_iso_ms(f"{prefix}00+00:00")


def parse_ms(text: str) -> int:
    """RFC 3339 with an offset -> epoch ms (exact integer arithmetic, no float rounding).

    Text in our own format (see format_ms) takes a cached fast path, since the noise stage and
    the tests parse every event; anything else goes through datetime.fromisoformat.
    """
    if (
        len(text) == 29
        and text[19] == "."
        and text[16] == ":"
        and text.endswith("+00:00")
        and text[17:19].isdigit()
        and text[20:23].isdigit()
        and text[17] < "6"
    ):
        return _minute_ms(text[:17]) + int(text[17:19]) * 1000 + int(text[20:23])
    return _parse_iso_ms(text)


# -- configuration --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Incident:
    """A broken step for a segment: drop-off there rises while it is active.

    `step` is a flow step (FLOW_STEPS). In funnel terms (streams/funnels.yaml) an incident at
    identify_device/diagnose/troubleshoot raises drop-off at the funnel step of the same name, at
    `eligibility` it hits `eligibility_checked`, and at part_selection/shipping/confirm it hits
    `order_placed`. Active when start_ms <= (time the journey views the step) < end_ms.
    """

    step: str
    segment: Mapping[str, str] = field(default_factory=dict)
    start_ms: int = 0
    end_ms: int | None = None
    extra_dropoff: float = 0.2

    def __post_init__(self) -> None:
        if self.step not in FLOW_STEPS:
            raise ValueError(f"unknown step {self.step!r}; expected one of {FLOW_STEPS}")
        if self.end_ms is not None and self.end_ms < self.start_ms:
            raise ValueError("incident ends before it starts")

    def active(self, at_ms: int, attrs: Mapping[str, str]) -> bool:
        if at_ms < self.start_ms or (self.end_ms is not None and at_ms >= self.end_ms):
            return False
        return all(attrs.get(k) == v for k, v in self.segment.items())


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


@dataclass(frozen=True)
class SimConfig:
    """What to simulate. `rate` is the mean of all events (portal + contact center) per
    simulated second; the arrival rate of new customers is derived from it (see `Simulator`)."""

    seed: int = 42
    start_ms: int = DEFAULT_START_MS
    rate: float = 50.0
    incidents: tuple[Incident, ...] = ()
    anonymous_share: float = 0.15
    behaviour: Behaviour = DEFAULT_BEHAVIOUR

    def __post_init__(self) -> None:
        if not self.rate > 0:
            raise ValueError("rate must be > 0")
        if not 0.0 <= self.anonymous_share <= 1.0:
            raise ValueError("anonymous_share must be within [0, 1]")


# -- the model ------------------------------------------------------------------------------------

_SKUS: dict[str, tuple[str, ...]] = {
    "printers": ("PRN-FUSER", "PRN-PICKUP-ROLLER", "PRN-INK-PUMP", "PRN-SENSOR"),
    "laptops": ("LAP-BATTERY", "LAP-KEYBOARD", "LAP-CHARGER", "LAP-FAN"),
    "monitors": ("MON-STAND", "MON-POWER-BOARD", "MON-CABLE"),
    "accessories": ("ACC-DOCK", "ACC-MOUSE", "ACC-HEADSET"),
}

_ATTR_NAMES = ("product_line", "device", "locale", "region", "tier", "entry")

# Kinds of scheduled starts: a journey, a contact, a survey, or the rest of a paused one.
_JOURNEY, _CONTACT, _SURVEY, _RESUME = 0, 1, 2, 3

#: A journey or contact is generated in segments of at most about this much event time; the rest
#: is resumed from the start heap when its time comes. This caps how far ahead of the output
#: events are built (pending events ~ rate x SEGMENT_MS, not rate x the longest session or email
#: wait), at the price of a suspended generator per long-running journey/contact.
SEGMENT_MS = 2 * MINUTE_MS

# What journey/contact generators yield: the event time at which to resume them.
Segments = Iterator[int]


class _Customer:
    """A customer lives only inside the scheduled follow-ups that mention them (bounded memory)."""

    __slots__ = ("attrs", "id", "interactions")

    def __init__(self, customer_id: str, attrs: dict[str, str]) -> None:
        self.id = customer_id
        self.attrs = attrs
        self.interactions = 0


def _table(weighted: Weighted) -> tuple[tuple[str, ...], list[float]]:
    values = tuple(v for v, _ in weighted)
    cum: list[float] = []
    total = 0.0
    for _, w in weighted:
        total += w
        cum.append(total)
    return values, cum


class _Model:
    """Journey and contact behaviour. Subclasses decide what `emit` and `schedule` do: the
    simulator builds and queues events, the rate calibration only counts them."""

    def __init__(
        self,
        behaviour: Behaviour,
        rng: random.Random,
        prefix: str,
        incidents: tuple[Incident, ...] = (),
        anonymous_share: float = 0.0,
    ) -> None:
        b = behaviour
        self.b = b
        self.rng = rng
        self.prefix = prefix
        self.anonymous_share = anonymous_share
        self.incidents: dict[str, tuple[Incident, ...]] = {
            s: tuple(i for i in incidents if i.step == s) for s in FLOW_STEPS
        }
        self.n_customers = 0
        self.n_sessions = 0
        self.n_contacts = 0
        self.n_orders = 0
        self._t_product = _table(b.product_lines)
        self._t_device = _table(b.devices)
        self._t_locale = _table(tuple((f"{loc}|{reg}", w) for loc, reg, w in b.locales))
        self._t_tier = _table(b.tiers)
        self._t_entry = _table(b.entries)
        self._t_via = _table(b.help_via)
        self._t_outcome = _table(b.troubleshoot_outcomes)
        self._t_channels = _table(b.contact_channels)
        self._t_business_channels = _table(b.business_channels)
        self._t_reasons = _table(b.direct_reasons)
        self._t_ivr = _table(b.ivr_outcomes)
        self._t_business_ivr = _table(b.business_ivr_outcomes)
        self._t_delay = _table(tuple((str(i), w) for i, (_, _, w) in enumerate(b.escalation_delay)))
        self._help = dict(b.help)
        self._help_contact = dict(b.help_contact)
        self._help_delay = {v: (lo, hi) for v, lo, hi in b.help_delay}
        self._view = dict(b.view_time)
        self._work = dict(b.work_time)
        self._contact_after = dict(b.contact_after)
        self._return_visit = dict(b.return_visit)
        self._answer = {c: (m, s) for c, m, s in b.answer_wait}
        self._patience = {c: (m, s) for c, m, s in b.patience}
        self._handle = {c: (m, s) for c, m, s in b.handle_time}
        self._resolve = dict(b.resolve)
        self._part = dict(b.part_shipped)
        self._drop_cache: dict[tuple[str, ...], dict[str, float]] = {}
        self._attrs: dict[tuple[str, ...], dict[str, str]] = {}

    # -- hooks --------------------------------------------------------------------------------
    def emit(
        self,
        t: int,
        etype: str,
        customer_id: str | None,
        id_key: str,
        id_value: str,
        attrs: dict[str, str],
        data: dict[str, Any],
    ) -> None:
        raise NotImplementedError

    def schedule(self, t: int, kind: int, payload: tuple[Any, ...]) -> None:
        raise NotImplementedError

    # -- draws --------------------------------------------------------------------------------
    def _pick(self, table: tuple[tuple[str, ...], list[float]]) -> str:
        values, cum = table
        return values[bisect(cum, self.rng.random() * cum[-1])]

    def _lognormal_ms(self, median_s: float, sigma: float) -> int:
        return max(1, int(median_s * 1000.0 * math.exp(sigma * self.rng.gauss(0.0, 1.0))))

    def _loguniform_ms(self, low: int, high: int) -> int:
        return max(1, int(low * (high / low) ** self.rng.random()))

    # -- arrivals -----------------------------------------------------------------------------
    def new_customer(self) -> _Customer:
        self.n_customers += 1
        locale, region = self._pick(self._t_locale).split("|")
        values = (
            self._pick(self._t_product),
            self._pick(self._t_device),
            locale,
            region,
            self._pick(self._t_tier),
            self._pick(self._t_entry),
        )
        # Customers share one (never mutated) attrs dict per segment combination: scheduled
        # follow-ups then cost a few references each. Events get their own copies.
        attrs = self._attrs.get(values)
        if attrs is None:
            attrs = dict(zip(_ATTR_NAMES, values, strict=True))
            self._attrs[values] = attrs
        return _Customer(f"c-{self.prefix}-{self.n_customers}", attrs)

    def root(self, t: int) -> None:
        """A new customer: starts on the portal, or contacts the center directly."""
        customer = self.new_customer()
        if self.rng.random() < self.b.direct_contact_share:
            channel = self._channel(customer)
            reason = self._pick(self._t_reasons)
            self._drive(self.contact(customer, t, channel, reason, None, channel == "voice"))
        else:
            self._drive(self.journey(customer, t))

    def start(self, t: int, kind: int, payload: tuple[Any, ...]) -> None:
        if kind == _RESUME:
            self._drive(payload[0])
        elif kind == _JOURNEY:
            self._drive(self.journey(payload[0], t))
        elif kind == _CONTACT:
            self._drive(self.contact(payload[0], t, *payload[1:]))
        else:
            self.survey(payload[0], t, *payload[1:])

    def _drive(self, segments: Segments) -> None:
        """Run a journey/contact up to its next pause and schedule the rest."""
        for resume_at in segments:
            self.schedule(resume_at, _RESUME, (segments,))
            return

    # -- portal -------------------------------------------------------------------------------
    def _dropoffs(self, attrs: dict[str, str]) -> dict[str, float]:
        key = tuple(attrs.values())
        table = self._drop_cache.get(key)
        if table is None:
            table = dict(self.b.dropoff)
            for attr, value, step, delta in self.b.dropoff_adjust:
                if attrs.get(attr) == value:
                    table[step] = table[step] + delta
            self._drop_cache[key] = table
        return table

    def _incident_extra(self, step: str, t: int, attrs: dict[str, str]) -> float:
        return sum(i.extra_dropoff for i in self.incidents[step] if i.active(t, attrs))

    def journey(self, customer: _Customer, t: int) -> Segments:
        """One portal session: the default flow until order, drop-off or help request.

        A generator: it yields a time to be resumed at whenever the current segment exceeds
        SEGMENT_MS, so events far in the future are not built yet."""
        b, rng = self.b, self.rng
        customer.interactions += 1
        self.n_sessions += 1
        sid = f"s-{self.prefix}-{self.n_sessions}"
        cid = None if rng.random() < self.anonymous_share else customer.id
        attrs = customer.attrs
        emit = self.emit

        def ev(at: int, etype: str, data: dict[str, Any]) -> None:
            emit(at, etype, cid, "session_id", sid, attrs, data)

        ev(t, "portal.session_started", {"entry": attrs["entry"]})
        if rng.random() < b.bounce:
            t = self._leave(t, ev)
            self._after_journey(customer, t, "early", sid, False)
            return
        drops = self._dropoffs(attrs)
        segment = t
        escalated = False
        outcome: str | None = None
        eligible = False
        for step in FLOW_STEPS:
            t += self._lognormal_ms(self._view[step], b.think_sigma)
            if rng.random() < b.long_pause:
                t += self._loguniform_ms(*b.long_pause_ms)
            if t - segment > SEGMENT_MS:
                segment = t
                yield t
            ev(t, "portal.step_viewed", {"step": step})
            viewed_at = t
            if rng.random() < self._help[step]:
                t += self._lognormal_ms(6.0, 0.8)
                via = self._pick(self._t_via)
                ev(t, "portal.help_requested", {"via": via})
                if not escalated and rng.random() < self._help_contact[via]:
                    escalated = True
                    self._help_contact_start(customer, t, via, sid, self._state(step, outcome))
                if rng.random() < b.leave_after_help:
                    t = self._leave(t, ev)
                    self._after_journey(customer, t, "helped", sid, True)
                    return
            p_drop = drops[step]
            if self.incidents[step]:
                p_drop += self._incident_extra(step, viewed_at, attrs)
            if rng.random() < p_drop:
                t = self._leave(t, ev)
                self._after_journey(customer, t, self._state(step, outcome), sid, escalated)
                return
            t += self._lognormal_ms(self._work[step], b.think_sigma)
            if t - segment > SEGMENT_MS:
                segment = t
                yield t
            if step == "eligibility":
                eligible, reason = self._eligibility(outcome)
                ev(t, "portal.eligibility_checked", {"eligible": eligible, "reason": reason})
                if not eligible:
                    t = self._leave(t, ev)
                    state = {"pass": "resolved", None: "no_result"}.get(outcome, "not_eligible")
                    self._after_journey(customer, t, state, sid, escalated)
                    return
            else:
                if step == "troubleshoot":
                    drawn = self._pick(self._t_outcome)
                    outcome = None if drawn == "null" else drawn
                    done = {"step": step, "outcome": outcome}
                else:
                    done = {"step": step, "outcome": None}
                ev(t, "portal.step_completed", done)
        # confirm completed: the order goes through.
        t += self._lognormal_ms(2.0, 0.5)
        self.n_orders += 1
        skus = _SKUS.get(attrs["product_line"], ("GEN-PART",))
        sku = skus[int(rng.random() * len(skus))]
        ev(t, "portal.order_placed", {"order_id": f"o-{self.prefix}-{self.n_orders}", "sku": sku})
        t += self._lognormal_ms(8.0, 0.7)
        ev(t, "portal.session_ended", {})
        self._after_journey(customer, t, "ordered", sid, escalated)

    @staticmethod
    def _state(step: str, outcome: str | None) -> str:
        """End state of a journey that stops at `step` (decides contact/return likelihood)."""
        if step in ("identify_device", "diagnose"):
            return "early"
        if step == "troubleshoot":
            return "troubleshoot"
        if step == "eligibility":
            return {"pass": "resolved", None: "no_result"}.get(outcome, "needs_part")
        return "needs_part"

    def _eligibility(self, outcome: str | None) -> tuple[bool, str]:
        if outcome == "pass":
            return False, "issue_resolved"
        if outcome is None:
            return False, "no_test_result"
        if self.rng.random() < self.b.fail_eligible:
            return True, "troubleshoot_failed"
        return False, "out_of_warranty" if self.rng.random() < 0.7 else "not_covered"

    def _leave(self, t: int, ev: Callable[[int, str, dict[str, Any]], None]) -> int:
        t += self._lognormal_ms(*self.b.leave_time)
        if self.rng.random() < self.b.session_ended_sent:
            ev(t, "portal.session_ended", {})
        return t

    def _channel(self, customer: _Customer) -> str:
        if customer.attrs["tier"] == "business":
            return self._pick(self._t_business_channels)
        return self._pick(self._t_channels)

    @staticmethod
    def _reason(state: str, roll: float) -> str:
        if state in ("needs_part",):
            return "part_request"
        if state == "ordered":
            return "order_status"
        if state == "resolved":
            return "setup_help"
        if state == "not_eligible":
            return "warranty" if roll < 0.5 else "hardware_failure"
        if state == "early":
            return "setup_help" if roll < 0.4 else "hardware_failure"
        return "hardware_failure"

    def _help_contact_start(
        self, customer: _Customer, t: int, via: str, sid: str, state: str
    ) -> None:
        channel = {"chat": "chat", "call": "voice", "callback": "voice", "email": "email"}[via]
        linked = sid if via == "chat" and self.rng.random() < self.b.help_chat_linked else None
        reason = self._reason(state, self.rng.random())
        at = t + self._loguniform_ms(*self._help_delay[via])
        # A callback is an outbound call: no IVR.
        self.schedule(at, _CONTACT, (customer, channel, reason, linked, via == "call"))

    def _after_journey(
        self, customer: _Customer, t: int, state: str, sid: str, escalated: bool
    ) -> None:
        """Follow-ups of a finished session: a contact (an escalation) and/or a return visit."""
        b, rng = self.b, self.rng
        if customer.interactions >= b.max_interactions:
            return
        contacted = escalated
        if not escalated and rng.random() < self._contact_after.get(state, 0.0):
            contacted = True
            low, high, _ = b.escalation_delay[int(self._pick(self._t_delay))]
            delay = self._loguniform_ms(low, high)
            channel = self._channel(customer)
            linked = None
            if channel == "chat" and delay < HOUR_MS and rng.random() < b.late_chat_linked:
                linked = sid
            reason = self._reason(state, rng.random())
            self.schedule(
                t + delay, _CONTACT, (customer, channel, reason, linked, channel == "voice")
            )
        p_return = self._return_visit.get(state, 0.0) * (0.5 if contacted else 1.0)
        if rng.random() < p_return:
            self.schedule(t + self._loguniform_ms(*b.return_visit_ms), _JOURNEY, (customer,))

    # -- contact center -----------------------------------------------------------------------
    def _queue(self, channel: str, attrs: dict[str, str]) -> tuple[str, str]:
        """(queue, team): business customers have their own queues; teams are regional."""
        if channel == "email":
            queue = f"email_{attrs['product_line']}"
        elif attrs["tier"] == "business":
            queue = f"{channel}_business"
        else:
            queue = f"{channel}_{attrs['product_line']}"
        return queue, f"{attrs['region']}-{queue}"

    def _agent(self, team: str) -> str:
        return f"{team}-a{int(self.rng.random() * self.b.agents_per_team):03d}"

    def contact(
        self,
        customer: _Customer,
        t: int,
        channel: str,
        reason: str,
        linked: str | None,
        ivr: bool,
    ) -> Segments:
        """One contact: start, IVR (voice), queue, abandon or answer (+ transfers), end.

        A generator, like `journey`: long waits (email queues) and handle times are resumed."""
        b, rng = self.b, self.rng
        customer.interactions += 1
        self.n_contacts += 1
        kid = f"k-{self.prefix}-{self.n_contacts}"
        cid = customer.id
        attrs = customer.attrs
        emit = self.emit

        def ev(at: int, etype: str, data: dict[str, Any]) -> None:
            emit(at, etype, cid, "contact_id", kid, attrs, data)

        def ended(at: int, resolved: bool, wrap: str, part: bool) -> None:
            ev(
                at,
                "cc.contact_ended",
                {"resolved": resolved, "wrap_code": wrap, "part_shipped": part},
            )

        ev(
            t,
            "cc.contact_started",
            {"channel": channel, "reason": reason, "linked_session_id": linked},
        )
        if ivr:
            t += self._lognormal_ms(*b.ivr_time)
            table = self._t_business_ivr if attrs["tier"] == "business" else self._t_ivr
            ivr_outcome = self._pick(table)
            ev(t, "cc.ivr_completed", {"outcome": ivr_outcome})
            if ivr_outcome == "contained":
                t += self._lognormal_ms(3.0, 0.5)
                ended(t, True, "ivr_self_service", False)
                if rng.random() < b.survey_ivr:
                    self._schedule_survey(customer, t, kid, True)
                self._repeat(customer, t, channel, reason, b.repeat_ivr_contained)
                return
            if ivr_outcome == "abandoned":
                t += self._lognormal_ms(1.0, 0.5)
                ended(t, False, "ivr_abandoned", False)
                self._repeat(customer, t, channel, reason, b.repeat_abandoned)
                return
            t += self._lognormal_ms(1.5, 0.5)
        queue, team = self._queue(channel, attrs)
        ev(t, "cc.queued", {"queue": queue})
        wait = self._lognormal_ms(*self._answer[channel])
        patience: float = math.inf
        if channel in self._patience:
            if rng.random() < b.quick_hangup:
                patience = 1_000 + int(rng.random() * 4_000)
            else:
                patience = self._lognormal_ms(*self._patience[channel])
        if patience < wait:
            t += int(patience)
            ev(t, "cc.abandoned", {})
            t += self._lognormal_ms(0.5, 0.5)
            ended(t, False, "abandoned", False)
            self._repeat(customer, t, channel, reason, b.repeat_abandoned)
            return
        t += wait
        if wait > SEGMENT_MS:
            yield t
        ev(t, "cc.answered", {"agent_id": self._agent(team), "team": team})
        handle = self._lognormal_ms(*self._handle[channel])
        transfers = 0
        if rng.random() < b.transfer:
            transfers = 2 if rng.random() < b.second_transfer else 1
        for _ in range(transfers):
            t += max(1, int(handle * (0.2 + 0.3 * rng.random())))
            if handle > SEGMENT_MS:
                yield t
            to_queue = b.transfer_queues[int(rng.random() * len(b.transfer_queues))]
            ev(t, "cc.transferred", {"to_queue": to_queue})
            t += self._lognormal_ms(20.0, 0.8)
            new_team = f"{attrs['region']}-{to_queue}"
            ev(t, "cc.answered", {"agent_id": self._agent(new_team), "team": new_team})
            handle = self._lognormal_ms(*self._handle[channel])
        t += handle
        if handle > SEGMENT_MS:
            yield t
        p_resolve = self._resolve[channel] - transfers * b.transfer_resolve_penalty
        resolved = rng.random() < p_resolve
        part = resolved and rng.random() < self._part.get(reason, 0.0)
        if part:
            wrap = "part_shipped"
        elif resolved:
            wrap = "info_provided" if reason in ("order_status", "billing") else "fixed_remotely"
        else:
            wrap = "escalated_tier2" if transfers else "follow_up_required"
        ended(t, resolved, wrap, part)
        if rng.random() < b.survey_answered:
            self._schedule_survey(customer, t, kid, resolved)
        self._repeat(
            customer, t, channel, reason, b.repeat_resolved if resolved else b.repeat_unresolved
        )
        if customer.interactions < b.max_interactions and rng.random() < self._return_visit.get(
            "contact", 0.0
        ):
            self.schedule(t + self._loguniform_ms(*b.return_visit_ms), _JOURNEY, (customer,))

    def _repeat(
        self,
        customer: _Customer,
        t: int,
        channel: str,
        reason: str,
        rule: tuple[float, int, int],
    ) -> None:
        """A follow-up contact of the same customer: mostly the same channel, sometimes not."""
        probability, low, high = rule
        if customer.interactions >= self.b.max_interactions or self.rng.random() >= probability:
            return
        if self.rng.random() < 0.25:
            channel = self._channel(customer)
        delay = self._loguniform_ms(low, high)
        self.schedule(t + delay, _CONTACT, (customer, channel, reason, None, channel == "voice"))

    def _schedule_survey(self, customer: _Customer, t: int, kid: str, resolved: bool) -> None:
        delay = self._loguniform_ms(*self.b.survey_delay_ms)
        self.schedule(t + delay, _SURVEY, (customer, kid, resolved))

    def survey(self, customer: _Customer, t: int, kid: str, resolved: bool) -> None:
        """Scores correlate with resolution; each score is sometimes skipped (null)."""
        rng = self.rng
        weights = (0.04, 0.05, 0.11, 0.35, 0.45) if resolved else (0.25, 0.20, 0.25, 0.20, 0.10)
        roll, csat = rng.random(), 5
        for score, w in enumerate(weights, start=1):
            roll -= w
            if roll < 0:
                csat = score
                break
        nps = min(10, max(0, round(csat * 2 + rng.gauss(0.0, 1.5))))
        ces = min(7, max(1, round(csat * 1.4 + rng.gauss(0.0, 1.0))))
        null_csat, null_nps, null_ces = self.b.survey_null
        data = {
            "csat": None if rng.random() < null_csat else csat,
            "nps": None if rng.random() < null_nps else nps,
            "ces": None if rng.random() < null_ces else ces,
        }
        self.emit(t, "cc.survey_submitted", customer.id, "contact_id", kid, customer.attrs, data)


# -- rate calibration ----------------------------------------------------------------------------

#: Width of the arrival-rate buckets and how far the start-up compensation looks ahead.
RATE_BUCKET_MS = 30 * MINUTE_MS
RATE_HORIZON_MS = 21 * DAY_MS
_PILOT_ROOTS = 3_000
_PILOT_SEED = 20_261_123


class _Pilot(_Model):
    """Counts, per age bucket, the events a root arrival causes (itself and all follow-ups)."""

    def __init__(self, behaviour: Behaviour) -> None:
        super().__init__(behaviour, random.Random(_PILOT_SEED), "pilot")
        self.buckets = [0] * (RATE_HORIZON_MS // RATE_BUCKET_MS + 1)
        self.total = 0
        self._todo: list[tuple[int, int, int, tuple[Any, ...]]] = []
        self._seq = 0

    def emit(
        self,
        t: int,
        etype: str,
        customer_id: str | None,
        id_key: str,
        id_value: str,
        attrs: dict[str, str],
        data: dict[str, Any],
    ) -> None:
        self.total += 1
        index = t // RATE_BUCKET_MS
        if index < len(self.buckets):
            self.buckets[index] += 1

    def schedule(self, t: int, kind: int, payload: tuple[Any, ...]) -> None:
        self._seq += 1
        heapq.heappush(self._todo, (t, self._seq, kind, payload))

    def run(self) -> None:
        for _ in range(_PILOT_ROOTS):
            self.root(int(self.rng.random() * RATE_BUCKET_MS))
            while self._todo:
                t, _, kind, payload = heapq.heappop(self._todo)
                self.start(t, kind, payload)


@lru_cache(maxsize=16)
def arrival_profile(behaviour: Behaviour) -> tuple[tuple[float, ...], float]:
    """Root arrivals per event-per-ms of target rate: (per start-up bucket, steady state).

    A root arrival causes E events on average, spread over days (contacts, repeat contacts,
    surveys). Arriving at rate/E from time zero would leave the first days short of follow-ups
    and the stream well below `rate`; instead the arrival rate of each 30-min bucket solves
    sum_j A[k-j] * f[j] = 1 (f[j] = events a root causes j buckets later), so the total event rate
    is flat from the start and converges to 1/E. Multiply by rate (events/ms) to use.
    """
    pilot = _Pilot(behaviour)
    pilot.run()
    f = [n / _PILOT_ROOTS for n in pilot.buckets]
    steady = _PILOT_ROOTS / pilot.total
    arrivals: list[float] = []
    for k in range(len(f)):
        carried = sum(arrivals[k - j] * f[j] for j in range(1, k + 1))
        arrivals.append(max(0.2 * steady, (1.0 - carried) / f[0]))
    return tuple(arrivals), steady


# -- the simulator --------------------------------------------------------------------------------


class Simulator(_Model):
    """The endless, deterministic, time-ordered event stream of one `SimConfig`.

    Iterate it once. `pending_events` (events built, not yet yielded: about rate x SEGMENT_MS)
    and `scheduled_starts` (future journeys/contacts/surveys and paused ones, a few references
    each: about 7,500 per event/s of rate once the ~10-day follow-up horizon is reached, ~0.4 KB
    each) are the only state that grows, with the rate, not with how much has been streamed.
    """

    def __init__(self, config: SimConfig) -> None:
        rng = random.Random(config.seed)
        prefix = f"{rng.getrandbits(32):08x}"
        super().__init__(
            config.behaviour, rng, prefix, tuple(config.incidents), config.anonymous_share
        )
        self.config = config
        self._pending: list[tuple[int, int, dict[str, Any]]] = []
        self._starts: list[tuple[int, int, int, tuple[Any, ...]]] = []
        self._seq = 0
        self._started = False
        profile, steady = arrival_profile(config.behaviour)
        per_ms = config.rate / 1000.0
        if config.behaviour.steady_rate_from_start:
            self._bucket_rates = tuple(a * per_ms for a in profile)
        else:
            self._bucket_rates = ()
        self.steady_arrival_rate_per_ms = steady * per_ms
        self.events_per_arrival = 1.0 / steady
        self.events_yielded = 0
        self.max_pending_events = 0
        self.max_scheduled_starts = 0

    @property
    def pending_events(self) -> int:
        return len(self._pending)

    @property
    def scheduled_starts(self) -> int:
        return len(self._starts)

    def emit(
        self,
        t: int,
        etype: str,
        customer_id: str | None,
        id_key: str,
        id_value: str,
        attrs: dict[str, str],
        data: dict[str, Any],
    ) -> None:
        self._seq += 1
        event = {
            "event_id": f"{self.rng.getrandbits(96):024x}",
            "schema_version": SCHEMA_VERSION,
            "type": etype,
            "occurred_at": format_ms(t),
            "customer_id": customer_id,
            id_key: id_value,
            "attrs": dict(attrs),
            "data": data,
        }
        heapq.heappush(self._pending, (t, self._seq, event))

    def schedule(self, t: int, kind: int, payload: tuple[Any, ...]) -> None:
        self._seq += 1
        heapq.heappush(self._starts, (t, self._seq, kind, payload))

    def _arrivals(self) -> Iterator[int]:
        """Poisson root arrivals with the piecewise-constant rate of `arrival_profile`."""
        start = self.config.start_ms
        rates = self._bucket_rates
        t = float(start)
        while True:
            k = int((t - start) // RATE_BUCKET_MS)
            if k < len(rates):
                step = self.rng.expovariate(rates[k])
                boundary = start + (k + 1) * RATE_BUCKET_MS
                if t + step >= boundary:
                    t = float(boundary)  # memoryless: redraw with the next bucket's rate
                    continue
                t += step
            else:
                t += self.rng.expovariate(self.steady_arrival_rate_per_ms)
            yield int(t)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        if self._started:
            raise RuntimeError("a Simulator streams once; create a new one to start over")
        self._started = True
        return self._run()

    def _run(self) -> Iterator[dict[str, Any]]:
        arrivals = self._arrivals()
        next_root = next(arrivals)
        pending, starts = self._pending, self._starts
        pop = heapq.heappop
        while True:
            if starts and starts[0][0] < next_root:
                t, _, kind, payload = pop(starts)
                is_root = False
            else:
                t, is_root = next_root, True
            while pending and pending[0][0] <= t:
                self.events_yielded += 1
                yield pop(pending)[2]
            if is_root:
                self.root(t)
                next_root = next(arrivals)
            else:
                self.start(t, kind, payload)
            if len(pending) > self.max_pending_events:
                self.max_pending_events = len(pending)
            if len(starts) > self.max_scheduled_starts:
                self.max_scheduled_starts = len(starts)


def generate(config: SimConfig) -> Iterator[dict[str, Any]]:
    """Endless clean events of `config`, in non-decreasing occurred_at order (see Simulator)."""
    return iter(Simulator(config))
