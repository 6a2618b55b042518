"""tracefix's real refinement path against a real model (SmolLM2-135M on llama.cpp).

Plumbing, not quality: the model is far too small to fix code. What must hold with any model:
a real call happened, each candidate was judged with a reason, nothing is called verified unless
its tests really pass, and the user's files are untouched.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from tests.support.models import LlamaServer, llama_python, model_path
from tests.support.projects import ROOT_ON_PATH, write

from tracefix.fixing.engine import refine
from tracefix.fixing.prompt import FixRequest
from tracefix.settings import LLMSettings
from tracefix.tracing import capture

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

NODEID = "tests/test_prices.py::test_discount"
SOURCE = '''\
def discounted(price, percent):
    """The price after taking percent off."""
    cut = price * percent
    return price - cut
'''
TEST = """\
from prices import discounted


def test_discount():
    assert discounted(200, 10) == 180
"""


@pytest.fixture(scope="module")
def llama_url():
    if llama_python() is None:
        pytest.skip("llama_cpp is not importable: pip install 'llama-cpp-python[server]' or set TRACEFIX_LLAMA_PYTHON")
    server = LlamaServer(model_path("smollm2"), n_ctx=4096)
    with server as base_url:
        yield base_url, server.model_name


def snapshot(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


def passes(root: Path, path: str, text: str, tmp: Path) -> bool:
    """Does the test pass with `text` in place of `path`, in a fresh copy of the project?"""
    copy = Path(tempfile.mkdtemp(dir=tmp)) / "copy"
    shutil.copytree(root, copy)
    (copy / path).write_text(text)
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", NODEID], cwd=copy)
    return run.returncode == 0


async def test_refine_with_a_real_model(llama_url, tmp_path: Path) -> None:
    base_url, model = llama_url
    root = write(tmp_path / "project", {"prices.py": SOURCE, "tests/test_prices.py": TEST, **ROOT_ON_PATH})
    before = snapshot(root)

    trace = await capture(root, sys.executable, NODEID, timeout=60)
    assert trace.outcome == "failed" and trace.error is None
    request = FixRequest(
        root=root,
        python=sys.executable,
        path="prices.py",
        qualname="discounted",
        function_source=SOURCE,
        function_start_line=1,
        function_end_line=4,
        signature="def discounted(price, percent):",
        docstring="The price after taking percent off.",
        test_nodeid=NODEID,
        test_source=TEST,
        failure_message=trace.exception or "",
        trace_text=trace.render(),
    )
    settings = LLMSettings(model=model, base_url=base_url, candidates=2, rounds=2, timeout=300)
    outcome = await refine(request, settings)

    assert outcome.error is None, outcome.error
    assert outcome.model_calls >= 1 and outcome.tokens_in > 0 and outcome.tokens_out > 0
    assert outcome.attempts
    for attempt in outcome.attempts:
        assert attempt.verdict in ("verified", "regresses", "fails", "rejected")
        assert attempt.reason.strip()
        assert (attempt.candidate is None) == (attempt.verdict == "rejected")
        if attempt.verdict == "verified":
            assert passes(root, "prices.py", attempt.candidate.file_text, tmp_path)
    if outcome.best is not None:
        assert passes(root, "prices.py", outcome.best.file_text, tmp_path)
    assert snapshot(root) == before
