"""The VS Code extension in a real editor: the .vsix, with the server inside, in code-server on a
machine where tracefix is installed nowhere, driven by headless Chromium."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent / "vscode"
CHROMIUM = os.environ.get("TRACEFIX_CHROMIUM", "/usr/bin/chromium")


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_the_vsix_alone_shows_a_failure_on_save_with_a_quick_fix():
    if not (shutil.which("node") and shutil.which("npm")):
        pytest.skip("node and npm are needed for code-server and the extension build")
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"no Chromium at {CHROMIUM} (set TRACEFIX_CHROMIUM)")
    subprocess.run(["bash", HERE / "setup.sh"], check=True, timeout=900)
    # tracefix is installed in this test's venv, not in the interpreter the venv was made from
    env = {**os.environ, "TRACEFIX_PYTHON": sys._base_executable}
    result = subprocess.run(["node", HERE / "run.mjs"], env=env, timeout=1500)
    assert result.returncode == 0, f"run.mjs failed; screenshot and logs in {HERE / 'artifacts'}"
