""" "Verified" beyond the failing test: a scripted model's candidates checked against the version
the tests last passed with (differential), or on their own (property), and for special-casing
the failing test's inputs; the function runs in the shadow's sandbox."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from tests.support.projects import PRICING_GREEN as GREEN
from tests.support.projects import PRICING_LABEL as LABEL
from tests.support.projects import pricing, pricing_request

from tracefix.fixing.differential import generate, special_cases
from tracefix.fixing.engine import refine
from tracefix.fixing.prompt import Baseline
from tracefix.settings import LLMSettings

SPECIAL = (
    "```python\ndef apply_discount(price, percent):\n    if price == 200 and percent == 25:\n        return 150\n"
    "    return price * (1 - percent / 10)\n```\n"
)
CAPPED = "```python\ndef apply_discount(price, percent):\n    return price * (1 - min(percent, 30) / 100)\n```\n"
RIGHT = f"```python\n{GREEN}```\n"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return pricing(tmp_path / "proj")


def settings_for(fake) -> LLMSettings:
    return LLMSettings(model="fake-model", base_url=fake.base_url, candidates=1, rounds=2)


async def test_a_candidate_that_changes_behaviour_elsewhere_is_not_verified(project, fake_openai):
    fake = fake_openai([CAPPED, RIGHT])
    baseline = Baseline(GREEN, time.mktime((2026, 11, 28, 9, 30, 0, 0, 0, -1)))
    outcome = await refine(pricing_request(project, baselines={LABEL: baseline}), settings_for(fake))
    capped, right = outcome.attempts
    assert capped.verdict == "changes behaviour" and capped.passed == 2  # the tests alone would verify it
    assert "changes behaviour elsewhere: apply_discount(price=" in capped.reason
    assert "the version of 2026-11-28 09:30 (tests passing) gives" in capped.reason
    assert right.verdict == "verified" and outcome.best is right.candidate
    assert "agree with the version of 2026-11-28 09:30" in outcome.evidence
    assert "generated, 1 recorded)" in outcome.evidence
    assert 0 < outcome.check_time < outcome.wall_time


@pytest.mark.slow  # end to end through real runs: CI runs it with -m slow
async def test_a_candidate_that_special_cases_the_failing_input_is_not_verified(project, fake_openai):
    fake = fake_openai([SPECIAL, RIGHT])
    outcome = await refine(pricing_request(project), settings_for(fake))  # no green version: property checks only
    special, right = outcome.attempts
    assert special.verdict == "overfits" and special.passed == 2
    assert "special-cases the failing test's input (200, 25)" in special.reason
    assert right.verdict == "verified"
    assert "the same answer twice, no exception the original did not raise" in outcome.evidence


def test_special_cases_are_new_comparisons_with_the_tests_literals():
    original = "def f(x):\n    return x * 2\n"
    assert special_cases(
        "def f(x):\n    if x == 21:\n        return 42\n    return x * 2\n", original, "assert f(21) == 42", []
    ) == ["21"]
    assert special_cases("def f(x):\n    return 42 if x == 21 else x * 2\n", original, "", [{"x": "21"}]) == ["21"]
    # comparing with 0 is no special case, nor is a constant the original already compared with
    assert (
        special_cases(
            "def f(x):\n    if x == 0:\n        return 0\n    return x * 2\n", original, "assert f(0) == 0", []
        )
        == []
    )


def test_generated_inputs_follow_the_recorded_types():
    drawn = generate([{"values": "[1, 2]", "scale": "0.5"}], count=50)
    assert 10 <= len(drawn) <= 50
    assert all(set(args) == {"values", "scale"} for args in drawn)
    assert all(args["values"].startswith("[") for args in drawn)
    assert generate([{"thing": "<object at 0x1>"}]) == []  # no literal: nothing to generate from
