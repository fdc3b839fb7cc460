"""Durations as people write them: 90s, 30m, 6h, 7d (CLI options and API parameters).

Parsed with integer arithmetic and bounded, so any text (hundreds of digits, `1e309`, `inf`,
non-ASCII digits) is either a duration or a ValueError: never an OverflowError, a float
rounding surprise or a number no store query can take.
"""

from __future__ import annotations

import re

_DURATION = re.compile(r"([0-9]+)(?:\.([0-9]+))?(ms|s|m|h|d)", re.ASCII)
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
#: The longest duration accepted: 100 years, beyond any range, window or silence cxpulse has.
MAX_DURATION_MS = 36_500 * _UNIT_MS["d"]
#: More digits than any duration up to the maximum needs, checked before any arithmetic.
_MAX_DIGITS = 16


def parse_duration_ms(text: str) -> int:
    """'90s', '30m', '6h', '7d', '1.5h' -> milliseconds (fractions of a millisecond dropped)."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"{text[:40]!r} is not a duration such as 90s, 30m, 6h or 7d")
    whole, fraction, unit = match.group(1).lstrip("0"), match.group(2) or "", match.group(3)
    if len(whole) > _MAX_DIGITS:
        raise ValueError(f"a duration may be at most {MAX_DURATION_MS // _UNIT_MS['d']}d")
    if len(fraction) > _MAX_DIGITS:
        raise ValueError(f"a duration has at most {_MAX_DIGITS} digits after the point")
    ms = int(whole + fraction or "0") * _UNIT_MS[unit] // 10 ** len(fraction)
    if ms > MAX_DURATION_MS:
        raise ValueError(f"a duration may be at most {MAX_DURATION_MS // _UNIT_MS['d']}d")
    return ms
