"""Durations as people write them: 90s, 30m, 6h, 7d (CLI options and API parameters)."""

from __future__ import annotations

import re

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d)$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def parse_duration_ms(text: str) -> int:
    """'90s', '30m', '6h', '7d' -> milliseconds."""
    match = _DURATION.match(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a duration such as 90s, 30m, 6h or 7d")
    return int(float(match.group(1)) * _UNIT_MS[match.group(2)])
