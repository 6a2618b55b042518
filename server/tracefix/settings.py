"""Settings from `[tool.tracefix]` in pyproject.toml, the user's config file and the editor's
`tracefix` section.

A wrong value gives a warning and the default, never an exception: one validator for every
setting, the model's (`llm`) included. The `review` section is handed on as a mapping to the
reviews stage. A few settings only the user may set, never a file in the workspace: see
USER_ONLY and docs/security.md.
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from urllib.parse import urlparse

from tracefix.paths import read_text

SELECTION_MODES = ("precise", "conservative", "all")
SANDBOX_MODES = ("auto", "require", "off")  # fix.sandbox: see fixing/shadow.py
LLM_PREFIX = "tracefix.llm."
DEFAULT_BASE_URL = "https://api.openai.com/v1"


@dataclass
class LLMSettings:
    model: str | None = None
    base_url: str | None = None  # else $OPENAI_BASE_URL, else OpenAI
    api_key_env: str = "OPENAI_API_KEY"
    timeout: float = 60.0
    candidates: int = 3
    rounds: int = 2
    temperature: float = 0.2
    allow_remote: bool = True
    redact: list[str] = field(default_factory=list)  # patterns of secrets, on top of the built-in ones

    def endpoint(self, env: Mapping[str, str] | None = None) -> str:
        env = os.environ if env is None else env
        return (self.base_url or env.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")


def _snake(key: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", key).lower()


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check(name: str, value) -> str | None:
    """Why `value` is wrong for setting `name`, or None."""
    if name == "model":
        ok = value is None or (isinstance(value, str) and value.strip())
        return None if ok else "should be a model name"
    if name == "base_url":
        if value is None:
            return None
        parsed = urlparse(value) if isinstance(value, str) else None
        ok = parsed is not None and parsed.scheme in ("http", "https") and bool(parsed.hostname)
        return None if ok else "should be an http(s) URL such as http://127.0.0.1:8080/v1"
    if name == "api_key_env":
        ok = isinstance(value, str) and bool(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value))
        return None if ok else "should be the name of an environment variable, not the key itself"
    if name == "timeout":
        return None if _number(value) and value > 0 else "should be a positive number of seconds"
    if name in ("candidates", "rounds"):
        ok = isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 10
        return None if ok else "should be a whole number from 1 to 10"
    if name == "temperature":
        return None if _number(value) and 0 <= value <= 2 else "should be a number from 0 to 2"
    if name == "allow_remote":
        return None if isinstance(value, bool) else "should be true or false"
    if name == "redact":
        if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
            return "should be a list of regular expressions"
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as exc:
                return f"has an invalid regular expression {pattern!r} ({exc})"
    return None


@dataclass
class Settings:
    python: str | None = None  # interpreter that runs the tests
    timeout: float = 120.0  # seconds for one test (its setup, call and teardown)
    trace_timeout: float = 10.0  # trace.timeout: seconds to capture one failing test's trace
    selection: str = "precise"
    run_on_save: bool = True
    debounce_ms: int = 300  # syntax diagnostics while typing
    offer_unverified: bool = False  # fix.offerUnverified
    sandbox: str = "auto"  # fix.sandbox: how candidate fixes are confined
    warm_runner: bool = True  # runs fork a pre-started pytest worker
    parallel: str | int = "auto"  # pytest-xdist workers: "auto" for long runs, 0 never, N always
    llm: LLMSettings = field(default_factory=LLMSettings)
    review: dict = field(default_factory=dict)


_KEYS = {  # setting name as users write it → (field, check)
    "python": ("python", lambda v: v is None or (isinstance(v, str) and v.strip() != "")),
    "timeout": ("timeout", lambda v: _number(v) and 0 < v <= 86400),
    "trace.timeout": ("trace_timeout", lambda v: _number(v) and 0 < v <= 3600),
    "selection": ("selection", lambda v: v in SELECTION_MODES),
    "runOnSave": ("run_on_save", lambda v: isinstance(v, bool)),
    "debounceMs": ("debounce_ms", lambda v: isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 10000),
    "review": ("review", lambda v: isinstance(v, dict)),
    "fix.offerUnverified": ("offer_unverified", lambda v: isinstance(v, bool)),
    "fix.sandbox": ("sandbox", lambda v: v in SANDBOX_MODES),
    "warmRunner": ("warm_runner", lambda v: isinstance(v, bool)),
    "parallel": (
        "parallel",
        lambda v: v == "auto" or (isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 256),
    ),
}
_EXPECTED = {
    "python": "a path to a Python interpreter",
    "timeout": "a number of seconds between 0 and 86400",
    "trace.timeout": "a number of seconds between 0 and 3600",
    "selection": "one of " + ", ".join(SELECTION_MODES),
    "runOnSave": "true or false",
    "debounceMs": "a whole number of milliseconds (0–10000)",
    "review": "a table of review settings",
    "fix.offerUnverified": "true or false",
    "fix.sandbox": "one of " + ", ".join(SANDBOX_MODES),
    "warmRunner": "true or false",
    "parallel": '"auto" or a number of pytest-xdist workers (0 for none)',
}


def merge(*layers: object, source: str = "settings") -> tuple[Settings, list[str]]:
    """Later layers win. Returns the settings and a warning for each value that was ignored."""
    settings = Settings()
    warnings: list[str] = []
    llm: dict = {}  # merged across layers key by key, then checked once
    for layer in layers:
        if not isinstance(layer, dict):
            warnings.append(f"{source}: expected a table of settings, got {type(layer).__name__}; ignored")
            continue
        items = list(layer.items())
        for key, value in items:
            if key in ("fix", "trace") and isinstance(value, dict):
                items.extend((f"{key}.{k}", v) for k, v in value.items())  # dotted like the editor's names
                continue
            if key in ("server", "trace.server"):
                continue  # read by the editor client
            if value is None or value == "":
                continue  # editors send unset settings as null or ""
            if key == "llm":
                if isinstance(value, dict):
                    llm.update(value)
                else:
                    warnings.append(f"{source}: tracefix.llm should be a table of model settings; ignored")
                continue
            spec = _KEYS.get(key)
            if spec is None:
                warnings.append(f"{source}: unknown setting tracefix.{key}; ignored")
                continue
            name, ok = spec
            if not ok(value):
                default = getattr(Settings(), name)
                warnings.append(f"{source}: tracefix.{key} = {value!r} is not {_EXPECTED[key]}; using {default!r}")
                continue
            setattr(settings, name, float(value) if name in ("timeout", "trace_timeout") else value)
    settings.llm, more = _llm(llm, source)
    return settings, warnings + more


def _llm(data: dict, source: str) -> tuple[LLMSettings, list[str]]:
    """The `llm` table (camelCase or snake_case keys); a wrong value keeps the default, with a warning."""
    settings, warnings = LLMSettings(), []
    known = {f.name for f in fields(LLMSettings)}
    for key, value in data.items():
        name = _snake(key)
        if value is None or value == "":
            continue  # editors send unset settings as null or ""
        if name not in known:
            warnings.append(f"{source}: unknown setting {LLM_PREFIX}{key}; ignored")
            continue
        problem = _check(name, value)
        if problem:
            warnings.append(f"{source}: {LLM_PREFIX}{_camel(name)} {problem}; using {getattr(settings, name)!r}")
        else:
            setattr(settings, name, float(value) if name in ("timeout", "temperature") else value)
    return settings, warnings


def from_pyproject(root: Path) -> tuple[dict, list[str]]:
    text = read_text(root / "pyproject.toml")
    if text is None:
        return {}, []
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        return {}, [f"pyproject.toml could not be read ({exc}); [tool.tracefix] ignored"]
    table = data.get("tool", {}).get("tracefix", {})
    return (table, []) if isinstance(table, dict) else ({}, ["[tool.tracefix] is not a table; ignored"])


def user_config_path() -> Path:
    """The user's own settings file: $XDG_CONFIG_HOME/tracefix/config.toml, else ~/.config/…"""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "tracefix" / "config.toml"


