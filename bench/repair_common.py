"""What the repair benchmarks (repair.py, project_repair.py) share: the model server, their
arguments, the baseline arm's calls, and the results file saved after each row."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.models import MODELS, LlamaServer, model_path

from common import machine
from tracefix.fixing.model import ModelClient, ModelError, temperatures
from tracefix.fixing.prompt import FixRequest
from tracefix.fixing.replies import Candidate, Target, parse_reply
from tracefix.settings import LLMSettings

BASELINE_SYSTEM = "You fix bugs in Python code. Reply with the complete corrected function in one ```python block."
BASELINE_PROMPT = """The test in {test_file} fails. Fix the function `{name}` in {solution_file}.

{solution_file}:
```python
{solution}```

{test_file}:
```python
{test}```

pytest output:
```
{output}
```"""


@dataclass
class Reply:
    """What the baseline's calls came to."""

    candidate: Candidate | None = None  # the first reply that parsed
    calls: int = 0
    tokens: int = 0
    rejected: list[str] = field(default_factory=list)  # why each other call gave nothing


async def ask_baseline(
    request: FixRequest, test_file: str, test: str, output: str, settings: LLMSettings, budget: int
) -> Reply:
    """ "Fix this function, here is the failing pytest output": one call at a time, with the same
    temperature schedule as tracefix's candidates, until a reply parses or `budget` calls are made."""
    prompt = BASELINE_PROMPT.format(
        name=request.name,
        solution_file=request.path,
        solution=request.file_text(),
        test_file=test_file,
        test=test,
        output=output,
    )
    messages = [{"role": "system", "content": BASELINE_SYSTEM}, {"role": "user", "content": prompt}]
    target = Target.from_request(request)
    reply = Reply()
    client = ModelClient(settings)
    try:
        for temperature in temperatures(settings.temperature, budget):
            try:
                [completion] = await client.complete(messages, n=1, temperature=temperature)
            except ModelError as exc:
                reply.rejected.append(str(exc))
                continue
            reply.tokens += completion.tokens_in + completion.tokens_out
            parsed = parse_reply(completion.text, target)
            if isinstance(parsed, Candidate):
                reply.candidate = parsed
                break
            reply.rejected.append(parsed.reason)
    finally:
        reply.calls = client.calls
        await client.close()
    return reply


@dataclass(frozen=True)
class Bench:
    """One repair benchmark: rows (a task, a case) of arms, each row a dict with its arms' results."""

    script: str  # its file in bench/, without .py: also names its results and temp folders
    rows: str  # what a row is, plural: the key of the rows in the results
    arms: tuple[str, ...]  # the baseline's budget comes from the first
    settings: tuple[str, ...]  # the arguments recorded with the results
    timeout: float  # of a model call: a 2-core CPU server queues the parallel candidates
    summarize: Callable[[list[dict], list[str]], dict]
    markdown: Callable[[dict, list[str]], str]

    def table(self, rows: list[dict], arms: list[str]) -> str:
        return self.markdown(self.summarize(rows, arms), arms)


def add_arguments(p: argparse.ArgumentParser, bench: Bench, candidates: int, rounds: int) -> None:
    """The model server, the arms and their budgets, the test interpreter and the results file."""
    p.add_argument("--model", choices=sorted(MODELS), help="start a local llama.cpp server with this model")
    p.add_argument("--base-url", help="a running OpenAI-compatible server, instead of --model")
    p.add_argument("--model-name", help="the model to request from --base-url")
    p.add_argument("--arms", default=",".join(bench.arms), help="comma-separated, from: " + ",".join(bench.arms))
    p.add_argument("--candidates", type=int, default=candidates, help="tracefix: candidates per round")
    p.add_argument("--rounds", type=int, default=rounds, help="tracefix: rounds")
    p.add_argument("--calls", type=int, default=1, help="baseline's budget when tracefix does not run")
    p.add_argument("--temperature", type=float, default=LLMSettings.temperature)
    p.add_argument("--n-ctx", type=int, default=8192, help="context size of the local server")
    p.add_argument(
        "--threads",
        type=int,
        default=2,
        help="CPU threads of the local server (fewer than the "
        "cores if other jobs share the machine: llama.cpp's threads wait on each other)",
    )
    p.add_argument("--python", default=sys.executable, help="interpreter with pytest that runs the tests")
    p.add_argument(
        "--out",
        type=Path,
        default=ROOT / "bench" / "results" / f"{bench.script.replace('_', '-')}-{dt.date.today()}.json",
    )
    p.add_argument(
        "--table",
        type=Path,
        metavar="RESULTS",
        help="only print the table of a results file "
        f"(also of a run that was stopped: results are saved after each of the {bench.rows})",
    )


