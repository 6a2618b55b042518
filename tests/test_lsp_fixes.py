"""The fix and review actions through a real LSP session and a scripted model server."""

import ast
import asyncio
import threading
from pathlib import Path

import pytest
from lsprotocol import types

from conftest import run_all, session, wait_until
from test_fixing import RIGHT, RIGHT_HELPER, WRONG, WRONG_HELPER, broken_helper_shop
from test_lsp_e2e import edit_and_save, errors, open_file


def command_of(action) -> dict:
    """lsprotocol reads any code action that carries a command as a Command, with the command
    object stringified into `command` (its _code_action_hook); undo that for the test."""
    if isinstance(action, types.Command):
        return ast.literal_eval(action.command)
    return {"command": action.command.command, "arguments": action.command.arguments}


async def actions_at(client, path: Path, diagnostic) -> list[types.CodeAction]:
    return await client.text_document_code_action_async(
        types.CodeActionParams(
            text_document=types.TextDocumentIdentifier(uri=path.as_uri()),
            range=diagnostic.range,
            context=types.CodeActionContext(diagnostics=[diagnostic]),
        )
    )


def apply_and_save(client, path: Path, edit: types.WorkspaceEdit, version: int) -> None:
    """What an editor does when the user picks the action: edit the buffer, then save it."""
    [change] = edit.document_changes
    [text_edit] = change.edits
    client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=path.as_uri(), version=version),
            content_changes=[types.TextDocumentContentChangePartial(range=text_edit.range, text=text_edit.new_text)],
        )
    )
    lines = path.read_text().splitlines(keepends=True)
    lines[text_edit.range.start.line : text_edit.range.end.line] = [text_edit.new_text]
    path.write_text("".join(lines))
    client.text_document_did_save(
        types.DidSaveTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=path.as_uri()))
    )


@pytest.mark.slow  # end to end through real runs: CI runs it with -m slow
async def test_fix_verified_then_offered_as_a_pinned_edit(shop, fake_openai):
    fake = fake_openai([WRONG, RIGHT])
    async with session(
        shop, settings={"llm": {"model": "fake-model", "baseUrl": fake.base_url, "candidates": 1, "rounds": 2}}
    ) as client:
        pricing, test_file = shop / "shop" / "pricing.py", shop / "tests" / "test_pricing.py"
        await open_file(client, pricing)
        await run_all(client)
        diagnostic = errors(client, test_file)[0]
        titles = [a.title for a in await actions_at(client, test_file, diagnostic)]
        assert "Fix test_bulk_discount_tiers with tracefix" in titles

        result = await client.workspace_execute_command_async(
            types.ExecuteCommandParams(
                command="tracefix.fixTest", arguments=["tests/test_pricing.py::test_bulk_discount_tiers"]
            )
        )
        assert result["status"] == "verified"
        assert any("verified fix" in m.message for m in client.messages)
        assert pricing.read_text().count("if quantity > 50:") == 1  # nothing written yet

        [apply_action] = [a for a in await actions_at(client, test_file, diagnostic) if a.title.startswith("Apply")]
        assert apply_action.is_preferred and "verified:" in apply_action.title
        assert apply_action.edit.document_changes[0].text_document.version == 1  # pinned to the buffer
        apply_and_save(client, pricing, apply_action.edit, 2)
        await wait_until(lambda: not errors(client, test_file))

        # the buffer changed since: the stale edit is no longer offered
        assert not [a for a in await actions_at(client, test_file, diagnostic) if a.title.startswith("Apply")]


@pytest.mark.slow  # end to end through real runs: CI runs it with -m slow
async def test_a_fix_under_way_is_offered_disabled(shop, fake_openai):
    started, release = threading.Event(), threading.Event()

    def held(body: dict) -> str:  # the model answers only once the test has looked
        started.set()
        release.wait(60)
        return RIGHT

    fake = fake_openai([held])
    async with session(
        shop, settings={"llm": {"model": "fake-model", "baseUrl": fake.base_url, "candidates": 1, "rounds": 1}}
    ) as client:
        test_file = shop / "tests" / "test_pricing.py"
        await run_all(client)
        diagnostic = errors(client, test_file)[0]
        fixing = asyncio.ensure_future(
            client.workspace_execute_command_async(
                types.ExecuteCommandParams(
                    command="tracefix.fixTest", arguments=["tests/test_pricing.py::test_bulk_discount_tiers"]
                )
            )
        )
        await wait_until(started.is_set)
        try:
            offered = await actions_at(client, test_file, diagnostic)
        finally:
            release.set()
        [working] = [a for a in offered if a.title.endswith("(working…)")]
        assert working.title == "Fix test_bulk_discount_tiers with tracefix (working…)"
        assert working.disabled.reason == "tracefix is working on it"
        assert (await fixing)["status"] == "verified"


async def test_no_model_configured_says_how(shop):
    async with session(shop) as client:
        test_file = shop / "tests" / "test_pricing.py"
        await run_all(client)
        actions = await actions_at(client, test_file, errors(client, test_file)[0])
        asked: list[types.ShowMessageRequestParams] = []

        @client.feature(types.WINDOW_SHOW_MESSAGE_REQUEST)
        def choose(ls, params: types.ShowMessageRequestParams):
            asked.append(params)
            return params.actions[0]  # More, then OK

        for title in ("Fix test_bulk_discount_tiers with tracefix", "Set up a model for tracefix fixes"):
            [action] = [a for a in actions if a.title == title]
            command = command_of(action)
            asked.clear()
            result = await client.workspace_execute_command_async(
                types.ExecuteCommandParams(command=command["command"], arguments=command.get("arguments"))
            )
            # the bug is older than any passing run tracefix saw, so there is no change to revert
            assert "tracefix.llm.model" in result["message"]
            # a toast short enough to read whole, its More shows the whole text
            await wait_until(lambda: len(asked) == 2)
            assert [a.title for a in asked[0].actions] == ["More"]
            assert len(asked[0].message) < 100 and "tracefix.llm.model" in asked[0].message
            assert asked[1].message == result["message"]


