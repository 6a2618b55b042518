"""Builds the extension's .vsix with the tracefix server inside it, as ruff-vscode and Microsoft's
Python tools extension template do: nothing to install but the .vsix.

    python3 package.py [--target linux-x64] [--python 3.11 --python 3.12 ...] [--out FILE]

It builds tracefix's wheel from this repository and installs it with its dependencies into
bundled/libs: pure-Python packages once, in bundled/libs/common; packages with compiled code
(tree-sitter, pydantic-core, jiter) once per CPython version, in bundled/libs/cp311 and so on.
Compiled code is also per platform, so a .vsix is for one VS Code target (linux-x64,
darwin-arm64, win32-x64, ...): wheels come from the package index for that target, so any
target builds on any machine. The extension runs bundled/tool/serve.py with the interpreter the
Python extension selected, or python3 from PATH, when its version is one bundled here.
Needs pip and npm (the extension's npm packages installed: `npm ci`). Standard library only.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
LIBS = HERE / "bundled" / "libs"
PYTHONS = ("3.11", "3.12", "3.13")  # tracefix's requires-python, up to the newest with wheels for all


def _manylinux(arch: str) -> list[str]:
    # pip takes these tags literally: name every glibc a wheel may be tagged for (VS Code needs 2.28)
    return [f"manylinux_2_{minor}_{arch}" for minor in range(28, 4, -1)] + [
        f"manylinux{legacy}_{arch}" for legacy in ("2014", "2010", "1")
    ]


def _macos(arch: str, first: tuple[int, int]) -> list[str]:
    versions = [(10, minor) for minor in range(9, 16)] + [(major, 0) for major in range(11, 16)]
    return [f"macosx_{a}_{b}_{tag}" for a, b in versions if (a, b) >= first for tag in (arch, "universal2")]


PLATFORMS = {  # VS Code target -> the wheel platform tags that run there
    "linux-x64": _manylinux("x86_64"),
    "linux-arm64": _manylinux("aarch64"),
    "alpine-x64": ["musllinux_1_2_x86_64", "musllinux_1_1_x86_64"],
    "alpine-arm64": ["musllinux_1_2_aarch64", "musllinux_1_1_aarch64"],
    "darwin-x64": _macos("x86_64", (10, 9)),
    "darwin-arm64": _macos("arm64", (11, 0)),
    "win32-x64": ["win_amd64"],
    "win32-arm64": ["win_arm64"],
}


def this_target() -> str:
    machine = platform.machine().lower()
    arch = "arm64" if machine in ("arm64", "aarch64") else "x64"
    system = {"Linux": "linux", "Darwin": "darwin", "Windows": "win32"}[platform.system()]
    return f"{system}-{arch}"


def version() -> str:
    """tracefix's version, which the extension's must equal: one release, one number."""
    sys.path.insert(0, str(REPO / "server"))
    from tracefix import __version__

    extension = json.loads((HERE / "package.json").read_text())["version"]
    if extension != __version__:
        raise SystemExit(f"package.json says {extension}, tracefix says {__version__}: make them equal")
    return __version__


def bundle(target: str, pythons: list[str]) -> None:
    """tracefix and its dependencies into bundled/libs, for target and each CPython version."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
        subprocess.run([*pip, "wheel", "--no-deps", "--quiet", "-w", str(work), str(REPO)], check=True)
        [wheel] = work.glob("tracefix-*.whl")
        tags = [arg for tag in PLATFORMS[target] for arg in ("--platform", tag)]
        for python in pythons:
            print(f"bundling tracefix for CPython {python} on {target}", flush=True)
            subprocess.run(
                [*pip, "install", "--quiet", "--no-compile", "--only-binary=:all:", "--implementation", "cp"]
                + ["--python-version", python, *tags, "--target", str(work / _tag(python)), str(wheel)],
                check=True,
            )
        shutil.rmtree(LIBS, ignore_errors=True)
        _split([work / _tag(p) for p in pythons], LIBS)


def _tag(python: str) -> str:
    return "cp" + python.replace(".", "")


def _split(installs: list[Path], libs: Path) -> None:
    """Pure Python that all installs hold alike goes to libs/common, the rest to libs/<their tag>."""
    entries = {entry.name for install in installs for entry in install.iterdir()} - {"bin", "__pycache__"}
    for name in sorted(entries):
        digests = {_digest(install / name) for install in installs}
        if len(digests) == 1 and not _compiled(installs[0] / name):
            shutil.move(installs[0] / name, libs / "common" / name)
        else:
            for install in installs:
                if (install / name).exists():
                    shutil.move(install / name, libs / install.name / name)


def _compiled(path: Path) -> bool:
    """An extension module, a package with one, or the metadata of a wheel that has them."""
    if path.name.endswith(".dist-info"):
        return "Root-Is-Purelib: false" in (path / "WHEEL").read_text()
    files = path.rglob("*") if path.is_dir() else [path]
    return any(file.suffix in (".so", ".pyd", ".dylib") for file in files)


def _digest(path: Path) -> str:
    if not path.exists():
        return ""
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        digest.update(str(file.relative_to(path.parent)).encode() + b"\0" + file.read_bytes())
    return digest.hexdigest()


def vsix(target: str, out: Path) -> None:
    shutil.copy(REPO / "LICENSE", HERE / "LICENSE")  # vsce wants it beside package.json
    npx = shutil.which("npx") or "npx"
    subprocess.run(
        [npx, "vsce", "package", "--no-dependencies", "--target", target, "--out", str(out)], cwd=HERE, check=True
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", choices=sorted(PLATFORMS), default=this_target(), help="VS Code target platform")
    parser.add_argument(
        "--python", action="append", metavar="X.Y", help=f"CPython versions (default: {' '.join(PYTHONS)})"
    )
    parser.add_argument("--out", type=Path, help="the .vsix to write (default: tracefix-TARGET-VERSION.vsix here)")
    args = parser.parse_args(argv)
    number = version()
    bundle(args.target, args.python or list(PYTHONS))
    out = (args.out or HERE / f"tracefix-{args.target}-{number}.vsix").resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    vsix(args.target, out)
    print(f"{out} ({out.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
