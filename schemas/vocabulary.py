"""Names every layer shares, defined once: the store's columns and the API's, the dashboards'
variables and the alert rules' segments all read them from here."""

from __future__ import annotations

#: A journey's outcome (design section 4), in the order figures list them.
OUTCOMES = ("self_served", "escalated", "abandoned", "in_progress")
#: Segment attributes of journeys (design section 1): product line, device, locale, region,
#: customer tier, entry point.
SEGMENT_ATTRS = ("product_line", "device", "locale", "region", "tier", "entry")
#: Columns of a contact that KPIs are filtered and grouped by, and contact alerts segmented by.
CONTACT_COLUMNS = ("queue", "team", "channel", "shift")
#: Journey attributes alerted on besides the overall rate, by default (docs/decisions.md: locale
#: and entry point would add many thin segments).
ALERT_SEGMENT_ATTRS = ("device", "product_line", "region", "tier")
#: Contact columns the contact rules alert on, by default.
ALERT_CONTACT_COLUMNS = ("queue", "channel")
