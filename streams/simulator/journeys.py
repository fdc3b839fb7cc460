"""Portal journeys: a customer walks the self-service flow until an order, a drop-off or a help
request, and what that visit leads to later (a contact, a return visit).

Every draw comes from the model's one seeded rng, in a fixed order: the same seed gives the same
journeys, event for event.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cxpulse.streams.simulator.behaviour import FLOW_STEPS
from cxpulse.streams.simulator.clock import HOUR_MS
from cxpulse.streams.simulator.customers import (
    CONTACT,
    JOURNEY,
    SEGMENT_MS,
    Customer,
    CustomerModel,
    Segments,
)

#: Replacement parts ordered online, per product line.
_SKUS: dict[str, tuple[str, ...]] = {
    "printers": ("PRN-FUSER", "PRN-PICKUP-ROLLER", "PRN-INK-PUMP", "PRN-SENSOR"),
    "laptops": ("LAP-BATTERY", "LAP-KEYBOARD", "LAP-CHARGER", "LAP-FAN"),
    "monitors": ("MON-STAND", "MON-POWER-BOARD", "MON-CABLE"),
    "accessories": ("ACC-DOCK", "ACC-MOUSE", "ACC-HEADSET"),
}


class PortalJourneys(CustomerModel):
    """The portal half of the behaviour model."""

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

    def journey(self, customer: Customer, t: int) -> Segments:
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
        self, customer: Customer, t: int, via: str, sid: str, state: str
    ) -> None:
        channel = {"chat": "chat", "call": "voice", "callback": "voice", "email": "email"}[via]
        linked = sid if via == "chat" and self.rng.random() < self.b.help_chat_linked else None
        reason = self._reason(state, self.rng.random())
        at = t + self._loguniform_ms(*self._help_delay[via])
        # A callback is an outbound call: no IVR.
        self.schedule(at, CONTACT, (customer, channel, reason, linked, via == "call"))

    def _after_journey(
        self, customer: Customer, t: int, state: str, sid: str, escalated: bool
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
                t + delay, CONTACT, (customer, channel, reason, linked, channel == "voice")
            )
        p_return = self._return_visit.get(state, 0.0) * (0.5 if contacted else 1.0)
        if rng.random() < p_return:
            self.schedule(t + self._loguniform_ms(*b.return_visit_ms), JOURNEY, (customer,))
