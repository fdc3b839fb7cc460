"""Idle journey keys held as compressed bytes, so memory follows the keys in use, not the
open journeys (issue 15).

Most open journeys wait: a journey stays open through the inactivity gap after its last event,
and a customer's contacts follow hours or days later. As live objects a key of three events
costs about 8 KB; a key untouched for `KeyLimits.freeze_after_ms` is held instead as the
zlib-compressed JSON of its unit records, what the state topic holds for it (about 450 bytes
for three events). An event or a due time that reaches the key restores it exactly as a restart
does (`KeyState.restore`, then `prime`): the path the property test holds to a full rebuild,
not a second way to rebuild a key.
"""

from __future__ import annotations

import zlib

import msgspec

from cxpulse.streams.keystate import KeyState
from cxpulse.streams.units import UnitRecord

_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(list[tuple[str, str, UnitRecord]])
#: zlib level 1: nearly the ratio of the default level (records repeat their attrs and field
#: names) at a third of the CPU.
_LEVEL = 1


class Frozen:
    """A key's unit records, compressed, and what the stage reads of a key without thawing it
    (its expiry and its next due time)."""

    __slots__ = ("blob", "newest_ms", "next_due_ms")

    def __init__(self, blob: bytes, newest_ms: int, next_due_ms: int) -> None:
        self.blob = blob
        self.newest_ms = newest_ms
        self.next_due_ms = next_due_ms


def freeze(state: KeyState) -> Frozen:
    """A key whose records are all written (see `KeyState.unit_records`), compressed."""
    units = [(kind, unit_id, record) for (kind, unit_id), record in state.unit_records().items()]
    blob = zlib.compress(_ENCODER.encode(units), _LEVEL)
    return Frozen(blob, state.newest_ms, state.next_due_ms)


def unit_records(frozen: Frozen) -> dict[tuple[str, str], UnitRecord]:
    """The records a key was frozen with, for `KeyState.restore`."""
    units = _DECODER.decode(zlib.decompress(frozen.blob))
    return {(kind, unit_id): record for kind, unit_id, record in units}
