"""Funnel definitions: YAML -> validated specs, with errors that name the line and the field.

A funnel is an ordered list of steps, each matching an event `type` and exact values of its
`data` and `attrs` fields (design section 4). The file is checked completely at start-up: unknown
event types, data fields the type does not have, duplicate names and bad windows are reported
together, each as `file:line: path: problem`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import msgspec
import yaml

from cxpulse.schemas.events import EVENT_TYPES, type_name

DEFAULT_FUNNELS = Path(__file__).resolve().parent / "funnels.yaml"
Name = Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_]{0,62}$")]
Scalar = str | int | float | bool | None


class StepSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: Name
    type: str
    data: dict[str, Scalar] = {}
    attrs: dict[str, str] = {}

    def matches(self, event_type: str, data: Mapping[str, Any], attrs: Mapping[str, str]) -> bool:
        """Exact equality of every listed field; a listed field the event lacks never matches."""
        if event_type != self.type:
            return False
        for name, value in self.data.items():
            if name not in data or not _same(data[name], value):
                return False
        return all(attrs.get(name) == value for name, value in self.attrs.items())


def _same(actual: Any, expected: Scalar) -> bool:
    # A boolean never equals a number (True == 1 in Python, not in a funnel definition).
    return type(actual) is type(expected) and actual == expected


class FunnelSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: Name
    steps: Annotated[list[StepSpec], msgspec.Meta(min_length=2)]
    conversion_window_seconds: Annotated[int, msgspec.Meta(gt=0)] = 86_400

    @property
    def window_ms(self) -> int:
        return self.conversion_window_seconds * 1000


class _File(msgspec.Struct, forbid_unknown_fields=True):
    funnels: Annotated[list[FunnelSpec], msgspec.Meta(min_length=1)]


class FunnelConfigError(ValueError):
    """Every problem of a funnels file, one `file:line: path: problem` per line."""


_DATA_FIELDS: dict[str, set[str]] = {}
for _cls in EVENT_TYPES:
    _info = msgspec.inspect.type_info(_cls)
    assert isinstance(_info, msgspec.inspect.StructType)
    _data = next(f for f in _info.fields if f.name == "data").type
    assert isinstance(_data, msgspec.inspect.StructType)
    _DATA_FIELDS[type_name(_cls)] = {f.encode_name for f in _data.fields}


@dataclass(frozen=True)
class _Located:
    value: Any
    lines: dict[str, int]  # JSON path ($.funnels[0].steps[1].type) -> 1-based line


def _to_python(node: yaml.Node, path: str, lines: dict[str, int]) -> Any:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        result = {}
        for key_node, value_node in node.value:
            key = key_node.value
            result[key] = _to_python(value_node, f"{path}.{key}", lines)
            lines[f"{path}.{key}"] = key_node.start_mark.line + 1  # point at the key, not value
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_to_python(item, f"{path}[{i}]", lines) for i, item in enumerate(node.value)]
    return yaml.safe_load(yaml.serialize(node))


def _locate(text: str) -> _Located:
    node = yaml.compose(text, Loader=yaml.SafeLoader)
    lines: dict[str, int] = {}
    value = _to_python(node, "$", lines) if node is not None else None
    return _Located(value, lines)


def _line(located: _Located, path: str) -> int:
    """Line of the path, else of its nearest parent that has one."""
    while path not in located.lines:
        parent = re.sub(r"(\.[^.\[]+|\[\d+\])$", "", path)
        if parent == path:
            return 1
        path = parent
    return located.lines[path]


def parse_funnels(text: str, source: str = "<funnels>") -> list[FunnelSpec]:
    try:
        located = _locate(text)
    except yaml.YAMLError as exc:
        raise FunnelConfigError(f"{source}: not valid YAML: {exc}") from exc
    try:
        parsed = msgspec.convert(located.value, _File)
    except msgspec.ValidationError as exc:
        message = str(exc)
        match = re.search(r" - at `(\$[^`]*)`$", message)
        path = match.group(1) if match else "$"
        problem = message[: match.start()] if match else message
        unknown = re.match(r"Object contains unknown field `([^`]+)`", problem)
        if unknown:
            path = f"{path}.{unknown.group(1)}"
        raise FunnelConfigError(f"{source}:{_line(located, path)}: {path}: {problem}") from exc
    problems = []
    seen_funnels: set[str] = set()
    for i, funnel in enumerate(parsed.funnels):
        where = f"$.funnels[{i}]"
        if funnel.name in seen_funnels:
            problems.append((f"{where}.name", f"duplicate funnel name {funnel.name!r}"))
        seen_funnels.add(funnel.name)
        seen_steps: set[str] = set()
        for j, step in enumerate(funnel.steps):
            at = f"{where}.steps[{j}]"
            if step.name in seen_steps:
                problems.append((f"{at}.name", f"duplicate step name {step.name!r}"))
            seen_steps.add(step.name)
            if step.type not in _DATA_FIELDS:
                problems.append((f"{at}.type", f"unknown event type {step.type!r}"))
                continue
            for name, value in step.data.items():
                if value is None:
                    problems.append(
                        (f"{at}.data.{name}", "a step cannot match null: leave the field out")
                    )
                elif name not in _DATA_FIELDS[step.type]:
                    known = ", ".join(sorted(_DATA_FIELDS[step.type])) or "none"
                    problems.append(
                        (f"{at}.data.{name}", f"{step.type} has no data field {name!r} ({known})")
                    )
    if problems:
        raise FunnelConfigError(
            "\n".join(f"{source}:{_line(located, path)}: {path}: {text}" for path, text in problems)
        )
    return parsed.funnels


def load_funnels(path: Path | None = None) -> list[FunnelSpec]:
    path = path or DEFAULT_FUNNELS
    try:
        text = path.read_text()
    except OSError as exc:
        raise FunnelConfigError(f"cannot read the funnels file {path}: {exc}") from exc
    return parse_funnels(text, str(path))
