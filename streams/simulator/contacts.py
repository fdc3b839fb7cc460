"""Contact-center contacts: IVR, queue, abandon or answer (with transfers), the end and its
survey, and the repeat contacts and return visits an unresolved problem causes.
"""

from __future__ import annotations

import math
from typing import Any

from cxpulse.streams.simulator.customers import (
    CONTACT,
    JOURNEY,
    SEGMENT_MS,
    SURVEY,
    Customer,
    CustomerModel,
    Segments,
)


class ContactCenter(CustomerModel):
    """The contact-center half of the behaviour model."""

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
        customer: Customer,
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
            self.schedule(t + self._loguniform_ms(*b.return_visit_ms), JOURNEY, (customer,))

    def _repeat(
        self,
        customer: Customer,
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
        self.schedule(t + delay, CONTACT, (customer, channel, reason, None, channel == "voice"))

    def _schedule_survey(self, customer: Customer, t: int, kid: str, resolved: bool) -> None:
        delay = self._loguniform_ms(*self.b.survey_delay_ms)
        self.schedule(t + delay, SURVEY, (customer, kid, resolved))

    def survey(self, customer: Customer, t: int, kid: str, resolved: bool) -> None:
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
