"""A private copy of the workspace where candidate fixes are tested.

Candidate code comes from a model, so it never runs in the user's tree: the tree is copied to
a temporary directory (unsaved buffers overlaid), and the tests run there under rlimits, with
HOME pointing into the copy and, where the OS allows it without privileges, no network.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import os
import shlex
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

from tracefix.fixing.replies import TargetError
from tracefix.paths import is_copied_dir
from tracefix.running.process import CPU_GRACE, Limits, ProcessResult, plugin_env, process_limit, run_streaming
from tracefix.running.results import RunReport
from tracefix.running.runner import run_tests
from tracefix.tracing import Trace, capture

log = logging.getLogger(__name__)

MEMORY_BYTES = 4 << 30  # address space, not RSS: numpy/BLAS reserve a lot they never touch
FILE_BYTES = 100 << 20
EXTRA_PROCESSES = 256  # RLIMIT_NPROC counts all the user's processes, so this is on top of them

# Each prefix runs a command in a new network namespace (loopback only, and down).
SANDBOXES = (
    ("unshare", "--map-current-user", "--net", "--"),
    ("unshare", "--map-root-user", "--net", "--"),
    ("bwrap", "--dev-bind", "/", "/", "--unshare-net", "--"),
)


@functools.cache
def sandbox_prefix() -> tuple[str, ...]:
    """The first SANDBOXES prefix that works here without privileges, else ()."""
    for prefix in SANDBOXES:
        if not shutil.which(prefix[0]):
            continue
        try:
            probe = subprocess.run([*prefix, "true"], capture_output=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if probe.returncode == 0:
            return prefix
    log.info("no unprivileged network namespace (unshare, bwrap): candidate tests run with network access")
    return ()


def _ignore(directory: str, names: list[str]) -> set[str]:
    skipped = set()
    for name in names:
        path = os.path.join(directory, name)
        try:
            mode = os.lstat(path).st_mode
        except OSError:
            skipped.add(name)  # vanished meanwhile
            continue
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode) or stat.S_ISLNK(mode)):
            skipped.add(name)  # sockets and fifos: copying a fifo would block
        elif stat.S_ISDIR(mode) and not is_copied_dir(Path(path)):
            skipped.add(name)
    return skipped


class Shadow:
    """`async with Shadow(root, python, overlay) as shadow:` then write/run/reset per candidate."""

    def __init__(
        self,
        root: Path,
        python: str,
        overlay: dict[str, str] | None = None,
        *,
        hide_env: tuple[str, ...] = (),
    ) -> None:
        self.source = Path(root)
        self.overlay = dict(overlay or {})
        self.hide_env = hide_env  # e.g. the API key's variable: candidate code has no use for it
        self.python = python
        self.sandboxed = False
        self.dir = Path(tempfile.mkdtemp(prefix="tracefix-shadow-"))
        self.root = self.dir / (self.source.name or "workspace")
        self._originals: dict[str, bytes] = {}
        self._import_roots: list[str] = []

    async def __aenter__(self) -> Shadow:
        try:
            if not shutil.which(self.python):
                raise TargetError(f"the test interpreter {self.python} does not exist or cannot be run")
            await asyncio.to_thread(self._copy)
            prefix = await asyncio.to_thread(sandbox_prefix)
        except BaseException:
            self.close()
            raise
        if prefix:
            self.python = self._wrap(prefix)
            self.sandboxed = True
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def _copy(self) -> None:
        try:
            shutil.copytree(self.source, self.root, symlinks=True, ignore=_ignore)
        except shutil.Error as exc:
            source, _, why = exc.args[0][0]
            raise TargetError(f"cannot copy the workspace to test fixes there: {source}: {why}") from None
        for path, text in self.overlay.items():
            self._put(path, text)
        (self.dir / "home").mkdir()
        (self.dir / "tmp").mkdir()

    def _path(self, path: str) -> Path:
        """root/path, refused if reaching it leaves the copy (.., a link to a directory outside)."""
        target = self.root / path
        if not target.parent.resolve().is_relative_to(self.dir.resolve()):
            raise TargetError(f"{path} is reached through a symlink that leaves the workspace; not testing there")
        return target

    def _put(self, path: str, text: str) -> None:
        target = self._path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_symlink():
            target.unlink()  # write a file of our own, never through a link into the user's tree
        target.write_text(text, encoding="utf-8", newline="")

    def _wrap(self, prefix: tuple[str, ...]) -> str:
        """An executable that runs the test interpreter inside the sandbox (run_tests takes a path)."""
        wrapper = self.dir / "python"
        command = shlex.join([*prefix, self.python])
        wrapper.write_text(f'#!/bin/sh\nexec {command} "$@"\n')
        wrapper.chmod(0o755)
        return str(wrapper)

    def write(self, path: str, text: str) -> None:
        """Put a candidate's text at `path` (relative posix); reset() undoes it."""
        if path not in self._originals:
            self._originals[path] = self._path(path).read_bytes()
        self._put(path, text)
        root = self._import_root(path)
        if root not in self._import_roots:
            self._import_roots.append(root)

    def reset(self, path: str) -> None:
        (self.root / path).write_bytes(self._originals[path])

    def _import_root(self, path: str) -> str:
        """The sys.path entry the changed module is imported from: above its top package.

        Put first on PYTHONPATH, so an editable install of the project cannot shadow the copy.
        """
        directory = (self.root / path).parent
        while (directory / "__init__.py").exists() and directory != self.root:
            directory = directory.parent
        return str(directory)

    def _env_and_limits(self, timeout: float) -> tuple[dict[str, str], Limits]:
        env = {k: v for k, v in os.environ.items() if k not in self.hide_env}
        env["HOME"] = str(self.dir / "home")
        env["TMPDIR"] = str(self.dir / "tmp")
        env["PYTHONPATH"] = os.pathsep.join([*self._import_roots, *filter(None, [env.get("PYTHONPATH")])])
        limits = Limits(
            timeout=timeout,
            cpu_seconds=math.ceil(timeout) + CPU_GRACE,  # one core's worth: threads add none
            memory_bytes=MEMORY_BYTES,
            processes=process_limit(EXTRA_PROCESSES),
            file_bytes=FILE_BYTES,
        )
        return env, limits

    async def run(self, nodeids: list[str], *, timeout: float) -> RunReport:
        env, limits = self._env_and_limits(timeout)
        return await run_tests(self.root, self.python, nodeids, limits=limits, env=env)

    async def trace(self, nodeid: str, *, timeout: float) -> Trace:
        """The block trace of a test in the copy, under the same sandbox and limits as run()."""
        env, limits = self._env_and_limits(timeout)
        return await capture(self.root, self.python, nodeid, timeout=timeout, env=env, limits=limits)

    async def execute(self, args: list[str], *, timeout: float) -> ProcessResult:
        """Run the test interpreter on args in the copy, under the same sandbox and limits as
        run(), with tracefix's plugin modules importable (the differential check's runner)."""
        env, limits = self._env_and_limits(timeout)
        return await run_streaming([self.python, *args], cwd=self.root, env=plugin_env(env), limits=limits)
