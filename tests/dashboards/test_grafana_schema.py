"""Every generated dashboard and alert rule passes Grafana's own Go schema types, strictly.

`dashboards/schemacheck` (grafana-foundation-sdk/go) unmarshals each file strictly and runs the
types' `Validate()`; it reads JSON, so the provisioning YAML is handed over as JSON, value for
value. Go and the module come from `make setup`: without them these tests fail, not skip.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from cxpulse.dashboards.build import GRAFANA_DIR

SCHEMACHECK = GRAFANA_DIR.parent / "schemacheck"
DASHBOARDS = GRAFANA_DIR / "dashboards"
ALERTING = GRAFANA_DIR / "provisioning" / "alerting"

Document = dict[str, Any]


@pytest.fixture(scope="session")
def schemacheck(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The checker, built once per session; Go's build cache makes a rebuild take under a second."""
    go = shutil.which("go")
    if go is None:
        pytest.fail("Go is not on PATH: install Go 1.22+ and run `make setup`")
    binary = tmp_path_factory.mktemp("schemacheck") / "schemacheck"
    built = subprocess.run(
        [go, "build", "-buildvcs=false", "-o", str(binary), "."],
        cwd=SCHEMACHECK,
        env={**os.environ, "GOWORK": "off"},
        capture_output=True,
        text=True,
        timeout=240,
    )
    if built.returncode != 0:
        pytest.fail(f"building dashboards/schemacheck failed (run `make setup`):\n{built.stderr}")
    return binary


def check(binary: Path, paths: list[Path]) -> tuple[int, list[str]]:
    result = subprocess.run(
        [str(binary), *map(str, paths)], capture_output=True, text=True, timeout=60
    )
    assert result.stderr == ""
    return result.returncode, result.stdout.splitlines()


def as_json(document: Any, path: Path) -> Path:
    path.write_text(json.dumps(document))
    return path


def generated(out: Path) -> list[Path]:
    """Every generated dashboard, and every alert-rule file as JSON (in `out`)."""
    rule_files = [
        as_json(yaml.safe_load(p.read_text()), out / f"{p.stem}.json")
        for p in sorted(ALERTING.glob("*.yaml"))
    ]
    return sorted(DASHBOARDS.glob("*.json")) + rule_files


def test_generated_files_pass(schemacheck: Path, tmp_path: Path) -> None:
    files = generated(tmp_path)
    assert len([p for p in files if p.parent == DASHBOARDS]) >= 1
    assert len([p for p in files if p.parent == tmp_path]) >= 1
    assert check(schemacheck, files) == (0, [])


def first_dashboard() -> Document:
    board: Document = json.loads(sorted(DASHBOARDS.glob("*.json"))[0].read_text())
    return board


def first_rule_file() -> Document:
    rule_file: Document = yaml.safe_load(sorted(ALERTING.glob("*.yaml"))[0].read_text())
    return rule_file


def index_where(items: list[Document], wanted: Callable[[Document], bool]) -> int:
    return next(i for i, item in enumerate(items) if wanted(item))


def first_panel(board: Document) -> int:
    return index_where(board["panels"], lambda p: p["type"] != "row")


def panel_wrong_type(board: Document) -> str:
    i = first_panel(board)
    board["panels"][i]["gridPos"]["w"] = "12"
    return f"panels[{i}].gridPos.w: json: cannot unmarshal string into Go value of type uint32"


def panel_unknown_field(board: Document) -> str:
    i = first_panel(board)
    board["panels"][i]["colour"] = "red"
    return f"panels[{i}].Panel: unexpected field 'colour'"


def panel_wider_than_grid(board: Document) -> str:
    i = first_panel(board)
    board["panels"][i]["gridPos"] |= {"x": 0, "w": 25}
    return f"panels[{i}].gridPos.w: must be <= 24"


def misspelt_panel_option(board: Document) -> str:
    i = index_where(board["panels"], lambda p: p["type"] == "stat")
    board["panels"][i]["options"]["colourMode"] = "background"
    return f"panels[{i}].options.Options: unexpected field 'colourMode'"


def rule_without_condition(rule_file: Document) -> str:
    del rule_file["groups"][0]["rules"][0]["condition"]
    return "groups[0].rules[0].condition: required field is missing from input"


def rule_uid_too_long(rule_file: Document) -> str:
    # The dropoff rules' uid is `cxpulse-dropoff-<funnel>`: a long funnel name overflows it.
    rule_file["groups"][0]["rules"][0]["uid"] = "cxpulse-dropoff-" + "a_funnel_with_a_long_name"
    return "groups[0].rules[0].uid: must be <= 40"


def threshold_without_input(rule_file: Document) -> str:
    data = rule_file["groups"][0]["rules"][0]["data"]
    j = index_where(data, lambda q: q["model"].get("type") == "threshold")
    data[j]["model"]["expression"] = ""
    return f"groups[0].rules[0].data[{j}].model.expression: must be >= 1"


def rule_field_of_the_group(rule_file: Document) -> str:
    rule_file["groups"][0]["rules"][0]["folderUID"] = "cxpulse"
    return "groups[0].rules[0].folderUID: set by the group in a provisioning file"


@pytest.mark.parametrize(
    ("source", "mutate"),
    [
        (first_dashboard, panel_wrong_type),
        (first_dashboard, panel_unknown_field),
        (first_dashboard, panel_wider_than_grid),
        (first_dashboard, misspelt_panel_option),
        (first_rule_file, rule_without_condition),
        (first_rule_file, rule_uid_too_long),
        (first_rule_file, threshold_without_input),
        (first_rule_file, rule_field_of_the_group),
    ],
    ids=lambda f: f.__name__,
)
def test_mutated_copy_fails(
    schemacheck: Path,
    tmp_path: Path,
    source: Callable[[], Document],
    mutate: Callable[[Document], str],
) -> None:
    """Only the mutated file fails, on one line naming it and the error."""
    document = copy.deepcopy(source())
    error = mutate(document)
    mutated = as_json(document, tmp_path / "mutated.json")
    assert check(schemacheck, [*generated(tmp_path), mutated]) == (1, [f"{mutated}: {error}"])


def test_other_files_are_refused(schemacheck: Path, tmp_path: Path) -> None:
    sources = GRAFANA_DIR / "provisioning" / "datasources" / "cxpulse.yaml"
    other = as_json(yaml.safe_load(sources.read_text()), tmp_path / "datasources.json")
    assert check(schemacheck, [other]) == (
        1,
        [
            f"{other}: neither a dashboard (panels, schemaVersion) nor an alert-rule"
            " provisioning file (groups)"
        ],
    )
