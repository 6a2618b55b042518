"""The VS Code extension in a real editor: code-server driven by headless Chromium."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent / "vscode"
CHROMIUM = os.environ.get("TRACEFIX_CHROMIUM", "/usr/bin/chromium")


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_failure_shows_in_problems_with_a_quick_fix():
    if not (shutil.which("node") and shutil.which("npm")):
        pytest.skip("node and npm are needed for code-server and the extension build")
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"no Chromium at {CHROMIUM} (set TRACEFIX_CHROMIUM)")
    subprocess.run(["bash", HERE / "setup.sh"], check=True, timeout=900)
    env = {**os.environ, "TRACEFIX_PYTHON": sys.executable}
    result = subprocess.run(["node", HERE / "run.mjs"], env=env, timeout=500)
    assert result.returncode == 0, f"run.mjs failed; screenshot and logs in {HERE / 'artifacts'}"
