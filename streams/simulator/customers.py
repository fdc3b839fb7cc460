"""Simulated customers and what every part of the behaviour model shares.

`CustomerModel` holds the seeded draws, the `Behaviour` as lookup tables, the id counters and the
two hooks subclasses define: `emit` (an event) and `schedule` (a start for later: a journey, a
contact, a survey, or the rest of a paused one).
"""

from __future__ import annotations

import math
import random
from bisect import bisect
from collections.abc import Iterator
from typing import Any

from cxpulse.schemas.vocabulary import SEGMENT_ATTRS
from cxpulse.streams.simulator.behaviour import FLOW_STEPS, Behaviour, Weighted
from cxpulse.streams.simulator.clock import MINUTE_MS
from cxpulse.streams.simulator.scenario import Experiment, Incident

# Kinds of scheduled starts: a journey, a contact, a survey, or the rest of a paused one.
JOURNEY, CONTACT, SURVEY, RESUME = 0, 1, 2, 3

#: A journey or contact is generated in segments of at most about this much event time; the rest
#: is resumed from the start heap when its time comes. This caps how far ahead of the output
#: events are built (pending events ~ rate x SEGMENT_MS, not rate x the longest session or email
#: wait), at the price of a suspended generator per long-running journey/contact.
SEGMENT_MS = 2 * MINUTE_MS

# What journey/contact generators yield: the event time at which to resume them.
Segments = Iterator[int]


class Customer:
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


class CustomerModel:
    """State and draws shared by portal journeys and contacts. Subclasses decide what `emit` and
    `schedule` do: the simulator builds and queues events, the rate calibration only counts them."""

    def __init__(
        self,
        behaviour: Behaviour,
        rng: random.Random,
        prefix: str,
        incidents: tuple[Incident, ...] = (),
        anonymous_share: float = 0.0,
        experiments: tuple[Experiment, ...] = (),
    ) -> None:
        b = behaviour
        self.b = b
        self.rng = rng
        self.prefix = prefix
        self.anonymous_share = anonymous_share
        self.experiments = experiments
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

    # -- customers ----------------------------------------------------------------------------
    def new_customer(self) -> Customer:
        self.n_customers += 1
        customer_id = f"c-{self.prefix}-{self.n_customers}"
        locale, region = self._pick(self._t_locale).split("|")
        values = (
            self._pick(self._t_product),
            self._pick(self._t_device),
            locale,
            region,
            self._pick(self._t_tier),
            self._pick(self._t_entry),
            *(experiment.assign(customer_id) for experiment in self.experiments),
        )
        # SEGMENT_ATTRS in this order, then the experiments' attributes.
        # Customers share one (never mutated) attrs dict per segment combination: scheduled
        # follow-ups then cost a few references each. Events get their own copies.
        attrs = self._attrs.get(values)
        if attrs is None:
            names = SEGMENT_ATTRS + tuple(experiment.attr for experiment in self.experiments)
            attrs = dict(zip(names, values, strict=True))
            self._attrs[values] = attrs
        return Customer(customer_id, attrs)

    def _channel(self, customer: Customer) -> str:
        """The channel a customer contacts the center by: business customers prefer voice."""
        if customer.attrs["tier"] == "business":
            return self._pick(self._t_business_channels)
        return self._pick(self._t_channels)
