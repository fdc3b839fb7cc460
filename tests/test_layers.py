"""The packages form layers: each imports only from the layers below it and from itself, so no
cycle between packages can come back, and no module reaches for another module's private names.

schemas (contracts, times, dead letters) < sinks (the store) < streams (the engine and its
settings) < api, dashboards < deploy (the CLI and the wiring of a stack).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAYERS: tuple[frozenset[str], ...] = (
    frozenset({"schemas"}),
    frozenset({"sinks"}),
    frozenset({"streams"}),
    frozenset({"api", "dashboards"}),
    frozenset({"deploy"}),
)
RANK = {package: rank for rank, layer in enumerate(LAYERS) for package in layer}


def _imports(path: Path) -> Iterator[tuple[int, str, list[str]]]:
    """(line, module, names) of every `cxpulse.*` import, those under TYPE_CHECKING too: a
    type-only import is still a dependency a reader has to hold."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.startswith("cxpulse."):
                yield node.lineno, node.module, [alias.name for alias in node.names]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("cxpulse."):
                    yield node.lineno, alias.name, []


def _modules() -> list[tuple[str, Path]]:
    return [(package, path) for package in RANK
            for path in sorted((ROOT / package).rglob("*.py"))]  # fmt: skip


def _upward(package: str, module: str) -> bool:
    """Whether `package` importing `module` breaks the layering."""
    target = module.split(".")[1]
    return RANK[target] > RANK[package] or (RANK[target] == RANK[package] and target != package)


def test_every_package_has_a_layer() -> None:
    packages = {p.name for p in ROOT.iterdir() if (p / "__init__.py").exists()}
    packages -= {"tests", "bench"}  # they stand outside the product
    assert packages == set(RANK)


def test_packages_import_only_from_lower_layers() -> None:
    upward = [f"{path.relative_to(ROOT)}:{line} imports {module}"
              for package, path in _modules() for line, module, _ in _imports(path)
              if _upward(package, module)]  # fmt: skip
    assert upward == []


def test_no_module_imports_another_modules_private_names() -> None:
    private = [f"{path.relative_to(ROOT)}:{line} imports {name} from {module}"
               for _, path in _modules() for line, module, names in _imports(path)
               for name in names if name.startswith("_")]  # fmt: skip
    assert private == []


@pytest.mark.parametrize(
    ("package", "module", "expected"),
    [("sinks", "cxpulse.streams.topics", True), ("streams", "cxpulse.sinks.store", False),
     ("api", "cxpulse.dashboards.sql", True), ("deploy", "cxpulse.api.app", False),
     ("streams", "cxpulse.streams.keyed", False)],
)  # fmt: skip
def test_the_rule_flags_upward_and_sideways_imports(
    package: str, module: str, expected: bool
) -> None:
    assert _upward(package, module) is expected
