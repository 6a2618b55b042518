"""Scale: tracefix on a large project, sympy 1.14.0 (1,543 Python files, 756k lines). No test runs.

On a checkout of the unmodified sdist, committed to git, in rounds (the medians are reported):
  first index  `tracefix check --no-run` with no .tracefix: CPU (the process and its children) and wall
  no change    the same again, with the store it left: the fixed cost of a check
  leaf change  the same after a one-line change in sympy/utilities/misc.py::ordinal, a leaf (it calls
               only as_int; only sympy's test_ordinal calls it); the file is restored afterwards
  serve        `tracefix serve` over LSP stdio, with the minimal JSON-RPC client below playing an
               editor that watches files itself: time from starting the process to the first
               `tracefix/status` notification (sent once the workspace is indexed), with no .tracefix
               and then with the store that start left; the server's own RSS (VmRSS) at that moment
               and SETTLE seconds later, its peak (VmHWM) and its CPU time at ready
Targets (issue 14): serve RSS ≤ 200 MB after indexing; ready ≤ 3 s with an existing store; a leaf
change `--no-run` ≤ 1 s CPU; first index ≤ 5 s CPU.

    python bench/scale.py --rounds 3
    python bench/scale.py --table bench/results/scale-sympy.json   # the table again
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RealProject, checkout, ensure_venv, machine, timed, write_results

SYMPY = RealProject("sympy", "1.14.0", "sympy")
LEAF = ("sympy/utilities/misc.py", "        suffix = 'st'\n", "        suffix = 'ts'\n")  # in ordinal()
SETTLE = 5.0  # seconds after ready before RSS is read again: work the server queued behind the status
TARGETS = {"first_index_cpu_s": 5.0, "leaf_change_cpu_s": 1.0, "ready_with_store_s": 3.0, "serve_rss_mb": 200.0}


def check_no_run(root: Path, env: dict) -> dict:
    wall, cpu, proc = timed(
        [sys.executable, "-m", "tracefix", "check", str(root), "--no-run", "--format", "json"], env=env, timeout=900
    )
    report = json.loads(proc.stdout)
    return {
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
        "changed": [c["symbol"] for c in report["changed"]],
        "selected": len(report["selected"]),
    }


class Client:
    """Just enough of an LSP client: initialize, answer the server's requests, note tracefix/status."""

    def __init__(self, proc: asyncio.subprocess.Process):
        self.proc, self.ids, self.pending = proc, 0, {}
        self.ready = asyncio.Event()
        self.reader = asyncio.create_task(self._read())

    def send(self, message: dict) -> None:
        body = json.dumps({"jsonrpc": "2.0", **message}).encode()
        self.proc.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)

    async def request(self, method: str, params: dict | None) -> dict:
        self.ids += 1
        self.pending[self.ids] = future = asyncio.get_running_loop().create_future()
        self.send({"id": self.ids, "method": method, "params": params})
        return await future

    async def _read(self) -> None:
        stdout = self.proc.stdout
        while True:
            headers = {}
            while (line := await stdout.readline()) not in (b"\r\n", b""):
                key, value = line.decode().split(":", 1)
                headers[key.strip().lower()] = value.strip()
            if not line:
                return
            message = json.loads(await stdout.readexactly(int(headers["content-length"])))
            if "method" in message and "id" in message:  # the server asks: settings, watcher registration, progress
                items = (message.get("params") or {}).get("items", [])
                result = [{} for _ in items] if message["method"] == "workspace/configuration" else None
                self.send({"id": message["id"], "result": result})
            elif "id" in message:
                self.pending.pop(message["id"]).set_result(message)
            elif message["method"] == "tracefix/status":
                self.ready.set()


def proc_stats(pid: int) -> dict:
    """The process's own RSS, peak RSS (MB) and CPU seconds, from /proc (children not included)."""
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return {
        "rss_mb": round(int(status["VmRSS"].split()[0]) / 1024, 1),
        "peak_rss_mb": round(int(status["VmHWM"].split()[0]) / 1024, 1),
        "cpu_s": round((int(fields[11]) + int(fields[12])) / ticks, 2),
    }


