"""Realistic event bytes for long-lived customers: weeks of history, then live traffic.

One `Customer` (seeded, so every run builds the same bytes) lives through activities spaced
more than the 30-minute journey gap apart (design section 4), so each is a journey of its own:

- portal visits: `session_started`, then `step_viewed` / `step_completed` through the flow's
  steps (the default funnel's `identify_device`, `diagnose`, `troubleshoot`, then design section
  3's `eligibility`, `part_selection`, `shipping`, `confirm`), `eligibility_checked`, an
  `order_placed` for the few who get that far, a drop-out at any step, sometimes a
  `help_requested` followed by a contact that names the session, sometimes a `session_ended`;
- contact-center contacts now and then: `contact_started`, `ivr_completed` (voice), `queued`,
  `answered` or `abandoned`, a `transferred` now and then, `contact_ended`, sometimes a
  `survey_submitted`.

Size: the design's example events are about 1.3 KB (docs/decisions.md, schemas/validate.py
"a few hundred bytes to ~1.3 KB"), against ~350 bytes for the simulator's minimal events. These
carry what production producers attach: UUID ids, a dozen segment attributes (the design's six
and what a portal or a contact platform adds: country, os, browser, app version, experiment,
product model, ...), and envelope context the contract keeps as unknown fields (page URL,
referrer, user agent, trace ids, the producing service): `mean_size` measures them, ~1.3 KB.

`Customer.events(history, live, now_ms)` returns `history` events ending a minute or two before
`now_ms` and spread over up to `HISTORY_SPAN_MS` (28 days, within ingest's 30-day
`MAX_EVENT_AGE_MS`), then the next `live` events: the rest of the journey in progress at
`now_ms`, then new visits and contacts.
"""

from __future__ import annotations

import random
import time
import uuid
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson

from cxpulse.schemas.validate import MAX_EVENT_AGE_MS
from cxpulse.streams import topics
from cxpulse.streams.simulator.behaviour import FLOW_STEPS

SECOND = 1000
MINUTE = 60 * SECOND
DAY = 24 * 60 * MINUTE
HISTORY_SPAN_MS = 28 * DAY
assert HISTORY_SPAN_MS < MAX_EVENT_AGE_MS - DAY, "history must stay acceptable at ingest"
#: Idle time at least between two activities of a customer: the design's 30-minute journey gap
#: and a minute more, so each visit is a journey of its own.
MIN_IDLE_MS = 31 * MINUTE
#: Mean idle time beyond MIN_IDLE_MS between live activities.
LIVE_IDLE_MEAN_MS = 15 * MINUTE
#: The self-service flow's steps (design section 3; the default funnel's step_completed steps
#: are the first three, then eligibility_checked and order_placed).
FLOW = FLOW_STEPS


class RawEvent(NamedTuple):
    """One input message: its event time, its input topic and its bytes."""

    at_ms: int
    topic: str
    value: bytes


@dataclass(frozen=True, slots=True)
class _Planned:
    """An event of an activity, its time an offset from the activity's start."""

    offset_ms: int
    type: str
    data: dict[str, Any]
    session_id: str | None = None  # portal events
    contact_id: str | None = None  # contact events
    page: str = ""  # portal events: the flow's page
    entry: str = ""  # portal events: how the visit started


PRODUCT_LINES = {
    "printers": ("LaserJet Pro M404dn", "OfficeJet Pro 9015e", "ENVY 6055e", "DeskJet 2755e"),
    "laptops": ("EliteBook 840 G10", "ProBook 450 G9", "Pavilion 15-eg3", "Spectre x360 14"),
    "monitors": ("E24 G5", "M27f FHD", "Z27k G3 4K"),
    "accessories": ("USB-C Dock G5", "Wireless Keyboard 975", "Thunderbolt Dock G4"),
}
LOCALES = (("en-US", "amer", "US"), ("en-GB", "emea", "GB"), ("de-DE", "emea", "DE"),
           ("fr-FR", "emea", "FR"), ("ja-JP", "apj", "JP"), ("es-MX", "amer", "MX"))  # fmt: skip
