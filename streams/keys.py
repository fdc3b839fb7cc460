"""Journey keys: the unit of per-key state and of partitioning (design section 2)."""

from __future__ import annotations


def journey_key(customer_id: str | None, session_id: str | None) -> str:
    """customer_id when known, else the session: anonymous sessions are their own journeys."""
    if customer_id:
        return customer_id
    return f"s:{session_id or ''}"
