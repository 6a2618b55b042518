"""LSP features beyond the save loop: code actions, hover, traces, trust, watched files, settings."""

from pathlib import Path

import pytest_asyncio
from lsprotocol import types

from conftest import run_all, session, wait_until
from test_lsp_e2e import edit_and_save, errors, open_file


@pytest_asyncio.fixture
async def broken(shop: Path):
    """A session on the example as shipped (bulk_discount is wrong) after a run of all tests."""
    async with session(shop) as client:
        await run_all(client)
        yield client


def position(path: Path, needle: str) -> types.Position:
    text = path.read_text()
    index = text.index(needle)
    return types.Position(text.count("\n", 0, index), index - (text.rfind("\n", 0, index) + 1))


async def test_code_actions_on_a_failure(broken, shop):
    test_file = shop / "tests" / "test_pricing.py"
    await wait_until(lambda: errors(broken, test_file))
    diagnostic = errors(broken, test_file)[0]
    actions = await broken.text_document_code_action_async(
        types.CodeActionParams(
            text_document=types.TextDocumentIdentifier(uri=test_file.as_uri()),
            range=diagnostic.range,
            context=types.CodeActionContext(diagnostics=[diagnostic]),
        )
    )
    titles = [a.title for a in actions]
    assert "Rerun test_bulk_discount_tiers" in titles
    assert "Show failing trace of test_bulk_discount_tiers" in titles


async def test_show_trace_and_values_in_the_failing_run(broken, shop):
    result = await broken.workspace_execute_command_async(
        types.ExecuteCommandParams(
            command="tracefix.showTrace", arguments=["tests/test_pricing.py::test_bulk_discount_tiers"]
        )
    )
    assert "bulk_discount(quantity=50)" in result["content"]
    pricing = shop / "shop" / "pricing.py"
    await open_file(broken, pricing)
    hover = await broken.text_document_hover_async(
        types.HoverParams(
            text_document=types.TextDocumentIdentifier(uri=pricing.as_uri()), position=position(pricing, "return 5")
        )
    )
    assert "failing run" in hover.contents.value and "quantity = 50" in hover.contents.value
    values = await broken.text_document_inline_value_async(
        types.InlineValueParams(
            text_document=types.TextDocumentIdentifier(uri=pricing.as_uri()),
            range=types.Range(types.Position(0, 0), types.Position(30, 0)),
            context=types.InlineValueContext(
                frame_id=0, stopped_location=types.Range(types.Position(0, 0), types.Position(0, 0))
            ),
        )
    )
    assert any("quantity = 50" in v.text for v in values)


async def test_hover_on_a_test_says_why_it_ran(broken, shop):
    test_file = shop / "tests" / "test_pricing.py"
    hover = await broken.text_document_hover_async(
        types.HoverParams(
            text_document=types.TextDocumentIdentifier(uri=test_file.as_uri()),
            position=position(test_file, "def test_bulk"),
        )
    )
    assert "tests/test_pricing.py::test_bulk_discount_tiers" in hover.contents.value
    assert "last run: failed" in hover.contents.value
    assert "selected: selection is set to run all tests" in hover.contents.value


async def test_untrusted_workspace_runs_nothing(fixed_shop):
    async with session(fixed_shop, trusted=False) as client:
        pricing = fixed_shop / "shop" / "pricing.py"
        await open_file(client, pricing)
        await edit_and_save(client, pricing, "return 0\n", "return 1\n", 2)
        await wait_until(lambda: any(s["state"] == "untrusted" for s in client.tracefix_status))
        assert client.tracefix_results == []
        assert not errors(client, fixed_shop / "tests" / "test_pricing.py")


async def test_external_change_is_picked_up_by_the_watcher(fixed_shop):
    async with session(fixed_shop, spec="neovim") as client:  # no dynamic file watching: watchdog
        text = fixed_shop / "shop" / "text.py"
        text.write_text(text.read_text().replace('EUR"', 'USD"'))  # another program writes it
        await wait_until(lambda: errors(client, fixed_shop / "tests" / "test_text.py"))
        await wait_until(lambda: any(n["done"] for n in client.tracefix_results))
        ran = {r["nodeid"] for n in client.tracefix_results for r in n["results"]}
        assert ran == {"tests/test_text.py::test_money", "tests/test_text.py::test_receipt_line_width"}


async def test_bad_settings_warn_and_keep_serving(fixed_shop):
    async with session(fixed_shop, settings={"timeout": "soon", "selection": "some"}) as client:
        warnings = [m.message for m in client.log_messages if m.type == types.MessageType.Warning]
        assert any("tracefix.timeout = 'soon'" in w for w in warnings)
        assert any("tracefix.selection = 'some'" in w for w in warnings)
        pricing = fixed_shop / "shop" / "pricing.py"
        await open_file(client, pricing)
        await edit_and_save(client, pricing, "return 0\n", "return 1\n", 2)
        await wait_until(lambda: errors(client, fixed_shop / "tests" / "test_pricing.py"))


async def test_missing_interpreter_is_explained(fixed_shop):
    async with session(fixed_shop, settings={"python": "/no/such/python"}) as client:
        pricing = fixed_shop / "shop" / "pricing.py"
        await open_file(client, pricing)
        await edit_and_save(client, pricing, "return 0\n", "return 1\n", 2)
        await wait_until(lambda: any("does not exist" in m.message for m in client.messages))
        assert client.tracefix_status[-1]["state"] == "error"