DEVICES = {
    "desktop": (
        "Windows 11",
        "Chrome 131.0",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/131.0.0.0 Safari/537.36",
    ),
    "mobile": (
        "Android 14",
        "Chrome Mobile 131.0",
        "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/131.0.6778.104 Mobile Safari/537.36",
    ),
    "tablet": (
        "iPadOS 18.1",
        "Mobile Safari 18.1",
        "Mozilla/5.0 (iPad; CPU OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/18.1 Mobile/15E148 Safari/604.1",
    ),
}
ENTRIES = ("search", "product_page", "email_link", "app", "chatbot", "direct")
REFERRERS = {
    "search": "https://www.google.com/",
    "product_page": "https://www.example.com/us-en/shop/support-overview",
    "email_link": "https://mail.example-customer.net/",
    "app": "android-app://com.example.smartapp/",
    "chatbot": "https://support.example.com/virtual-agent",
    "direct": "",
}
TIERS = ("consumer", "consumer", "consumer", "small_business", "enterprise")
EXPERIMENTS = ("eligibility-copy-v3:A", "eligibility-copy-v3:B", "diagnose-layout-2025q4:control",
               "diagnose-layout-2025q4:cards")  # fmt: skip
QUEUES = ("printers-tier1", "laptops-tier1", "warranty-claims", "parts-orders", "billing")
TEAMS = ("berlin-1", "austin-2", "manila-3", "krakow-1")
REASONS = ("device_fault", "order_status", "warranty", "setup", "billing")
WRAP_CODES = ("part_shipped", "troubleshooting_done", "info_given", "callback_set", "escalated_l2")
SKUS = ("RM2-5399-000CN", "CF258A", "L0S07AE", "N9K11AA", "RM1-6261-000")


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _hex(rng: random.Random, digits: int) -> str:
    return f"{rng.getrandbits(4 * digits):0{digits}x}"


def iso(epoch_ms: int) -> str:
    seconds, millis = divmod(epoch_ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}+00:00"