def parse_args(p: argparse.ArgumentParser, argv: list[str], bench: Bench) -> argparse.Namespace:
    """The arguments, checked unless only a table is asked for."""
    args = p.parse_args(argv)
    args.argv = argv  # recorded in the results, to reproduce them
    args.commit = git_head()  # now, as the code is imported: a run outlives commits made meanwhile
    if args.table:
        return args
    if bool(args.model) == bool(args.base_url):
        p.error("give one of --model or --base-url")
    if args.base_url and not args.model_name:
        p.error("--base-url needs --model-name")
    arms = args.arms.split(",")
    if unknown := set(arms) - set(bench.arms):
        p.error(f"unknown arms {sorted(unknown)}")
    args.arms = [a for a in bench.arms if a in arms]  # tracefix first: its call count is the baseline's budget
    return args


def git_head() -> str:
    """The commit measured, with "+changes" when the working tree differs from it."""
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "server"], cwd=ROOT, capture_output=True, text=True)
    return head.stdout.strip() + ("+changes" if dirty.stdout.strip() else "")


def stored_table(bench: Bench, path: Path) -> str:
    """The table of a results file, summarized again from its rows."""
    result = json.loads(path.read_text())
    arms = [a for a in bench.arms if a in result["summary"]]
    rows = result[bench.rows]
    return f"{result['command']}\n{len(rows)} {bench.rows}, {result['wall_seconds']:.0f} s\n\n" + bench.table(
        rows, arms
    )


@contextmanager
def model_server(args: argparse.Namespace) -> Iterator[tuple[str, str]]:
    """(base URL, model name): a local llama.cpp server for --model, stopped on the way out, or --base-url."""
    # `kill` unwinds like Ctrl-C, so the `with` below stops the model server instead of orphaning it.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    if not args.model:
        yield args.base_url, args.model_name
        return
    server = LlamaServer(model_path(args.model), n_ctx=args.n_ctx, n_threads=args.threads)
    with server as base_url:
        yield base_url, server.model_name


Run = Callable[[Any, argparse.Namespace, LLMSettings, Path], Awaitable[dict]]


async def run_rows(bench: Bench, args: argparse.Namespace, run: Run, base_url: str, model: str) -> list[dict]:
    """A row per item of args.<bench.rows>, in a temp folder; the results are saved after each, so a
    long run that dies keeps its rows."""
    settings = LLMSettings(
        model=model,
        base_url=base_url,
        timeout=bench.timeout,
        candidates=args.candidates,
        rounds=args.rounds,
        temperature=args.temperature,
    )
    rows: list[dict] = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"tracefix-{bench.script.replace('_', '-')}-") as tmp:
        for item in getattr(args, bench.rows):
            rows.append(await run(item, args, settings, Path(tmp)))
            save(bench, args, rows, time.monotonic() - started)
    return rows


def save(bench: Bench, args: argparse.Namespace, rows: list[dict], seconds: float) -> None:
    result = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python", f"bench/{bench.script}.py", *args.argv]),
        "model": args.model or args.model_name,
        "commit": args.commit,
        "settings": {k: getattr(args, k) for k in bench.settings},
        "wall_seconds": round(seconds, 1),
        "machine": machine(),  # its load average says how busy the shared cores were
        "summary": bench.summarize(rows, args.arms),
        bench.rows: rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))


def run_main(bench: Bench, args: argparse.Namespace, run: Run) -> None:
    """Print the table of --table's results, or run each arm on every item and print theirs."""
    if args.table:
        print(stored_table(bench, args.table))
        return
    with model_server(args) as (base_url, model):
        rows = asyncio.run(run_rows(bench, args, run, base_url, model))
    print("\n" + bench.table(rows, args.arms) + f"\n\nwrote {args.out}")
