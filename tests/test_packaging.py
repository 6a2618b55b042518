"""The release: one version for the Python package and the extension, a wheel and an sdist that
build, pass `twine check` and install into a fresh environment that then runs tracefix, and docs
that never send anyone to a package index that has no tracefix."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
import tomllib
import venv
from pathlib import Path

import pytest

from tracefix import __version__

ROOT = Path(__file__).parent.parent


def test_one_version_for_the_package_and_the_extension():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "tracefix.__version__"}
    assert json.loads((ROOT / "editors/vscode/package.json").read_text())["version"] == __version__


def test_nothing_says_to_install_tracefix_from_a_package_index():
    """tracefix is not on PyPI (yet): `pip install tracefix` fails, `pip install /path/to/tracefix` works."""
    texts = [ROOT / "README.md", ROOT / "editors/vscode/README.md", ROOT / "editors/vscode/package.json"]
    texts += [*(ROOT / "docs").glob("*.md"), *(ROOT / "editors/vscode/src").glob("*.ts")]
    offending = [
        str(p.relative_to(ROOT)) for p in texts if re.search(r"pip install tracefix\b(?![/\w.-])", p.read_text())
    ]
    assert offending == []


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_wheel_and_sdist_build_pass_twine_and_install_into_a_fresh_venv(tmp_path, shop):
    for tool in ("build", "twine"):
        assert importlib.util.find_spec(tool), f"pip install -e '.[release]' for {tool}"
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "build", "--outdir", dist, ROOT], check=True, capture_output=True)
    wheel, sdist = dist / f"tracefix-{__version__}-py3-none-any.whl", dist / f"tracefix-{__version__}.tar.gz"
    assert wheel.exists() and sdist.exists()
    subprocess.run([sys.executable, "-m", "twine", "check", "--strict", wheel, sdist], check=True)

    venv.create(tmp_path / "venv", with_pip=True)
    bin_dir = tmp_path / "venv" / ("Scripts" if sys.platform == "win32" else "bin")
    subprocess.run([bin_dir / "python", "-m", "pip", "install", "--quiet", wheel], check=True)
    version = subprocess.run([bin_dir / "tracefix", "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.strip() == f"tracefix {__version__}"
    check = subprocess.run([bin_dir / "tracefix", "check", shop, "--all", "--no-trace"], capture_output=True, text=True)
    assert check.returncode == 1, check.stderr  # the example's failing test, found by the installed tracefix
    assert "1 failed, 7 passed" in check.stdout


def test_the_extension_gives_the_interpreter_order_the_readme_gives():
    """Tests run with: the setting, a .venv or venv in the workspace, $VIRTUAL_ENV, the server's own."""
    readme = (ROOT / "README.md").read_text()
    order = readme[readme.index("Tests run with your project's interpreter") :].split("\n\n")[0]
    setting = json.loads((ROOT / "editors/vscode/package.json").read_text())["contributes"]["configuration"]
    described = setting["properties"]["tracefix.python"]["description"]
    for text in (order, described):
        marks = [text.find(mark) for mark in ("venv", "$VIRTUAL_ENV", "runs on")]
        assert -1 not in marks and marks == sorted(marks), text