class Customer:
    """One customer's traffic; the same `number` and `seed` always give the same bytes."""

    def __init__(self, number: int, seed: int = 0) -> None:
        self.rng = rng = random.Random(f"cxpulse-bench-realistic/{seed}/{number}")
        self.id = f"cus_{_hex(rng, 24)}"
        self.product_line = rng.choice(list(PRODUCT_LINES))
        self.model = rng.choice(PRODUCT_LINES[self.product_line])
        self.locale, self.region, self.country = rng.choice(LOCALES)
        self.tier = rng.choice(TIERS)
        self.serial = f"{_hex(rng, 10).upper()}"
        self.ip_hash = _hex(rng, 16)
        self.customer_since = f"{rng.randint(2009, 2025)}-{rng.randint(1, 12):02d}"
        self.support_plan = rng.choice(("none", "care-pack-3y-nbd-onsite", "care-pack-2y-pickup"))
        self.warranty = f"active_until_{rng.randint(2026, 2029)}-{rng.randint(1, 12):02d}"
        self.device = rng.choice(list(DEVICES))
        self.experiment = rng.choice(EXPERIMENTS)  # experiments assign customers, not visits

    # -- planning: what happens, offsets from each activity's start -----------------------------

    def _visit(self) -> list[_Planned]:
        rng = self.rng
        session = _uuid(rng)
        if rng.random() < 0.3:  # customers switch devices now and then
            self.device = rng.choice(list(DEVICES))
        entry = rng.choice(ENTRIES)
        out = [_Planned(0, "portal.session_started", {"entry": entry}, session, page="start",
                        entry=entry)]  # fmt: skip
        at = 0

        def add(kind: str, data: dict[str, Any], page: str, lo: int = 8, hi: int = 75) -> None:
            nonlocal at
            at += rng.randint(lo, hi) * SECOND + rng.randint(0, 999)
            out.append(_Planned(at, kind, data, session, page=page, entry=entry))

        for step in FLOW:
            add("portal.step_viewed", {"step": step}, step)
            if rng.random() < 0.14:  # dropped at this step
                break
            if step == "eligibility":
                eligible = rng.random() < 0.6
                reason = "test_failed" if eligible else rng.choice(("out_of_warranty", "no_fault"))
                add("portal.eligibility_checked", {"eligible": eligible, "reason": reason}, step)
                if not eligible:
                    break
                continue
            outcome = rng.choice(("pass", "fail")) if step == "troubleshoot" else "pass"
            add("portal.step_completed", {"step": step, "outcome": outcome}, step, 15, 120)
        else:
            add("portal.order_placed", {"order_id": f"ORD-{rng.randint(10**9, 10**10 - 1)}",
                                        "sku": rng.choice(SKUS)}, "confirm")  # fmt: skip
        if rng.random() < 0.25:
            via = rng.choice(("chat", "call", "callback", "email"))
            add("portal.help_requested", {"via": via}, out[-1].page)
            if via != "email" and rng.random() < 0.8:  # the contact follows within minutes
                contact = self._contact(
                    linked=session, channel="chat" if via == "chat" else "voice"
                )
                start = at + rng.randint(30, 400) * SECOND
                out += [_Planned(start + c.offset_ms, c.type, c.data, session, c.contact_id)
                        for c in contact]  # fmt: skip
                return out
        if rng.random() < 0.3:
            add("portal.session_ended", {}, out[-1].page, 5, 60)
        return out

    def _contact(self, linked: str | None = None, channel: str | None = None) -> list[_Planned]:
        rng = self.rng
        contact = f"CT-{rng.randint(10**11, 10**12 - 1)}-{_hex(rng, 8)}"
        channel = channel or rng.choice(("voice", "voice", "voice", "chat", "email"))
        at = 0
        out = [_Planned(0, "cc.contact_started", {"channel": channel,
                        "reason": rng.choice(REASONS), "linked_session_id": linked},
                        contact_id=contact)]  # fmt: skip

        def add(kind: str, data: dict[str, Any], lo: int, hi: int) -> None:
            nonlocal at
            at += rng.randint(lo, hi) * SECOND + rng.randint(0, 999)
            out.append(_Planned(at, kind, data, contact_id=contact))

        if channel == "voice":
            ivr = rng.choices(("to_queue", "contained", "zero_out", "abandoned"), (75, 10, 12, 3))[
                0
            ]
            add("cc.ivr_completed", {"outcome": ivr}, 30, 180)
            if ivr == "abandoned":
                return out
            if ivr == "contained":
                add("cc.contact_ended", {"resolved": True, "wrap_code": None,
                                         "part_shipped": False}, 5, 30)  # fmt: skip
                return out
        add("cc.queued", {"queue": rng.choice(QUEUES)}, 1, 5)
        if rng.random() < 0.08:
            add("cc.abandoned", {}, 5, 240)
            return out
        add("cc.answered", {"agent_id": f"agt-{rng.randint(1000, 9999)}",
                            "team": rng.choice(TEAMS)}, 3, 300)  # fmt: skip
        if rng.random() < 0.12:
            add("cc.transferred", {"to_queue": rng.choice(QUEUES)}, 60, 400)
            add("cc.answered", {"agent_id": f"agt-{rng.randint(1000, 9999)}",
                                "team": rng.choice(TEAMS)}, 3, 200)  # fmt: skip
        resolved = rng.random() < 0.7
        add("cc.contact_ended", {"resolved": resolved, "wrap_code": rng.choice(WRAP_CODES),
                                 "part_shipped": resolved and rng.random() < 0.4},
            120, 900)  # fmt: skip
        if rng.random() < 0.3:
            add("cc.survey_submitted", {"csat": rng.randint(1, 5), "nps": rng.randint(0, 10),
                                        "ces": rng.choice((None, rng.randint(1, 7)))},
                60, 1200)  # fmt: skip
        return out

    def _activity(self) -> list[_Planned]:
        return self._visit() if self.rng.random() < 0.85 else self._contact()

    # -- timing and bytes -----------------------------------------------------------------------

    def events(self, history: int, live: int, now_ms: int) -> tuple[list[RawEvent], list[RawEvent]]:
        """`history` events, the last one a minute or two before `now_ms` (its journey still
        open), spread over up to HISTORY_SPAN_MS; then the next `live` events."""
        if history < 1:
            raise ValueError("history must hold at least one event")
        plans: list[list[_Planned]] = []
        seen = 0  # events of the activities before the one in progress at now_ms
        while seen + (len(plans[-1]) if plans else 0) < history:
            seen += len(plans[-1]) if plans else 0
            plans.append(self._activity())
        # The activity in progress at now_ms holds the last event of the history: its journey
        # goes on live (another activity, a few times, if the history ends with this one).
        for _ in range(100):
            if len(plans[-1]) > history - seen:
                break
            candidate = self._activity()
            if len(candidate) >= history - seen:
                plans[-1] = candidate
        current = len(plans) - 1
        last = plans[current][history - seen - 1]
        while sum(map(len, plans)) < history + live:
            plans.append(self._activity())
        starts = [0] * len(plans)
        starts[current] = now_ms - self.rng.randint(20, 120) * SECOND - last.offset_ms
        # Earlier activities: the idle time left over the span, shared out at random.
        ends = [plan[-1].offset_ms for plan in plans]  # durations so far
        slack = (starts[current] - (now_ms - HISTORY_SPAN_MS)
                 - sum(ends[:current]) - current * MIN_IDLE_MS)  # fmt: skip
        if slack < 0:
            raise ValueError(f"{history} events do not fit in {HISTORY_SPAN_MS // DAY} days")
        weights = [self.rng.expovariate(1.0) for _ in range(current + 1)]
        total = sum(weights)
        at = now_ms - HISTORY_SPAN_MS + slack * weights[0] / total
        for n in range(current):
            starts[n] = int(at)
            at += ends[n] + MIN_IDLE_MS + slack * weights[n + 1] / total
        for n in range(current + 1, len(plans)):
            starts[n] = (starts[n - 1] + ends[n - 1] + MIN_IDLE_MS
                         + int(self.rng.expovariate(1 / LIVE_IDLE_MEAN_MS)))  # fmt: skip
        out = [self._encode(starts[n] + p.offset_ms, p)
               for n, plan in enumerate(plans) for p in plan]  # fmt: skip
        return out[:history], out[history : history + live]

    def _attrs(self, portal: bool, entry: str) -> dict[str, str]:
        os_name, browser, _ = DEVICES[self.device]
        common = {
            "product_line": self.product_line,
            "locale": self.locale,
            "region": self.region,
            "tier": self.tier,
            "country": self.country,
            "product_model": self.model,
            "customer_since": self.customer_since,
            "support_plan": self.support_plan,
            "warranty_status": self.warranty,
        }
        if portal:
            return {**common, "device": self.device, "entry": entry, "os": os_name,
                    "browser": browser, "app_version": "support-portal-web/5.42.1",
                    "experiment": self.experiment,
                    "channel": "web" if entry != "app" else "app"}  # fmt: skip
        return {**common, "platform": "genesys-cloud", "site": "emea-berlin" if self.region ==
                "emea" else f"{self.region}-hub", "language": self.locale[:2],
                "ivr_flow": f"support-main-{self.product_line}-v7"}  # fmt: skip

    def _encode(self, at_ms: int, p: _Planned) -> RawEvent:
        rng = self.rng
        portal = p.type.startswith("portal.")
        entry = p.entry
        doc: dict[str, Any] = {
            "event_id": _uuid(rng),
            "schema_version": 1,
            "type": p.type,
            "occurred_at": iso(at_ms),
            "customer_id": self.id,
        }
        if portal:
            agent = DEVICES[self.device][2]
            doc["session_id"] = p.session_id
            doc["attrs"] = self._attrs(True, entry)
            doc["data"] = p.data
            slug = self.model.lower().replace(" ", "-")
            doc["context"] = {
                "page_url": f"https://support.example.com/{self.locale.lower()}/"
                f"{self.product_line}/{slug}/self-service/{p.page}?sn={self.serial}",
                "referrer": REFERRERS.get(entry, ""),
                "user_agent": agent,
                "ip_hash": self.ip_hash,
                "trace_id": _hex(rng, 32),
                "span_id": _hex(rng, 16),
                "viewport": {"desktop": "1920x1080", "mobile": "412x915"}.get(
                    self.device, "820x1180"
                ),
                "consent": "necessary,functional,analytics",
                "client_sent_at": iso(at_ms + rng.randint(0, 400)),
            }
            doc["producer"] = {"service": "support-portal-bff", "version": "2.18.0",
                               "instance": f"portal-bff-7c9d8f6b5-{_hex(rng, 5)}"}  # fmt: skip
            return RawEvent(at_ms, topics.PORTAL.name, orjson.dumps(doc))
        doc["contact_id"] = p.contact_id
        if p.session_id:
            doc["session_id"] = p.session_id
        doc["attrs"] = self._attrs(False, entry)
        doc["data"] = p.data
        doc["context"] = {
            "interaction_url": f"https://apps.mypurecloud.de/directory/#/engage/admin/"
            f"interactions/{p.contact_id}",
            "ani_hash": self.ip_hash,
            "dnis": "+49-800-000-1234" if self.region == "emea" else "+1-800-000-1234",
            "recording_id": _uuid(rng),
            "trace_id": _hex(rng, 32),
            "agent_desktop": "genesys-cloud-desktop/2.31.4",
            "source_sent_at": iso(at_ms + rng.randint(0, 900)),
        }
        doc["producer"] = {"service": "cc-event-bridge", "version": "1.9.4",
                           "instance": f"cc-bridge-5f7b9c-{_hex(rng, 5)}"}  # fmt: skip
        return RawEvent(at_ms, topics.CONTACT.name, orjson.dumps(doc))


