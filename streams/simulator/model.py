"""The behaviour model: support-portal journeys and the contact-center contacts they cause.

Why a behavioural model rather than random events: the pipeline's figures (funnel drop-off,
escalations, containment, service level, IVR containment, FCR, surveys) only get exercised when
events relate to each other the way real ones do. A customer walks the self-service flow, gives up
or asks for help, calls minutes to days later, calls again when the first contact did not fix it,
and comes back to the portal. All of that is generated deterministically from one seed, as events
that follow the contract of design section 3 exactly.

What happens later to the same customer (a contact days after a portal visit, a repeat call, a
survey) is scheduled as a small "start" record and only turned into events when its time comes;
a journey or contact that runs long is generated in segments of SEGMENT_MS and resumed the same
way. `Model` dispatches both; its subclasses (the simulator, the rate calibration) decide what
`emit` and `schedule` do.
"""

from __future__ import annotations

from typing import Any

from cxpulse.streams.simulator.contacts import ContactCenter
from cxpulse.streams.simulator.customers import CONTACT, JOURNEY, RESUME, Segments
from cxpulse.streams.simulator.journeys import PortalJourneys


class Model(PortalJourneys, ContactCenter):
    """Portal journeys and contacts of one seeded population of customers."""

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
        """A scheduled start whose time has come."""
        if kind == RESUME:
            self._drive(payload[0])
        elif kind == JOURNEY:
            self._drive(self.journey(payload[0], t))
        elif kind == CONTACT:
            self._drive(self.contact(payload[0], t, *payload[1:]))
        else:
            self.survey(payload[0], t, *payload[1:])

    def _drive(self, segments: Segments) -> None:
        """Run a journey/contact up to its next pause and schedule the rest."""
        for resume_at in segments:
            self.schedule(resume_at, RESUME, (segments,))
            return
