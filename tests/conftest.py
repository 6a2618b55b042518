import asyncio
import contextlib
import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import pytest_asyncio
from lsprotocol import types
from pytest_lsp import ClientServerConfig, client_capabilities

from tracefix.project import Project

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "shop"


def interpreters() -> list[str]:
    """Interpreters that run the code we put in the user's test process: ours, and those named in
    TRACEFIX_TEST_PYTHONS (os.pathsep-separated, each with pytest; .ci/run sets 3.9 and 3.12+)."""
    named = [p for p in os.environ.get("TRACEFIX_TEST_PYTHONS", "").split(os.pathsep) if p]
    return [sys.executable] + [p for p in named if Path(p).exists()]


@functools.cache
def version_of(python: str) -> tuple[int, int]:
    out = subprocess.run([python, "-c", "import sys; print(*sys.version_info[:2])"], capture_output=True, text=True)
    major, minor = out.stdout.split()
    return int(major), int(minor)


@pytest.fixture(params=interpreters(), ids=lambda p: Path(p).parent.parent.name or p)
def python(request) -> str:
    """Each interpreter of interpreters(), for tests of what runs in the user's test process."""
    return request.param


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    """A private copy of the bundled example project (its bulk_discount has a bug)."""
    root = tmp_path / "shop"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns(".tracefix", "__pycache__", ".pytest_cache"))
    return root


@pytest.fixture
def fixed_shop(shop: Path) -> Path:
    """The example with its bug fixed: every test passes."""
    pricing = shop / "shop" / "pricing.py"
    pricing.write_text(pricing.read_text().replace("if quantity > 50:", "if quantity >= 50:"))
    return shop


async def start_client(
    root: Path,
    settings: dict | None = None,
    trusted: bool = True,
    spec: str = "visual-studio-code",
    env: dict[str, str] | None = None,
    log: Path | None = None,
):
    """A pytest-lsp client of `tracefix serve` on `root`, initialized; `env`: more environment for
    the server, `log`: its log file ($TRACEFIX_TEST_LOG, if set, takes a verbose log instead)."""
    logging = ["--log-file", str(log)] if log else []
    if os.environ.get("TRACEFIX_TEST_LOG"):
        logging = ["--verbose", "--log-file", os.environ["TRACEFIX_TEST_LOG"]]
    config = ClientServerConfig(
        server_command=[sys.executable, "-m", "tracefix", "serve", *logging],
        server_env=dict(os.environ, **env) if env else None,
    )
    client = await config.start()
    client.tracefix_status, client.tracefix_results = [], []
    client.feature("tracefix/status")(lambda ls, params: client.tracefix_status.append(plain(params)))
    client.feature("tracefix/testResults")(lambda ls, params: client.tracefix_results.append(plain(params)))
    client.set_configuration({"tracefix": settings or {}} if settings else {})
    await client.initialize_session(
        types.InitializeParams(
            capabilities=client_capabilities(spec),
            root_uri=root.as_uri(),
            workspace_folders=[types.WorkspaceFolder(uri=root.as_uri(), name=root.name)],
            initialization_options={"settings": settings or {}, "trusted": trusted},
        )
    )
    await wait_until(lambda: client.tracefix_status)  # indexed and ready
    return client


def plain(value):
    """pygls hands custom notifications' params over as namedtuples; tests read dicts."""
    if hasattr(value, "_asdict"):
        return {k: plain(v) for k, v in value._asdict().items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


async def wait_until(predicate, timeout=60.0, step=0.05):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(step)


@contextlib.contextmanager
def baselined(root: Path, python: str | None = None):
    """A Project on `root` whose current files are the baseline, closed afterwards."""
    project = Project(root, {"python": python} if python else None)
    project.baseline_everything()
    try:
        yield project
    finally:
        project.close()


@contextlib.asynccontextmanager
async def session(root: Path, **kwargs):
    """A live server session on `root`, shut down however the test ends."""
    client = await start_client(root, **kwargs)
    try:
        yield client
    finally:
        await client.shutdown_session()
        await client.stop()


async def run_all(client) -> None:
    await client.workspace_execute_command_async(types.ExecuteCommandParams(command="tracefix.runAll"))
    await wait_until(lambda: any(n["done"] for n in client.tracefix_results))


@pytest_asyncio.fixture
async def lsp(fixed_shop: Path):
    async with session(fixed_shop) as client:
        yield client


pytest_plugins = ["tests.support.fixtures"]
