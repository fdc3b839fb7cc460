"""Funnel definitions: the default file loads; every mistake is reported with its line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from cxpulse.streams.funnels import FunnelConfigError, load_funnels, parse_funnels


def test_the_default_funnel_is_the_designs() -> None:
    [funnel] = load_funnels()
    assert funnel.name == "self_service"
    assert [s.name for s in funnel.steps] == [
        "session_started", "identify_device", "diagnose", "troubleshoot",
        "eligibility_checked", "eligible", "order_placed",
    ]  # fmt: skip
    assert funnel.window_ms == 24 * 3_600_000
    eligible = funnel.steps[5]
    assert eligible.matches("portal.eligibility_checked", {"eligible": True}, {})
    assert not eligible.matches("portal.eligibility_checked", {"eligible": False}, {})
    assert not eligible.matches("portal.eligibility_checked", {"eligible": 1}, {})  # bool != int
    assert not eligible.matches("portal.eligibility_checked", {}, {})  # missing never matches


BAD = """\
funnels:
  - name: checkout
    steps:
      - name: start
        type: portal.session_started
      - name: start
        type: portal.teleported
      - name: done
        type: portal.step_completed
        data: {stepp: confirm}
        attrs: {tier: business}
"""


def test_every_problem_names_its_line_and_field() -> None:
    with pytest.raises(FunnelConfigError) as error:
        parse_funnels(BAD, "funnels.yaml")
    assert str(error.value).splitlines() == [
        "funnels.yaml:6: $.funnels[0].steps[1].name: duplicate step name 'start'",
        "funnels.yaml:7: $.funnels[0].steps[1].type: unknown event type 'portal.teleported'",
        "funnels.yaml:10: $.funnels[0].steps[2].data.stepp: portal.step_completed has no data "
        "field 'stepp' (outcome, step)",
    ]


ONE_STEP = (
    "funnels:\n  - name: x\n    steps:\n      - name: a\n        type: portal.session_started\n"
)
TWO_STEPS = ONE_STEP + "      - name: b\n        type: portal.order_placed\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("funnels:\n  - name: x\n    conversion_window_seconds: 0\n    steps: []\n",
         "f.yaml:3: $.funnels[0].conversion_window_seconds: Expected `int` >= 1"),
        (TWO_STEPS + "        colour: red\n",
         "f.yaml:8: $.funnels[0].steps[1].colour: Object contains unknown"),
        ("funnels:\n  - name: Bad Name\n    steps: []\n", "f.yaml:2: $.funnels[0].name: Expected"),
        (ONE_STEP, "f.yaml:3: $.funnels[0].steps: Expected `array` of length >= 2"),
        ("funnels: [", "f.yaml: not valid YAML"),
        ("", "f.yaml:1: $: Expected `object`, got `null`"),
    ],
)  # fmt: skip
def test_shape_errors_point_at_their_line(text: str, message: str) -> None:
    with pytest.raises(FunnelConfigError) as error:
        parse_funnels(text, "f.yaml")
    assert str(error.value).startswith(message), str(error.value)


def test_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FunnelConfigError, match="cannot read the funnels file"):
        load_funnels(tmp_path / "nope.yaml")


def test_a_step_cannot_match_null() -> None:
    step = "type: portal.eligibility_checked\n        data: {reason: null}"
    text = TWO_STEPS.replace("type: portal.order_placed", step)
    with pytest.raises(FunnelConfigError, match=r"f.yaml:8: \$.funnels\[0\].steps\[1\].data"):
        parse_funnels(text, "f.yaml")