async def serve_until_ready(root: Path, env: dict) -> dict:
    started = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tracefix",
        "serve",
        cwd=root,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    client = Client(proc)
    try:
        capabilities = {
            "workspace": {
                "configuration": True,
                "workspaceFolders": True,
                "didChangeWatchedFiles": {"dynamicRegistration": True},
            },
            "window": {"workDoneProgress": True},
        }
        await client.request(
            "initialize",
            {
                "processId": os.getpid(),
                "rootUri": root.as_uri(),
                "capabilities": capabilities,
                "workspaceFolders": [{"uri": root.as_uri(), "name": root.name}],
                "initializationOptions": {"settings": {}, "trusted": True},
            },
        )
        initialized = time.perf_counter()
        client.send({"method": "initialized", "params": {}})
        await asyncio.wait_for(client.ready.wait(), timeout=600)
        ready = time.perf_counter()
        at_ready = proc_stats(proc.pid)
        await asyncio.sleep(SETTLE)
        settled = proc_stats(proc.pid)
        await asyncio.wait_for(client.request("shutdown", None), timeout=60)
        client.send({"method": "exit"})
        await asyncio.wait_for(proc.wait(), timeout=60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        client.reader.cancel()
    return {
        "ready_s": round(ready - started, 3),
        "initialized_to_ready_s": round(ready - initialized, 3),
        "cpu_at_ready_s": at_ready["cpu_s"],
        "rss_at_ready_mb": at_ready["rss_mb"],
        "rss_settled_mb": settled["rss_mb"],
        "peak_rss_mb": settled["peak_rss_mb"],
    }


def measure(rounds: int) -> dict:
    root = checkout(SYMPY, "scale")
    env = SYMPY.env(root, ensure_venv().parent.parent)
    store = root / ".tracefix"
    leaf_path, before, after = LEAF
    leaf = root / leaf_path
    original = leaf.read_text(encoding="utf-8")
    assert original.count(before) == 1, f"{LEAF} no longer applies"
    files = list(root.rglob("*.py"))
    lines = sum(len(f.read_bytes().splitlines()) for f in files)
    runs: dict[str, list[dict]] = {
        k: [] for k in ("first_index", "no_change", "leaf_change", "serve_no_store", "serve_with_store")
    }
    for i in range(rounds):
        shutil.rmtree(store, ignore_errors=True)
        runs["first_index"].append(check_no_run(root, env))
        runs["no_change"].append(check_no_run(root, env))
        leaf.write_text(original.replace(before, after), encoding="utf-8")
        try:
            runs["leaf_change"].append(check_no_run(root, env))
        finally:
            leaf.write_text(original, encoding="utf-8")
        shutil.rmtree(store, ignore_errors=True)
        runs["serve_no_store"].append(asyncio.run(serve_until_ready(root, env)))
        runs["serve_with_store"].append(asyncio.run(serve_until_ready(root, env)))
        print(f"round {i + 1}: " + json.dumps({k: v[-1] for k, v in runs.items()}), flush=True)
    medians = {
        arm: {
            key: round(statistics.median(r[key] for r in rs), 3)
            for key in rs[0]
            if isinstance(rs[0][key], (int, float))
        }
        for arm, rs in runs.items()
    }
    return {
        "project": f"{SYMPY.name}=={SYMPY.version}",
        "python_files": len(files),
        "lines": lines,
        "leaf_change": f"{leaf_path}: {before.strip()!r} -> {after.strip()!r} (in ordinal)",
        "rounds": rounds,
        "targets": TARGETS,
        "median": medians,
        "runs": runs,
    }


def table(result: dict) -> str:
    m, n = result["median"], result["rounds"]

    def row(label: str, value: float, target: float | None = None, shown: str | None = None) -> str:
        met = "" if target is None else ("yes" if value <= target else "**no**")
        return f"| {label} | {shown or f'{value:g}'} | {'' if target is None else f'≤ {target:g}'} | {met} |"

    def rss(arm: str) -> str:
        return row(
            f"serve RSS after indexing, {arm.replace('serve_', '').replace('_', ' ')}: at ready / +{SETTLE:g} s, MB",
            m[arm]["rss_settled_mb"],
            TARGETS["serve_rss_mb"],
            f"{m[arm]['rss_at_ready_mb']:g} / {m[arm]['rss_settled_mb']:g}",
        )

    return "\n".join(
        [
            f"| median of {n} rounds | measured | target | met? |",
            "|---|---:|---|---|",
            row(
                "first index: `check --no-run`, no store, CPU s",
                m["first_index"]["cpu_s"],
                TARGETS["first_index_cpu_s"],
            ),
            row("first index: `check --no-run`, no store, wall s", m["first_index"]["wall_s"]),
            row("leaf change: `check --no-run`, CPU s", m["leaf_change"]["cpu_s"], TARGETS["leaf_change_cpu_s"]),
            row("leaf change: `check --no-run`, wall s", m["leaf_change"]["wall_s"]),
            row("no change: `check --no-run`, CPU s", m["no_change"]["cpu_s"]),
            row("serve, no store: start → ready, s", m["serve_no_store"]["ready_s"]),
            row("serve, no store: server CPU s at ready", m["serve_no_store"]["cpu_at_ready_s"]),
            row(
                "serve, existing store: start → ready, s",
                m["serve_with_store"]["ready_s"],
                TARGETS["ready_with_store_s"],
            ),
            row("serve, existing store: `initialized` → ready, s", m["serve_with_store"]["initialized_to_ready_s"]),
            row("serve, existing store: server CPU s at ready", m["serve_with_store"]["cpu_at_ready_s"]),
            rss("serve_no_store"),
            rss("serve_with_store"),
            row("serve peak RSS (VmHWM), no store, MB", m["serve_no_store"]["peak_rss_mb"]),
        ]
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--table", type=Path, metavar="JSON", help="print the table of these results; run nothing")
    args = p.parse_args()
    if args.table:
        print(table(json.loads(args.table.read_text())))
        return 0
    result = measure(args.rounds)
    result.update(machine=machine(), command=f"python bench/scale.py --rounds {args.rounds}")
    path = write_results("scale-sympy", result)
    print(table(result))
    print(f"load average {result['machine']['load_average_1_5_15']}; results: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
