"""Whether the test interpreter's installed distributions changed since a run, and to what."""

from __future__ import annotations

import json
import os
import subprocess


def installed_versions(python: str) -> dict[str, str] | None:
    """Distribution → version in the test interpreter; None if it cannot say."""
    code = (
        "import importlib.metadata as m, json, sys; "
        "json.dump({d.metadata['Name']: d.version for d in m.distributions()}, sys.stdout)"
    )
    try:
        proc = subprocess.run([python, "-c", code], check=False, capture_output=True, text=True, timeout=60)
        return json.loads(proc.stdout) if proc.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return None


def path_times(env: dict) -> tuple:
    """The current mtimes of the sys.path directories recorded in `env` (None: gone)."""
    times: list[int | None] = []
    for path in env.get("paths", {}):
        try:
            times.append(os.stat(path).st_mtime_ns)
        except OSError:
            times.append(None)
    return tuple(times)


def environment_changed(env: dict, python: str) -> bool:
    """Whether the interpreter or any of its sys.path directories changed since the run in `env`."""
    return env.get("executable") != python or path_times(env) != tuple(env.get("paths", {}).values())