async def hover_at(client, path: Path, line: int):
    return await client.text_document_hover_async(
        types.HoverParams(
            text_document=types.TextDocumentIdentifier(uri=path.as_uri()), position=types.Position(line, 8)
        )
    )


@pytest.mark.slow  # end to end through real runs: CI runs it with -m slow
async def test_a_callers_failure_offers_a_verified_fix_of_the_helper(fixed_shop, fake_openai):
    root = broken_helper_shop(fixed_shop)
    fake = fake_openai([WRONG_HELPER, RIGHT_HELPER])
    settings = {"llm": {"model": "fake-model", "baseUrl": fake.base_url, "candidates": 1, "rounds": 2}}
    async with session(root, settings=settings) as client:
        pricing, checkout = root / "shop" / "pricing.py", root / "shop" / "checkout.py"
        await open_file(client, pricing)
        await run_all(client)
        # once the failures are traced, the errors are on the helper's line that makes the wrong
        # value; its correct caller has none
        await wait_until(lambda: {d.range.start.line for d in errors(client, pricing)} == {7})
        assert not errors(client, checkout)
        assert "apply_discount: likely cause of test_checkout failing" in " ".join(
            d.message for d in errors(client, pricing)
        )
        # hover on the helper: the values of a failing run, which test and call, what it returned
        hover = None
        for _ in range(120):  # the failing tests are traced in the background after the run
            hover = await hover_at(client, pricing, 7)
            if hover is not None:
                break
            await asyncio.sleep(0.5)
        text = hover.contents.value
        assert "**In the failing run of tests/" in text
        assert "`apply_discount(price=" in text and ", call #" in text and ", returned " in text

        result = await client.workspace_execute_command_async(
            types.ExecuteCommandParams(command="tracefix.fixTest", arguments=["tests/test_checkout.py::test_checkout"])
        )
        assert result["status"] == "verified" and result["paths"] == ["shop/pricing.py"], result
        assert "tests/test_checkout.py::test_checkout" in result["tests"] and len(result["tests"]) == 3

        # Ctrl+. on the broken line, with no squiggle in the request, offers the fix
        actions = await client.text_document_code_action_async(
            types.CodeActionParams(
                text_document=types.TextDocumentIdentifier(uri=pricing.as_uri()),
                range=types.Range(types.Position(7, 4), types.Position(7, 4)),
                context=types.CodeActionContext(diagnostics=[]),
            )
        )
        [apply_action] = [a for a in actions if a.title.startswith("Apply verified fix")]
        [change] = apply_action.edit.document_changes
        assert (change.text_document.uri, change.text_document.version) == (pricing.as_uri(), 1)
        apply_and_save(client, pricing, apply_action.edit, 2)
        await wait_until(lambda: not errors(client, pricing))


async def test_review_comments_add_show_hover_resolve(fixed_shop):
    async with session(fixed_shop) as client:
        text = fixed_shop / "shop" / "text.py"
        await open_file(client, text)
        rng = {"start": {"line": 7, "character": 0}, "end": {"line": 8, "character": 0}}
        added = await client.workspace_execute_command_async(
            types.ExecuteCommandParams(
                command="tracefix.addReviewComment", arguments=[text.as_uri(), rng, "name the widths", "ana"]
            )
        )

        def reviews():
            return [d for d in client.diagnostics.get(text.as_uri(), []) if d.source == "tracefix-review"]

        await wait_until(reviews)
        [d] = reviews()
        assert d.severity == types.DiagnosticSeverity.Information and d.range.start.line == 7
        assert d.message == "review (@ana): name the widths"
        hover = await client.text_document_hover_async(
            types.HoverParams(
                text_document=types.TextDocumentIdentifier(uri=text.as_uri()), position=types.Position(7, 4)
            )
        )
        assert "@ana: name the widths" in hover.contents.value
        titles = [a.title for a in await actions_at(client, text, d)]
        assert {"Address review: name the widths", "Set up a model for tracefix fixes"} <= set(titles)
        await client.workspace_execute_command_async(
            types.ExecuteCommandParams(command="tracefix.resolveReviewComment", arguments=[added["id"]])
        )
        await wait_until(lambda: not reviews())


async def test_review_critic_files_comments_after_a_save(fixed_shop, fake_openai):
    reply = 'Looks mostly fine.\n{"line": 5, "comment": "money() prints -0.00 EUR for tiny negative amounts"}\n'
    fake = fake_openai([reply])
    settings = {"llm": {"model": "fake-model", "baseUrl": fake.base_url}, "review": {"critic": True}}
    async with session(fixed_shop, settings=settings) as client:
        text = fixed_shop / "shop" / "text.py"
        await open_file(client, text)
        await edit_and_save(client, text, 'return f"{amount:,.2f} EUR"', 'return f"{amount:,.2f} EUR"  # money', 2)

        def critic_comments():
            return [d for d in client.diagnostics.get(text.as_uri(), []) if d.source == "tracefix-review"]

        await wait_until(critic_comments)
        [d] = critic_comments()
        assert d.message == "review (@tracefix-critic): money() prints -0.00 EUR for tiny negative amounts"
        assert d.range.start.line == 4
        assert "def money(amount):" in fake.chat_requests[0].prompt  # it saw the function and its tests
        assert "test_money" in fake.chat_requests[0].prompt
