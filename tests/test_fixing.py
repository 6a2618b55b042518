"""Fixes end to end through `tracefix check --fix` against a scripted OpenAI-compatible server:
only what the tests verify is offered as verified, and only --apply writes."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from test_localizing import add_checkout, break_discount

WRONG = "Sure! Here it is:\n```python\ndef bulk_discount(quantity):\n    if quantity > 49:\n        return 10\n    return 5\n```\n"
RIGHT = (
    "The boundary is wrong.\n```python\ndef bulk_discount(quantity):\n"
    '    """Percent off for buying many: 5 % from 10 items, 10 % from 50."""\n'
    "    if quantity >= 50:\n        return 10\n    if quantity >= 10:\n        return 5\n    return 0\n```"
)


def user_config(root: Path) -> Path:
    """The user's config folder (XDG_CONFIG_HOME) for a project copied to `root`: beside it."""
    return root.parent / "config"


def configure(root: Path, base_url: str, **llm):
    """The model, in the user's config file: the endpoint is a setting no workspace file may set."""
    settings = {"model": "fake-model", "baseUrl": base_url, "candidates": 1, "rounds": 2, **llm}
    table = "\n".join(f"{k} = {json.dumps(v)}" for k, v in settings.items())
    path = user_config(root) / "tracefix" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"[llm]\n{table}\n")


