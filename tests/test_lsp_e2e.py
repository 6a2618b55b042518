"""A real LSP session over stdio against `tracefix serve` on a copy of the example project."""

from pathlib import Path

from conftest import wait_until
from lsprotocol import types


def errors(client, path: Path):
    return [d for d in client.diagnostics.get(path.as_uri(), []) if d.source == "tracefix"]


async def open_file(client, path: Path):
    client.text_document_did_open(types.DidOpenTextDocumentParams(text_document=types.TextDocumentItem(
        uri=path.as_uri(), language_id="python", version=1, text=path.read_text())))


async def edit_and_save(client, path: Path, old: str, new: str, version: int):
    """Type a change into the buffer (incremental), write it like an editor does, then save."""
    text = path.read_text()
    index = text.index(old)
    line = text.count("\n", 0, index)
    col = index - (text.rfind("\n", 0, index) + 1)
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=path.as_uri(), version=version),
        content_changes=[types.TextDocumentContentChangePartial(
            range=types.Range(types.Position(line, col), types.Position(line, col + len(old))), text=new)],
    ))
    path.write_text(text.replace(old, new, 1))
    client.text_document_did_save(types.DidSaveTextDocumentParams(
        text_document=types.TextDocumentIdentifier(uri=path.as_uri())))


async def test_break_save_diagnose_fix_clear(lsp, fixed_shop):
    pricing = fixed_shop / "shop" / "pricing.py"
    test_file = fixed_shop / "tests" / "test_pricing.py"
    statuses, results = lsp.tracefix_status, lsp.tracefix_results
    await open_file(lsp, pricing)
    await edit_and_save(lsp, pricing, "price * (1 - percent / 100)", "price * (1 + percent / 100)", 2)

    await wait_until(lambda: errors(lsp, test_file) and errors(lsp, pricing))  # streamed before the end
    await wait_until(lambda: any(r["done"] for r in results))
    on_test = {d.range.start.line: d for d in errors(lsp, test_file)}
    assert "test_apply_discount failed" in on_test[4].message  # `assert apply_discount(200, 25) == 150`
    assert on_test[4].related_information[0].location.uri == pricing.as_uri()
    on_code = {d.range.start.line: d for d in errors(lsp, pricing)}
    assert "apply_discount gives a wrong result" in on_code[5].message  # def apply_discount
    assert on_code[5].related_information[0].location.uri == test_file.as_uri()

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
    lsp.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=pricing.as_uri(), version=2),
        content_changes=[types.TextDocumentContentChangePartial(
            range=types.Range(types.Position(5, 0), types.Position(5, 0)), text="def broken(:\n")],
    ))
    await wait_until(lambda: lsp.diagnostics.get(pricing.as_uri()))
    assert lsp.diagnostics[pricing.as_uri()][0].code == "syntax"
    assert lsp.diagnostics[pricing.as_uri()][0].range.start.line == 5
