"""The parts of a project's pytest configuration that decide what a test is."""

from __future__ import annotations

import configparser
import fnmatch
import shlex
import tomllib
from dataclasses import dataclass
from pathlib import Path

from tracefix.paths import read_text

CONFIG_FILES = ("pytest.ini", ".pytest.ini", "pyproject.toml", "tox.ini", "setup.cfg")
DEFAULT_NORECURSE = ("*.egg", ".*", "_darcs", "build", "CVS", "dist", "node_modules", "venv", "{arch}")


@dataclass(frozen=True)
class PytestConfig:
    testpaths: tuple[str, ...] = ()
    python_files: tuple[str, ...] = ("test_*.py", "*_test.py")
    python_classes: tuple[str, ...] = ("Test",)
    python_functions: tuple[str, ...] = ("test",)
    pythonpath: tuple[str, ...] = ()
    norecursedirs: tuple[str, ...] = DEFAULT_NORECURSE
    source: str = ""  # the file it came from, for messages

    def is_test_file(self, name: str) -> bool:
        return any(fnmatch.fnmatch(name, pattern) for pattern in self.python_files)

    def is_test_function(self, name: str) -> bool:
        return _matches(name, self.python_functions)

    def is_test_class(self, name: str) -> bool:
        return _matches(name, self.python_classes)

    def skips_dir(self, name: str) -> bool:
        return any(fnmatch.fnmatch(name, pattern) for pattern in self.norecursedirs)


def _matches(name: str, patterns: tuple[str, ...]) -> bool:
    # pytest: a pattern with glob characters is a glob, otherwise a prefix
    return any(fnmatch.fnmatch(name, p) if any(c in p for c in "*?[") else name.startswith(p) for p in patterns)


def _split(value) -> tuple[str, ...]:
    if isinstance(value, (list, tuple)):
        return tuple(str(v) for v in value)
    return tuple(shlex.split(str(value)))


def _from_mapping(values: dict, source: str) -> PytestConfig:
    fields = {}
    for key in ("testpaths", "python_files", "python_classes", "python_functions", "pythonpath", "norecursedirs"):
        if key in values:
            fields[key] = _split(values[key])
    return PytestConfig(**fields, source=source)


def load(root: Path) -> tuple[PytestConfig, list[str]]:
    """pytest's own precedence: pytest.ini, pyproject.toml, tox.ini, setup.cfg. Never raises."""
    warnings: list[str] = []
    candidates = [
        ("pytest.ini", "ini", "pytest"),
        (".pytest.ini", "ini", "pytest"),
        ("pyproject.toml", "toml", "tool.pytest.ini_options"),
        ("tox.ini", "ini", "pytest"),
        ("setup.cfg", "ini", "tool:pytest"),
    ]
    for name, kind, section in candidates:
        path = root / name
        if not path.is_file():
            continue
        text = read_text(path)
        if text is None:
            warnings.append(f"{name} is not a regular file of readable size; using pytest's defaults")
            continue
        try:
            if kind == "toml":
                data = tomllib.loads(text)
                options = data.get("tool", {}).get("pytest", {}).get("ini_options")
                if options is None:
                    continue
                return _from_mapping(options, name), warnings
            parser = configparser.ConfigParser(interpolation=None)
            parser.read_string(text, source=name)
            if parser.has_section(section) or name == "pytest.ini":
                values = dict(parser[section]) if parser.has_section(section) else {}
                return _from_mapping(values, name), warnings
        except (OSError, ValueError, configparser.Error, tomllib.TOMLDecodeError) as exc:
            warnings.append(f"could not read the pytest configuration in {name}: {exc}; using pytest's defaults")
    return PytestConfig(), warnings
