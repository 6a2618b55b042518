"""The invariants of docs/architecture.md, each enforced here."""

import ast
import asyncio
import json
import os
import subprocess
import sys
import typing
from pathlib import Path

from lsprotocol import types

from conftest import session, wait_until
from test_lsp_e2e import edit_and_save, errors, open_file
from tracefix.running.plugin import tracefix_records as records
from tracefix.running.process import plugin_env

PACKAGE = Path(__file__).resolve().parents[1] / "server" / "tracefix"
PLUGINS = PACKAGE / "running" / "plugin"


def imports(path: Path) -> set[str]:
    """Top-level module names and full dotted names a file imports (absolute imports only)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
    return found


def core_modules() -> list[Path]:
    """Everything but the LSP layer and cli.py, the entry point that starts it."""
    return [p for p in PACKAGE.rglob("*.py") if p.relative_to(PACKAGE).parts[0] not in ("lsp", "cli.py")]


def test_the_core_never_imports_the_lsp_layer():
    for path in core_modules():
        lsp = {m for m in imports(path) if m.split(".")[0] in ("pygls", "lsprotocol") or m.startswith("tracefix.lsp")}
        assert not lsp, f"{path.relative_to(PACKAGE)} imports {sorted(lsp)}"


MUTATING = {"append", "add", "update", "pop", "clear", "setdefault", "extend", "remove", "discard", "insert"}


def test_the_lsp_layer_keeps_no_state_in_modules():
    """Session state lives in the Session (invariant 4): an lsp module binds only constants, its
    logger and type aliases, never rebinds them (`global`) and never changes a constant in place."""
    for path in sorted((PACKAGE / "lsp").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        where = path.relative_to(PACKAGE)
        constants = set()
        for node in tree.body:
            if isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for name in (t.id for t in targets if isinstance(t, ast.Name)):
                    assert name.isupper() or name == "log" or name[0].isupper(), f"{where}: module state {name}"
                    constants.add(name)
        for node in ast.walk(tree):
            assert not isinstance(node, ast.Global), f"{where}:{node.lineno}: global {node.names}"
            changed = None
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in MUTATING:
                changed = node.func.value
            elif isinstance(node, (ast.Assign, ast.AugAssign, ast.Delete)):
                targets = node.targets if isinstance(node, (ast.Assign, ast.Delete)) else [node.target]
                changed = next((t.value for t in targets if isinstance(t, ast.Subscript)), None)
            assert not (isinstance(changed, ast.Name) and changed.id in constants), (
                f"{where}:{node.lineno}: changes module-level {changed.id}"  # type: ignore[union-attr]
            )


def test_the_plugins_import_only_the_standard_library_and_pytest():
    own = {p.stem for p in PLUGINS.glob("*.py")}
    allowed = set(sys.stdlib_module_names) | {"pytest", "_pytest", "pluggy"} | own
    for path in PLUGINS.glob("*.py"):
        # each other by their package's name too, when the server (or mypy) imports them
        foreign = {m for m in imports(path) if m.split(".")[0] not in allowed and m != "tracefix.running.plugin"}
        assert not foreign, f"{path.name} imports {sorted(foreign)}"


def emitted_kinds(path: Path) -> set[str]:
    """The kinds of the records a plugin builds: each `kind=records.X` it passes."""
    return {
        getattr(records, k.value.attr)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Call)
        for k in node.keywords
        if k.arg == "kind" and isinstance(k.value, ast.Attribute)
    }


def test_the_plugins_emit_exactly_the_declared_kinds_and_build_no_record_by_hand():
    emitted = set().union(*(emitted_kinds(p) for p in PLUGINS.glob("*.py")))
    assert emitted == records.KINDS
    for path in PLUGINS.glob("*.py"):
        source = path.read_text(encoding="utf-8")
        assert '"kind":' not in source and 'kind="' not in source, f"{path.name} spells a record's kind"


def test_every_record_a_real_run_writes_has_its_declared_keys(tmp_path):
    """A pytest session with the plugins (a pass, a failed comparison, a skip, a collection error):
    each record holds the keys its TypedDict requires and no key it does not declare."""
    (tmp_path / "test_a.py").write_text(
        "import pytest\n"
        "def add(a, b):\n    return a + b\n"
        "def test_ok():\n    assert add(1, 2) == 3\n"
        "def test_wrong():\n    assert add(1, 2) == 4\n"
        "@pytest.mark.skip(reason='later')\ndef test_later():\n    pass\n"
        "@pytest.fixture\ndef broken():\n    raise RuntimeError('no')\n"
        "def test_setup(broken):\n    pass\n",
        encoding="utf-8",
    )
    (tmp_path / "test_b.py").write_text("import nowhere\n", encoding="utf-8")
    deps = tmp_path / "deps.jsonl"
    read, write = os.pipe()
    env = dict(plugin_env(), TRACEFIX_REPORT_FD=str(write), TRACEFIX_DEPS=str(deps))
    argv = [sys.executable, "-m", "pytest", "-p", "tracefix_pytest", "-p", "tracefix_deps", "-p", "no:cacheprovider"]
    subprocess.run(
        [*argv, "-p", "no:xdist", "--continue-on-collection-errors"],
        cwd=tmp_path,
        env=env,
        pass_fds=[write],
        capture_output=True,
    )
    os.close(write)
    with os.fdopen(read, encoding="utf-8") as f:
        report = [json.loads(line) for line in f]
    shapes = {t.__annotations__["kind"].__args__[0]: t for t in typing.get_args(records.Report)}
    deps_shapes = {t.__annotations__["kind"].__args__[0]: t for t in typing.get_args(records.Recorded)}
    written = [(shapes, r) for r in report] + [
        (deps_shapes, json.loads(line)) for line in deps.read_text().splitlines()
    ]
    for kinds, record in written:
        shape = kinds[record["kind"]]
        assert shape.__required_keys__ <= record.keys() <= shape.__annotations__.keys(), record
    assert {r["kind"] for _, r in written} == records.KINDS - {
        records.TRACE,
        records.DIFFERENTIAL,
        records.CONFTEST_ERROR,
    }


def test_the_plugins_parse_as_python_3_9():
    for path in PLUGINS.glob("*.py"):
        ast.parse(path.read_text(encoding="utf-8"), feature_version=(3, 9))  # raises on newer syntax


def test_only_the_store_uses_sqlite():
    users = sorted(str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py") if "sqlite3" in imports(p))
    assert users == ["index/store.py"]


async def test_the_project_is_used_on_its_worker_thread_only_and_the_loop_never_blocks(fixed_shop, tmp_path):
    """A save cycle (break, diagnostics, fix, clear) with every use of a Project checked for its
    thread, under asyncio's debug mode, which logs every event-loop callback that takes longer
    than its slow_callback_duration (0.1 s)."""
    log = tmp_path / "server.log"
    env = {"TRACEFIX_ASSERT_THREADS": "1", "PYTHONASYNCIODEBUG": "1"}
    pricing, test_file = fixed_shop / "shop" / "pricing.py", fixed_shop / "tests" / "test_pricing.py"
    async with session(fixed_shop, env=env, log=log) as client:
        await open_file(client, pricing)
        await edit_and_save(client, pricing, "if quantity >= 50:", "if quantity > 50:", 2)
        await wait_until(lambda: errors(client, test_file) and any(n["done"] for n in client.tracefix_results))
        client.tracefix_results.clear()
        await edit_and_save(client, pricing, "if quantity > 50:", "if quantity >= 50:", 3)
        await wait_until(lambda: not errors(client, test_file) and any(n["done"] for n in client.tracefix_results))
        hover = await client.text_document_hover_async(
            types.HoverParams(
                text_document=types.TextDocumentIdentifier(uri=test_file.as_uri()), position=types.Position(10, 8)
            )
        )
        assert hover is not None
    text = log.read_text()
    assert "off its worker thread" not in text and "internal error" not in text
    # pygls structures the client's capabilities once at `initialize`, before any folder is open
    after_start = text[text.index("indexed ") :]
    slow = [line for line in after_start.splitlines() if "Executing" in line and " took " in line]
    assert not slow, "\n".join(slow)


async def test_hover_answers_while_the_interpreter_probe_hangs(fixed_shop, tmp_path):
    """The probe of a slow test interpreter runs on the folder's worker thread: the editor's
    requests are answered meanwhile."""
    slow, probing = tmp_path / "slow-python", tmp_path / "probing"
    slow.write_text(f'#!/bin/sh\ntouch {probing}\nsleep 20\nexec {sys.executable} "$@"\n')
    slow.chmod(0o755)
    test_file = fixed_shop / "tests" / "test_pricing.py"
    async with session(fixed_shop, settings={"python": str(slow)}) as client:
        await client.workspace_execute_command_async(types.ExecuteCommandParams(command="tracefix.runAll"))
        await wait_until(probing.exists)
        loop = asyncio.get_running_loop()
        started = loop.time()
        hover = await asyncio.wait_for(
            client.text_document_hover_async(
                types.HoverParams(
                    text_document=types.TextDocumentIdentifier(uri=test_file.as_uri()), position=types.Position(10, 8)
                )
            ),
            5,
        )
        assert loop.time() - started < 5 and hover is not None
        assert not any(n["done"] for n in client.tracefix_results)  # the probe was still under way
