"""A real LSP session over stdio against `tracefix serve` on a copy of the example project."""

import asyncio
import sys
from pathlib import Path

from lsprotocol import types
from pygls.lsp.client import LanguageClient
from tests.support.projects import write

from conftest import run_all, session, wait_until


def errors(client, path: Path):
    return [d for d in client.diagnostics.get(path.as_uri(), []) if d.source == "tracefix"]


async def open_file(client, path: Path):
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(
                uri=path.as_uri(), language_id="python", version=1, text=path.read_text()
            )
        )
    )


def type_line(client, path: Path, line: int, text: str, version: int = 2) -> None:
    """Insert text at the start of a 0-based line of the open buffer, unsaved."""
    start = types.Position(line, 0)
    client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=path.as_uri(), version=version),
            content_changes=[types.TextDocumentContentChangePartial(range=types.Range(start, start), text=text)],
        )
    )


async def edit_and_save(client, path: Path, old: str, new: str, version: int):
    """Type a change into the buffer (incremental), write it like an editor does, then save."""
    text = path.read_text()
    index = text.index(old)
    line = text.count("\n", 0, index)
    col = index - (text.rfind("\n", 0, index) + 1)
    client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=path.as_uri(), version=version),
            content_changes=[
                types.TextDocumentContentChangePartial(
                    range=types.Range(types.Position(line, col), types.Position(line, col + len(old))), text=new
                )
            ],
        )
    )
    path.write_text(text.replace(old, new, 1))
    client.text_document_did_save(
        types.DidSaveTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=path.as_uri()))
    )


async def test_break_save_diagnose_fix_clear(lsp, fixed_shop):
    pricing = fixed_shop / "shop" / "pricing.py"
    test_file = fixed_shop / "tests" / "test_pricing.py"
    statuses, results = lsp.tracefix_status, lsp.tracefix_results
    await run_all(lsp)  # tracefix sees the tests pass
    results.clear()
    await open_file(lsp, pricing)
    await edit_and_save(lsp, pricing, "price * (1 - percent / 100)", "price * (1 + percent / 100)", 2)

    await wait_until(lambda: errors(lsp, test_file) and errors(lsp, pricing))  # streamed before the end
    await wait_until(lambda: any(r["done"] for r in results))
    on_test = {d.range.start.line: d for d in errors(lsp, test_file)}
    assert "test_apply_discount failed" in on_test[4].message  # `assert apply_discount(200, 25) == 150`
    assert on_test[4].related_information[0].location.uri == pricing.as_uri()
    # each failing test blames the line just changed, where the tests last passed without it
    on_code = errors(lsp, pricing)
    assert {d.range.start.line for d in on_code} == {7}
    assert all("changed at shop/pricing.py:8 since the test last passed" in d.message for d in on_code)
    [mine] = [d for d in on_code if "apply_discount: likely cause of test_apply_discount failing" in d.message]
    assert mine.related_information[0].location.uri == test_file.as_uri()

    ran = {r["nodeid"] for n in results for r in n["results"]}
    assert "tests/test_text.py::test_money" not in ran  # cannot reach apply_discount
    assert "tests/test_pricing.py::test_apply_discount" in ran

    results.clear()
    await edit_and_save(lsp, pricing, "price * (1 + percent / 100)", "price * (1 - percent / 100)", 3)
    await wait_until(lambda: not errors(lsp, test_file) and not errors(lsp, pricing))
    await wait_until(lambda: any(r["done"] for r in results))
    assert statuses and statuses[-1]["state"] == "idle"


async def test_syntax_errors_while_typing(lsp, fixed_shop):
    pricing = fixed_shop / "shop" / "pricing.py"
    await open_file(lsp, pricing)
    type_line(lsp, pricing, 5, "def broken(:\n")
    await wait_until(lambda: lsp.diagnostics.get(pricing.as_uri()))
    assert lsp.diagnostics[pricing.as_uri()][0].code == "syntax"
    assert lsp.diagnostics[pricing.as_uri()][0].range.start.line == 5


async def test_unsaved_edit_names_changed_symbols_and_affected_tests(lsp, fixed_shop):
    text = fixed_shop / "shop" / "text.py"
    await open_file(lsp, text)
    type_line(lsp, text, 4, "    amount = abs(amount)\n")
    answer = await lsp.protocol.send_request_async("tracefix/affected", {"textDocument": {"uri": text.as_uri()}})
    assert [(c.symbol, c.what) for c in answer.changed] == [("money", "changed")]
    assert sorted(s.nodeid for s in answer.selected) == [
        "tests/test_text.py::test_money",
        "tests/test_text.py::test_receipt_line_width",
    ]
    assert lsp.tracefix_results == []  # nothing runs before a save


async def test_tcp_transport(fixed_shop, unused_tcp_port):
    server = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tracefix", "serve", "--tcp", f"127.0.0.1:{unused_tcp_port}"
    )
    client = LanguageClient("probe", "1")
    try:
        for _ in range(100):
            try:
                await client.start_tcp("127.0.0.1", unused_tcp_port)
                break
            except OSError:
                await asyncio.sleep(0.1)
        result = await client.initialize_async(
            types.InitializeParams(capabilities=types.ClientCapabilities(), root_uri=fixed_shop.as_uri())
        )
        assert result.server_info.name == "tracefix"
        await client.shutdown_async(None)
    finally:
        server.kill()
        await server.wait()


async def test_fresh_workspace_runs_the_tests_a_re_export_reaches(tmp_path):
    # nothing recorded: the server selects by the static graph, through the package's star import
    write(
        tmp_path,
        {
            "pkg/__init__.py": "from .core import *\n",
            "pkg/core.py": "__all__ = ['double']\n\ndef double(x):\n    return 2 * x\n",
            "pkg/text.py": "def shout(s):\n    return s.upper()\n",
            "tests/test_core.py": "import pkg\n\ndef test_double():\n    assert pkg.double(2) == 4\n",
            "tests/test_text.py": "from pkg.text import shout\n\ndef test_shout():\n    assert shout('a') == 'A'\n",
        },
    )
    core, test_file = tmp_path / "pkg" / "core.py", tmp_path / "tests" / "test_core.py"
    async with session(tmp_path) as client:
        await open_file(client, core)
        await edit_and_save(client, core, "2 * x", "2 + x + 1", 2)
        await wait_until(lambda: any(r["done"] for r in client.tracefix_results))
        ran = {r["nodeid"]: r["outcome"] for n in client.tracefix_results for r in n["results"]}
        assert ran == {"tests/test_core.py::test_double": "failed"}
        await wait_until(lambda: errors(client, test_file))
        assert "test_double failed" in errors(client, test_file)[0].message


async def test_a_folder_not_on_disk_is_passed_over(fixed_shop):
    """A virtual workspace's folder (no file: URI) has no project; adding or removing one is no error."""
    async with session(fixed_shop) as client:
        virtual = types.WorkspaceFolder(uri="vscode-vfs://github/owner/repo", name="repo")
        client.workspace_did_change_workspace_folders(
            types.DidChangeWorkspaceFoldersParams(
                event=types.WorkspaceFoldersChangeEvent(added=[virtual], removed=[virtual])
            )
        )
        await run_all(client)  # answered after the notification was handled
        assert not [m for m in client.log_messages if m.type == types.MessageType.Error]
        assert not [m for m in client.messages if m.type == types.MessageType.Error]
