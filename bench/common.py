"""What the selection benchmarks share: real projects from PyPI sdists, the test venv, timing, results.

The sdists and the test venv live under bench/results/work, which git ignores. Checkouts live in
the temp dir: inside this repo pytest would take our pyproject.toml as a config-less project's.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
RESULTS = BENCH / "results"
WORK = RESULTS / "work"
# pytest plugins for the test runs, alone on PYTHONPATH: bench/ itself would shadow modules of the
# same name (bench/testmon.py hid pytest-testmon's `testmon` package)
PLUGINS = BENCH / "plugins"
VENV = WORK / "venv"
PYCACHE = WORK / "pycache"  # plain pytest's bytecode, outside the checkouts
CHECKOUTS = Path(tempfile.gettempdir()) / "tracefix-bench"
# the test interpreter's tools, pinned so reruns compare
TEST_TOOLS = ("pytest==9.2.0", "pytest-testmon==2.2.0")


@dataclass(frozen=True)
class RealProject:
    name: str
    version: str
    package: str  # the code mutants go into, relative to the checkout
    pythonpath: str = ""  # src layouts: where the package imports from, relative to the checkout

    def env(self, root: Path, venv: Path = VENV, bytecode: bool = False) -> dict[str, str]:
        """Environment for pytest and tracefix in a checkout: a bench venv (which tracefix picks as
        the test interpreter through VIRTUAL_ENV) and the project's imports. No bytecode in the
        checkout; bytecode: plain pytest keeps it in PYCACHE, as a developer's pytest keeps
        __pycache__ (tracefix's runs keep theirs in its own cache folder either way)."""
        paths = [str(PLUGINS)] + ([str(root / self.pythonpath)] if self.pythonpath else [])
        env = dict(os.environ, VIRTUAL_ENV=str(venv), PYTHONPATH=os.pathsep.join(paths))
        if bytecode:
            env["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
        else:
            env["PYTHONDONTWRITEBYTECODE"] = "1"
        return env


# Pure Python, tests shipped in the sdist; each suite passes in the bench venv with nothing but
# pytest (checked with pytest 9.2.0 on 3.11: no extra packages, no deselected tests):
#   boltons         519 items, 2.4 s      cachetools  465 items, 0.9 s
#   toolz           193 items, 1.0 s: 1 skipped (3.14 only); `filterwarnings = ["error", ...]` in
#                   pyproject.toml: any warning fails a test; tests live inside the package
#   tomlkit       1,203 items, 1.9 s: the toml-test data files it reads are in the sdist
#   more-itertools  765 items (unittest classes, 21,194 subtests), 25 s: PrimeFunctionTests::test_primes
#                   alone takes 15 s
PROJECTS = {
    "boltons": RealProject("boltons", "26.2.0", "boltons"),
    "cachetools": RealProject("cachetools", "8.0.1", "src/cachetools", "src"),
    "toolz": RealProject("toolz", "1.2.0", "toolz"),
    "tomlkit": RealProject("tomlkit", "0.15.2", "tomlkit"),
    "more-itertools": RealProject("more-itertools", "11.2.1", "more_itertools"),
}


def machine() -> dict:
    """Where, when and which tracefix; the load average says how much other work shared the cores."""
    return {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
        "tracefix": subprocess.run(
            ["git", "describe", "--always", "--dirty"], cwd=REPO, capture_output=True, text=True, check=False
        ).stdout.strip(),
    }


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def summary_ms(seconds: list[float]) -> dict:
    ms = [s * 1000 for s in seconds]
    return {
        "n": len(ms),
        "p50_ms": round(percentile(ms, 50), 3),
        "p90_ms": round(percentile(ms, 90), 3),
        "p99_ms": round(percentile(ms, 99), 3),
        "mean_ms": round(statistics.fmean(ms), 3),
    }


def children_cpu() -> float:
    """CPU seconds of this process's finished children and of the processes they waited for."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(argv: list[str], **kwargs) -> tuple[float, float, subprocess.CompletedProcess]:
    """(wall s, CPU s, process): CPU time does not count waiting for a core another job holds."""
    cpu, started = children_cpu(), time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)
    return time.perf_counter() - started, children_cpu() - cpu, proc


def ensure_venv(base: str | None = None) -> Path:
    """The python of a venv with TEST_TOOLS: made from this interpreter, or from `base` (another
    CPython, e.g. pyenv's 3.12: then in venv-<its directory's version>)."""
    venv = VENV if base is None else WORK / f"venv-{Path(base).resolve().parent.parent.name}"
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([base or sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *TEST_TOOLS], check=True)
    return python


def sdist(name: str, version: str) -> Path:
    """The project's source distribution, from PyPI once, kept under bench/results/work."""
    folder = WORK / "sdist"
    folder.mkdir(parents=True, exist_ok=True)
    # older sdists keep the project's name as it is (more-itertools-10.5.0.tar.gz)
    paths = [folder / f"{name.replace('-', '_')}-{version}.tar.gz", folder / f"{name}-{version}.tar.gz"]
    if not any(p.exists() for p in paths):
        pip = [sys.executable, "-m", "pip", "download", "-q", "--no-binary", ":all:", "--no-deps", "-d", str(folder)]
        subprocess.run([*pip, f"{name}=={version}"], check=True)
    found = [p for p in paths if p.exists()]
    if not found:
        raise FileNotFoundError(f"pip downloaded no {paths[0].name} for {name}=={version} into {folder}")
    return found[0]


def checkout(project: RealProject, purpose: str, tracefix_timeout: float | None = None) -> Path:
    """A fresh copy of the project's sdist, committed to git as the baseline; one per benchmark.
    tracefix_timeout: `[tool.tracefix] timeout` (seconds per run) in its pyproject.toml, committed too."""
    archive = sdist(project.name, project.version)
    root = CHECKOUTS / purpose / archive.name.removesuffix(".tar.gz")  # more_itertools-11.2.1: the sdist's folder
    shutil.rmtree(root, ignore_errors=True)
    root.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        tar.extractall(root.parent, filter="data")
    if tracefix_timeout is not None:
        with (root / "pyproject.toml").open("a", encoding="utf-8") as f:
            f.write(f"\n[tool.tracefix]\ntimeout = {tracefix_timeout:g}\n")
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost"]
    subprocess.run([*git, "init", "-q"], cwd=root, check=True)
    subprocess.run([*git, "add", "-A"], cwd=root, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "baseline"], cwd=root, check=True)
    return root


def write_source(path: Path, text: str) -> None:
    """Write a source file with an mtime in a later whole second than its last: Python and older
    pytest trust cached bytecode while the mtime's second and the size stay, and a mutant and its
    revert are often the same size."""
    last = path.stat().st_mtime_ns
    path.write_text(text, encoding="utf-8")
    later = max(time.time_ns(), (last // 10**9 + 1) * 10**9)
    os.utime(path, ns=(later, later))


def compile_tracefix() -> None:
    """Bytecode for tracefix's own modules, as installing it writes: the checks run with
    PYTHONDONTWRITEBYTECODE, which would compile them anew in each."""
    import compileall

    compileall.compile_dir(str(REPO / "server" / "tracefix"), quiet=1)


def write_results(name: str, data: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path