def from_user_config() -> tuple[dict, list[str]]:
    """The user config file's settings: the same keys as [tool.tracefix], at the top level."""
    path = user_config_path()
    if not path.exists():
        return {}, []
    text = read_text(path)
    if text is None:
        return {}, [f"{path} is not a regular file of readable size; ignored"]
    try:
        return tomllib.loads(text), []
    except tomllib.TOMLDecodeError as exc:
        return {}, [f"{path} could not be read ({exc}); ignored"]


# What a file in the workspace may not set, and how the user sets it instead. A repository you
# clone controls its pyproject.toml: it could send your code and the API key in the variable of its
# choice to its own server, run a program of its choice as the interpreter, or let model-written
# code out of the sandbox. VS Code holds these to user settings too (editors/vscode/package.json).
USER_ONLY = {
    "python": "with `tracefix check --python`",
    "llm.baseUrl": "with the OPENAI_BASE_URL environment variable",
    "llm.apiKeyEnv": "",
    "fix.sandbox": "",  # a workspace may only make it stricter: "require"
}


def _user_only(name: str, value: object) -> bool:
    return name in USER_ONLY and not (name == "fix.sandbox" and value == "require")


def workspace_table(table: dict, source: str) -> tuple[dict, list[str]]:
    """A workspace file's settings without those only the user may set, with a warning for each."""
    warnings: list[str] = []

    def keep(name: str, value: object) -> bool:
        if not _user_only(name, value):
            return True
        if value not in (None, ""):
            warnings.append(_refusal(name, source))
        return False

    kept: dict = {}
    for key, value in table.items():
        if key in ("llm", "fix") and isinstance(value, dict):
            kept[key] = {k: v for k, v in value.items() if keep(f"{key}.{_camel(_snake(k))}", v)}
        elif keep(key, value):
            kept[key] = value
    return kept, warnings


def _refusal(name: str, source: str) -> str:
    places = ["in your editor's user settings", f"in {user_config_path()}", USER_ONLY[name]]
    places = [p for p in places if p]
    limit = ' (a workspace may only set it to "require")' if name == "fix.sandbox" else ""
    return (
        f"{source}: tracefix.{name} is ignored{limit}: only you may set it, not a file in the workspace, "
        f"which whoever wrote the repository controls. Set it {', '.join(places[:-1])} or {places[-1]}."
    )


def load(root: Path, editor: dict | None = None) -> tuple[Settings, list[str]]:
    """Workspace file < user config file < editor (or command line): later layers win."""
    file_layer, warnings = from_pyproject(root)
    file_layer, refused = workspace_table(file_layer, "pyproject.toml")
    user_layer, more = from_user_config()
    settings, merged = merge(file_layer, user_layer, editor or {}, source="tracefix settings")
    return settings, warnings + refused + more + merged