def mean_size(events: Iterable[RawEvent]) -> float:
    sizes = [len(e.value) for e in events]
    return sum(sizes) / len(sizes)


def dress(raw: bytes) -> bytes:
    """A simulator event with what production producers attach (`Customer._encode`): ten more
    attributes, page or contact context, the producing service. Its journey, times and types are
    unchanged, so a benchmark can run the same traffic at both sizes; every value derives from
    the event's own ids, so the same input always gives the same bytes."""
    doc = orjson.loads(raw)
    rng = random.Random(f"cxpulse-bench-dress/{doc.get('event_id')}")
    owner = Customer(zlib.crc32(str(doc.get("customer_id")).encode()))
    portal = str(doc.get("type", "")).startswith("portal.")
    attrs = owner._attrs(portal, str(doc.get("attrs", {}).get("entry", "search")))
    doc["attrs"] = {**attrs, **doc.get("attrs", {})}
    at = str(doc.get("occurred_at", ""))
    if portal:
        doc["context"] = {
            "page_url": f"https://support.example.com/{owner.locale.lower()}/"
            f"{owner.product_line}/self-service/{doc.get('data', {}).get('step', 'start')}"
            f"?sn={owner.serial}",
            "referrer": REFERRERS["search"], "user_agent": DEVICES[owner.device][2],
            "ip_hash": owner.ip_hash, "trace_id": _hex(rng, 32), "span_id": _hex(rng, 16),
            "viewport": "1920x1080", "consent": "necessary,functional,analytics",
            "client_sent_at": at,
        }  # fmt: skip
        doc["producer"] = {"service": "support-portal-bff", "version": "2.18.0",
                           "instance": f"portal-bff-7c9d8f6b5-{_hex(rng, 5)}"}  # fmt: skip
    else:
        doc["context"] = {
            "interaction_url": "https://apps.mypurecloud.de/directory/#/engage/admin/"
            f"interactions/{doc.get('contact_id')}",
            "ani_hash": owner.ip_hash, "dnis": "+49-800-000-1234", "recording_id": _uuid(rng),
            "trace_id": _hex(rng, 32), "agent_desktop": "genesys-cloud-desktop/2.31.4",
            "source_sent_at": at,
        }  # fmt: skip
        doc["producer"] = {"service": "cc-event-bridge", "version": "1.9.4",
                           "instance": f"cc-bridge-5f7b9c-{_hex(rng, 5)}"}  # fmt: skip
    return orjson.dumps(doc)
