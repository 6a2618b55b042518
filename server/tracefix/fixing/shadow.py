"""A private copy of the workspace where candidate fixes are tested.

Candidate code comes from a model, so it never runs in the user's tree: the tree is copied to
a temporary directory (unsaved buffers overlaid), and the tests run there under rlimits, with
HOME and TMPDIR pointing into the copy and only an allow-listed environment.

With bubblewrap (`bwrap`), the tests also run in a sandbox: the system read-only, the user's
home and other people's data hidden, a private /tmp, no network, a process namespace that dies
with tracefix, and only the copy writable. Without it, only the network can be taken away (a
network namespace, where `unshare` allows it), and `fix.sandbox` says what to do: "auto" warns,
"require" refuses fixes, "off" (the user's choice only) runs candidates with the user's whole
environment. See docs/security.md.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import math
import os
import pwd
import shlex
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

from tracefix.fixing.replies import TargetError
from tracefix.paths import is_copied_dir, read_bytes
from tracefix.running.process import (
    CPU_GRACE,
    PLUGIN_DIR,
    Limits,
    ProcessResult,
    plugin_env,
    process_limit,
    run_streaming,
)
from tracefix.running.results import RunReport
from tracefix.running.runner import run_tests
from tracefix.tracing import Trace, capture

log = logging.getLogger(__name__)

MEMORY_BYTES = 4 << 30  # address space, not RSS: numpy/BLAS reserve a lot they never touch
FILE_BYTES = 100 << 20
EXTRA_PROCESSES = 256  # RLIMIT_NPROC counts all the user's processes, so this is on top of them

# bubblewrap: the system read-only, fresh /dev and /proc; then HIDDEN, each an empty tmpfs
SYSTEM = ("--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc")
HIDDEN = ("/tmp", "/var/tmp", "/run", "/home", "/root", "/mnt", "/media")  # and the user's own home
# new namespaces of every kind (no network), killed with tracefix, no terminal to inject input into
UNSHARE = ("--unshare-all", "--die-with-parent", "--new-session")
# Without bubblewrap, each prefix runs a command in a new network namespace (loopback only, down).
NETWORK_PREFIXES = (
    ("unshare", "--map-current-user", "--net", "--"),
    ("unshare", "--map-root-user", "--net", "--"),
)
# The environment a candidate's tests see (plus HOME, TMPDIR and what the runner sets): enough to
# run Python and pytest; never credentials such as AWS_SECRET_ACCESS_KEY or the model's API key.
PASSED_ENV = frozenset(
    {
        "PATH",
        "LANG",
        "LANGUAGE",
        "TZ",
        "TERM",
        "USER",
        "LOGNAME",
        "NO_COLOR",
        "COLUMNS",
        "VIRTUAL_ENV",
        "PYTHONPATH",
        "PYTHONHASHSEED",
        "PYTHONUTF8",
        "PYTHONIOENCODING",
        "PYTHONWARNINGS",
        "PYTHONDONTWRITEBYTECODE",
    }
)
PASSED_PREFIXES = ("LC_", "PYTEST_")
# what the interpreter reads from: bound back read-only when it lies in a hidden folder
PROBE = "import json, sys; print(json.dumps([sys.prefix, sys.base_prefix, sys.exec_prefix, *sys.path]))"

UNCONFINED = (
    "bubblewrap (bwrap) is not available here, so the tests of candidate fixes run in a copy of "
    "your workspace with your permissions: code a model wrote can read your files (~/.ssh "
    "included) and write outside the copy{network}. Its environment is limited to PATH, locale "
    "and Python variables. Install bubblewrap (e.g. apt install bubblewrap) to confine it, or "
    'set tracefix.fix.sandbox to "require" to refuse fixes without it; see docs/security.md.'
)
OFF = (
    'tracefix.fix.sandbox is "off": the tests of candidate fixes run in a copy of your workspace '
    "with your permissions, your environment and the network: code a model wrote can read and "
    "write your files and reach the network."
)
REQUIRED = (
    'tracefix.fix.sandbox is "require", and bubblewrap (bwrap) cannot make a sandbox here, so no '
    "candidate fix is run. Install bubblewrap (e.g. apt install bubblewrap; it needs unprivileged "
    "user namespaces), or see docs/security.md."
)


@functools.cache
def bubblewrap() -> str | None:
    """The bwrap executable if it can make a sandbox here (user namespaces may be turned off)."""
    path = shutil.which("bwrap")
    if path is None:
        return None
    try:
        probe = subprocess.run([path, *SYSTEM, *UNSHARE, "--", "true"], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if probe.returncode != 0:
        log.info("bwrap cannot make a sandbox here: %s", probe.stderr.decode(errors="replace").strip())
        return None
    return path


@functools.cache
def network_prefix() -> tuple[str, ...]:
    """The first NETWORK_PREFIXES prefix that works here without privileges, else ()."""
    for prefix in NETWORK_PREFIXES:
        if not shutil.which(prefix[0]):
            continue
        try:
            probe = subprocess.run([*prefix, "true"], capture_output=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if probe.returncode == 0:
            return prefix
    return ()


def unconfined_warning(mode: str) -> str | None:
    """What the user should know when candidate fixes would run without the sandbox; None when they
    run in it, or are refused (mode "require": the fix says why)."""
    if mode == "off":
        return OFF
    if mode == "require" or bubblewrap():
        return None
    return UNCONFINED.format(network="" if network_prefix() else " and reach the network")


def _passed_env(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k in PASSED_ENV or k.startswith(PASSED_PREFIXES)}


def _homes() -> set[Path]:
    homes = {Path(os.path.expanduser("~"))}
    try:
        homes.add(Path(pwd.getpwuid(os.getuid()).pw_dir))
    except KeyError:
        pass
    return {h for h in homes if h.is_absolute() and h != Path("/")}


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
        sandbox: str = "auto",
    ) -> None:
        self.source = Path(root)
        self.overlay = dict(overlay or {})
        self.hide_env = hide_env  # e.g. the API key's variable: candidate code has no use for it
        self.python = python
        self.sandbox = sandbox  # fix.sandbox: "auto", "require" or "off"
        self.confined = False  # in bubblewrap
        self.offline = False  # in a network namespace of its own (bubblewrap's or unshare's)
        self.dir = Path(tempfile.mkdtemp(prefix="tracefix-shadow-"))
        self.root = self.dir / (self.source.name or "workspace")
        self._originals: dict[str, bytes] = {}
        self._import_roots: list[str] = []

    async def __aenter__(self) -> Shadow:
        try:
            if not shutil.which(self.python):
                raise TargetError(f"the test interpreter {self.python} does not exist or cannot be run")
            prefix = await asyncio.to_thread(self._prefix)
            await asyncio.to_thread(self._copy)
        except BaseException:
            self.close()
            raise
        if prefix:
            self.python = self._wrap(prefix)
        return self

    def _prefix(self) -> tuple[str, ...]:
        """What to run the test interpreter under, by `sandbox` and what this machine allows."""
        if self.sandbox == "off":
            return ()
        bwrap = bubblewrap()
        if bwrap is None and self.sandbox == "require":
            raise TargetError(REQUIRED)
        if bwrap is None:
            prefix = network_prefix()
            self.offline = bool(prefix)
            return prefix
        self.confined = self.offline = True
        return self._bwrap(bwrap)

    def _bwrap(self, bwrap: str) -> tuple[str, ...]:
        """bubblewrap's arguments: the folders to hide (empty and read-only, but /tmp: a private
        one), what the interpreter needs of them back (read-only), and the copy, the one writable
        place that outlives the run."""
        hidden = sorted({p for p in map(Path, HIDDEN) if p.is_dir()} | {h for h in _homes() if h.is_dir()})
        hidden.append(self.source.resolve())  # the original tree: the candidate sees only the copy
        argv = [bwrap, *SYSTEM]
        for path in hidden:
            argv += ["--tmpfs", str(path)]
        for path in self._needed(hidden):
            argv += ["--ro-bind", str(path), str(path)]
        argv += ["--bind", str(self.dir), str(self.dir)]
        for path in hidden:
            if path != Path("/tmp"):
                argv += ["--remount-ro", str(path)]
        return (*argv, *UNSHARE, "--")

    def _needed(self, hidden: list[Path]) -> list[Path]:
        """The interpreter's own folders (prefixes, sys.path, its real location) and our plugins'
        that lie inside a hidden folder, outermost first; never a hidden folder itself or above one."""
        wanted = [PLUGIN_DIR, Path(self.python).parent, Path(self.python).resolve().parent]
        try:
            probe = subprocess.run([self.python, "-c", PROBE], capture_output=True, text=True, timeout=30, cwd=self.dir)
            wanted += [Path(p) for p in json.loads(probe.stdout) if p]
        except (OSError, subprocess.TimeoutExpired, ValueError):
            log.warning("could not ask %s for its folders; the sandbox may hide some of them", self.python)
        found: list[Path] = []
        for path in sorted({p.resolve() for p in wanted if p.is_absolute()}, key=lambda p: len(p.parts)):
            inside = any(h in path.parents for h in hidden)
            covers = any(path == h or path in h.parents for h in hidden)  # $HOME on sys.path, say
            if inside and not covers and path.is_dir() and not any(f == path or f in path.parents for f in found):
                found.append(path)
        return found

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
            original = read_bytes(self._path(path))
            if original is None:
                raise TargetError(f"{path} is not a regular file of readable size; not testing a change of it")
            self._originals[path] = original
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
        outer = dict(os.environ) if self.sandbox == "off" else _passed_env(dict(os.environ))
        env = {k: v for k, v in outer.items() if k not in self.hide_env}
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