def check(root: Path, *args):
    proc = subprocess.run(
        [sys.executable, "-m", "tracefix", "check", str(root), "--all", "--format", "json", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={"PATH": "/usr/bin:/bin", "HOME": str(root), "XDG_CONFIG_HOME": str(user_config(root))},
    )
    assert proc.returncode in (0, 1), proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.slow  # end to end through real runs: CI runs it with -m slow
def test_wrong_then_right_only_the_right_one_is_verified(shop, fake_openai):
    fake = fake_openai([WRONG, RIGHT])
    configure(shop, fake.base_url)
    before = (shop / "shop" / "pricing.py").read_text()
    data = check(shop, "--fix")
    [fix] = data["fixes"]
    assert fix["verified"] and fix["subject"] == "tests/test_pricing.py::test_bulk_discount_tiers"
    assert "+    if quantity >= 50:" in fix["diff"] and "> 49" not in fix["diff"]
    assert fix["evidence"].startswith("verified: ")
    assert fix["model_calls"] == 2 and not fix["applied"]
    assert (shop / "shop" / "pricing.py").read_text() == before  # --fix alone writes nothing
    first, second = fake.chat_requests
    assert "quantity=50" in first.prompt  # the block trace is in the prompt
    assert "Earlier attempt 1 did not work" in second.prompt
    assert "Execution trace with this attempt" in second.prompt  # the wrong candidate's own run
    assert "returned 5" in second.prompt.split("Earlier attempt 1")[1]  # bulk_discount(10) → 5 with `> 49`


@pytest.mark.slow  # end to end through real runs: CI runs it with -m slow
def test_apply_writes_the_verified_fix(shop, fake_openai):
    configure(shop, fake_openai([RIGHT]).base_url, rounds=1)
    data = check(shop, "--fix", "--apply")
    assert data["fixes"][0]["applied"]
    assert "if quantity >= 50:" in (shop / "shop" / "pricing.py").read_text()
    assert check(shop)["summary"].startswith("8 passed")


def test_a_fix_that_breaks_other_tests_is_never_verified(shop, fake_openai):
    configure(shop, fake_openai([WRONG, WRONG]).base_url)
    data = check(shop, "--fix", "--apply")
    [fix] = data["fixes"]
    assert not fix["verified"] and not fix["applied"]
    assert fix["evidence"].startswith("not verified")


def test_without_a_model_it_says_how_to_configure_one(shop):
    data = check(shop, "--fix")
    assert "tracefix.llm.model" in data["fixes"][0]["error"]


NAMED = (
    "```python\ndef receipt_line(name, amount):\n    name_width, amount_width = 20, 16\n"
    '    return f"{name:<{name_width}}{money(amount):>{amount_width}}"\n```'
)


def test_review_comment_addressed_and_removed_by_the_same_edit(fixed_shop, fake_openai):
    text = fixed_shop / "shop" / "text.py"
    text.write_text(
        text.read_text().replace(
            "def receipt_line(name, amount):\n",
            "def receipt_line(name, amount):\n    # review(@ana): name the column widths instead of magic numbers\n",
        )
    )
    fake = fake_openai([NAMED])
    configure(fixed_shop, fake.base_url, rounds=1)
    data = check(fixed_shop, "--reviews", "--fix", "--apply")
    assert [c["body"] for c in data["reviews"]] == ["name the column widths instead of magic numbers"]
    [fix] = data["fixes"]
    assert fix["verified"] and fix["applied"], fix
    after = text.read_text()
    assert "name_width, amount_width = 20, 16" in after and "# review" not in after
    assert "Change type:" in fake.chat_requests[0].prompt


EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "reviews"


def test_github_export_and_jsonl_reviews_are_listed_with_anchors(shop):
    (shop / ".tracefix" / "reviews").mkdir(parents=True)
    for name in ("pr-7.json", "notes.jsonl"):
        (shop / ".tracefix" / "reviews" / name).write_text((EXAMPLES / name).read_text())
    reviews = {c["id"]: c for c in check(shop, "--reviews", "--no-run")["reviews"]}
    off_by_one = reviews["github:1001"]
    assert (off_by_one["path"], off_by_one["start_line"], off_by_one["symbol"]) == (
        "shop/pricing.py",
        13,
        "bulk_discount",
    )
    assert off_by_one["replies"][0][0] == "bo"  # the reply is part of the thread
    assert reviews["github:1004"]["state"] == "outdated"
    assert reviews["jsonl:cart-qty"]["symbol"] == "Cart.add"


def respond(body: dict) -> str:
    """A model that answers each review by what it asks for."""
    prompt = "\n".join(m["content"] for m in body["messages"])
    if "magic numbers" in prompt:
        return NAMED
    # a rewrite of Cart.add that breaks test_rejects_zero_quantity
    return "```python\ndef add(self, unit_price, quantity=1):\n    self.lines.append((unit_price, int(quantity)))\n```"


def test_review_edit_that_breaks_tests_is_only_an_unverified_suggestion(fixed_shop, fake_openai):
    shop = fixed_shop
    (shop / ".tracefix" / "reviews").mkdir(parents=True)
    (shop / ".tracefix" / "reviews" / "pr.json").write_text(
        json.dumps(
            [
                {
                    "id": 1,
                    "path": "shop/text.py",
                    "line": 9,
                    "side": "RIGHT",
                    "body": "Avoid the magic numbers 20 and 16",
                    "diff_hunk": '@@ -8,2 +8,2 @@ def receipt_line(name, amount):\n     return f"{name:<20}{money(amount):>16}"',
                    "user": {"login": "ana"},
                    "commit_id": "abc",
                },
                {
                    "id": 2,
                    "path": "shop/cart.py",
                    "line": 11,
                    "side": "RIGHT",
                    "body": "Truncate fractional quantities",
                    "diff_hunk": "@@ -10,2 +10,2 @@ class Cart:\n         if quantity <= 0:",
                    "user": {"login": "bo"},
                    "commit_id": "abc",
                },
            ]
        )
    )
    configure(shop, fake_openai([respond] * 8).base_url, rounds=1)
    data = check(shop, "--reviews", "--fix", "--apply", "--no-trace")
    by_subject = {f["subject"]: f for f in data["fixes"]}
    good, bad = by_subject["review github:1"], by_subject["review github:2"]
    assert good["verified"] and good["applied"]
    assert not bad["verified"] and not bad["applied"]
    assert "test_rejects_zero_quantity" in bad["evidence"]  # which tests the change breaks
    assert "int(quantity)" not in (shop / "shop" / "cart.py").read_text()
    states = {c["id"]: c["state"] for c in check(shop, "--reviews", "--no-run")["reviews"]}
    assert states == {"github:1": "resolved", "github:2": "open"}  # applying resolved the one it addressed


def test_the_prompt_shows_the_test_helpers_that_hold_the_asserts(shop, fake_openai):
    tests = shop / "tests" / "test_pricing.py"
    tests.write_text(
        tests.read_text().replace(
            "def test_bulk_discount_tiers():\n    assert bulk_discount(1) == 0\n    assert bulk_discount(10) == 5\n    assert bulk_discount(50) == 10\n",
            "def check(fn):\n    assert fn(1) == 0\n    assert fn(50) == 10\n\n\ndef test_bulk_discount_tiers():\n    check(bulk_discount)\n",
        )
    )
    fake = fake_openai([RIGHT])
    configure(shop, fake.base_url, rounds=1)
    check(shop, "--fix")
    assert "def check(fn):\n    assert fn(1) == 0" in fake.chat_requests[0].prompt


# A helper broken under its callers: test_checkout → checkout → apply_discount.
WRONG_HELPER = "```python\ndef apply_discount(price, percent):\n    return price * (1 - percent / 50)\n```\n"
RIGHT_HELPER = (
    "The helper divides the percentage by 10.\n```python\n# shop/pricing.py::apply_discount\n"
    "def apply_discount(price, percent):\n"
    '    """Price after taking `percent` percent off."""\n'
    "    return price * (1 - percent / 100)\n```\n"
)


def broken_helper_shop(root: Path) -> Path:
    """Only callers of apply_discount test it, and it is broken before tracefix ever saw it pass."""
    add_checkout(root)
    tests = root / "tests" / "test_pricing.py"
    tests.write_text(
        tests.read_text().replace("def test_apply_discount():\n    assert apply_discount(200, 25) == 150\n", "")
    )
    break_discount(root)
    return root


@pytest.mark.slow  # end to end through real runs: CI runs it with -m slow
def test_a_callers_failure_gets_a_verified_fix_of_the_helper(fixed_shop, fake_openai):
    root = broken_helper_shop(fixed_shop)
    fake = fake_openai([WRONG_HELPER, RIGHT_HELPER])
    configure(root, fake.base_url)
    data = check(root, "--fix", "--apply")
    [fix] = data["fixes"]  # the failing callers blame the same helper: one fix job
    assert "tests/test_checkout.py::test_checkout" in fix["tests"] and len(fix["tests"]) == 3
    assert fix["verified"] and fix["outcome"] == "verified" and fix["applied"]
    assert fix["paths"] == ["shop/pricing.py"] and "percent / 100" in fix["diff"]
    assert fix["suspects"][0]["function"] == "apply_discount"
    assert fix["model_calls"] == 2 and fix["tokens"] > 0 and fix["seconds"] > 0
    assert [a.split(":")[1].strip() for a in fix["attempts"]] == ["fails", "verified"]
    first, second = fake.chat_requests
    assert "Function `apply_discount` in shop/pricing.py" in first.prompt  # the cheap round: the top suspect
    # then any suspect may be rewritten, the evidence against each beside it
    assert "Suspect 1: `shop/pricing.py::apply_discount`" in second.prompt and "Suspect 2: `" in second.prompt
    assert check(root)["summary"].startswith("8 passed")


@pytest.mark.slow  # end to end through real runs: CI runs it with -m slow
def test_unverified_suggestions_are_not_shown_unless_offered(fixed_shop, fake_openai):
    root = broken_helper_shop(fixed_shop)
    configure(root, fake_openai([WRONG_HELPER]).base_url, rounds=1)
    [fix] = check(root, "--fix")["fixes"]
    assert (fix["outcome"], fix["offered"], fix["diff"]) == ("unverified", False, "")
    assert fix["model_calls"] == 1 and fix["suspects"][0]["function"] == "apply_discount"
    configure(root, fake_openai([WRONG_HELPER]).base_url, rounds=1)  # a new script of replies
    with (root / "pyproject.toml").open("a") as config:
        config.write("\n[tool.tracefix.fix]\nofferUnverified = true\n")
    [fix] = check(root, "--fix")["fixes"]
    assert fix["offered"] and "percent / 50" in fix["diff"]


@pytest.mark.slow  # end to end through real runs: CI runs it with -m slow
def test_the_revert_of_the_breaking_change_is_offered_without_a_model(fixed_shop):
    root = add_checkout(fixed_shop)
    assert check(root)["summary"].startswith("9 passed")  # tracefix sees the tests pass
    break_discount(root)
    [fix] = check(root, "--fix", "--apply")["fixes"]
    assert fix["title"] == "Revert the change at shop/pricing.py:8 that broke 4 tests"
    assert fix["verified"] and fix["applied"] and fix["model_calls"] == 0
    assert "percent / 100" in (root / "shop" / "pricing.py").read_text()
