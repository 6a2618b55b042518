"""Settings from `[tool.tracefix]` in pyproject.toml and the editor's `tracefix` section.

A wrong value gives a warning and the default, never an exception. The `llm` and `review`
sections are handed on as mappings to the stages that own them.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

SELECTION_MODES = ("precise", "conservative", "all")


@dataclass
class Settings:
    python: str | None = None  # interpreter that runs the tests
    timeout: float = 120.0  # seconds for one test run
    selection: str = "precise"
    run_on_save: bool = True
    debounce_ms: int = 300  # syntax diagnostics while typing
    offer_unverified: bool = False  # fix.offerUnverified
    warm_runner: bool = True  # runs fork a pre-started pytest worker (editor only)
    parallel: str | int = "auto"  # pytest-xdist workers: "auto" for long runs, 0 never, N always
    llm: dict = field(default_factory=dict)
    review: dict = field(default_factory=dict)


_KEYS = {  # setting name as users write it → (field, check)
    "python": ("python", lambda v: v is None or (isinstance(v, str) and v.strip() != "")),
    "timeout": ("timeout", lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v <= 86400),
    "selection": ("selection", lambda v: v in SELECTION_MODES),
    "runOnSave": ("run_on_save", lambda v: isinstance(v, bool)),
    "debounceMs": ("debounce_ms", lambda v: isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 10000),
    "llm": ("llm", lambda v: isinstance(v, dict)),
    "review": ("review", lambda v: isinstance(v, dict)),
    "fix.offerUnverified": ("offer_unverified", lambda v: isinstance(v, bool)),
    "warmRunner": ("warm_runner", lambda v: isinstance(v, bool)),
    "parallel": ("parallel", lambda v: v == "auto" or (isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 256)),
}
_EXPECTED = {
    "python": "a path to a Python interpreter",
    "timeout": "a number of seconds between 0 and 86400",
    "selection": "one of " + ", ".join(SELECTION_MODES),
    "runOnSave": "true or false",
    "debounceMs": "a whole number of milliseconds (0–10000)",
    "llm": "a table of model settings",
    "review": "a table of review settings",
    "fix.offerUnverified": "true or false",
    "warmRunner": "true or false",
    "parallel": '"auto" or a number of pytest-xdist workers (0 for none)',
}


def merge(*layers: dict, source: str = "settings") -> tuple[Settings, list[str]]:
    """Later layers win. Returns the settings and a warning for each value that was ignored."""
    settings = Settings()
    warnings: list[str] = []
    for layer in layers:
        if not isinstance(layer, dict):
            warnings.append(f"{source}: expected a table of settings, got {type(layer).__name__}; ignored")
            continue
        items = list(layer.items())
        for key, value in items:
            if key == "fix" and isinstance(value, dict):
                items.extend((f"fix.{k}", v) for k, v in value.items())  # dotted like the editor's names
                continue
            if key in ("server", "trace"):
                continue  # read by the editor client
            if value is None or value == "":
                continue  # editors send unset settings as null or ""
            spec = _KEYS.get(key)
            if spec is None:
                warnings.append(f"{source}: unknown setting tracefix.{key}; ignored")
                continue
            name, ok = spec
            if not ok(value):
                default = getattr(Settings(), name)
                warnings.append(
                    f"{source}: tracefix.{key} = {value!r} is not {_EXPECTED[key]}; using {default!r}"
                )
                continue
            setattr(settings, name, float(value) if name == "timeout" else value)
    return settings, warnings


def from_pyproject(root: Path) -> tuple[dict, list[str]]:
    path = root / "pyproject.toml"
    if not path.is_file():
        return {}, []
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        return {}, [f"pyproject.toml could not be read ({exc}); [tool.tracefix] ignored"]
    table = data.get("tool", {}).get("tracefix", {})
    return (table, []) if isinstance(table, dict) else ({}, ["[tool.tracefix] is not a table; ignored"])


def load(root: Path, editor: dict | None = None) -> tuple[Settings, list[str]]:
    file_layer, warnings = from_pyproject(root)
    settings, more = merge(file_layer, editor or {}, source="tracefix settings")
    return settings, warnings + more

