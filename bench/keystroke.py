"""Keystroke cost: one didChange on a 3,000-line file, and the analysis when typing pauses.

The file is the standard library's inspect.py cut at the top-level statement nearest line 3,000
(a real module, not a generated one). Each of the 1000 edits is one character at a random position:
odd edits type a character, even edits delete it again, so the buffer keeps returning to valid code.
Timed in-process with the calls the server makes: per didChange, `Document.edit` (the keystroke:
the text, and where the old tree's nodes moved); when typing pauses (syntax diagnostics, a save),
the incremental re-parse (`Document.tree`), `outline` and `diff`. "analysed" is every stage after
every edit, as if each keystroke were followed by a pause: the worst case.

    python bench/keystroke.py --edits 1000 --seed 1 [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import inspect
import pstats
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine, summary_ms, write_results
from tracefix.parsing.document import Document
from tracefix.parsing.symbols import diff, outline

LINES = 3000
TYPED = "abcxyz_0123 ():.,=+'\""  # identifier characters and the punctuation that breaks syntax


def source(lines: int = LINES) -> str:
    text = Path(inspect.__file__).read_text(encoding="utf-8").splitlines(keepends=True)
    top_level = [i for i in range(1, len(text)) if text[i][:1].isalpha()]
    end = min(top_level, key=lambda i: abs(i - lines))
    return "".join(text[:end])


def keystrokes(doc: Document, edits: int, seed: int):
    """Yield (start, end, text) edits: type a character at a random position, then delete it."""
    rng = random.Random(seed)
    lines = doc.text.split("\n")
    for _ in range(edits // 2):
        line = rng.randrange(len(lines))
        column = rng.randint(0, len(lines[line]))
        yield (line, column), (line, column), rng.choice(TYPED)
        yield (line, column), (line, column + 1), ""


STAGES = ("edit", "reparse", "outline", "diff")
TOTALS = {"keystroke": ("edit", "edit"), "analysed": ("edit", "diff")}  # name → (first stage, last stage)


def measure(edits: int, seed: int) -> dict:
    """Wall and CPU time per stage: on a shared machine the wall clock also counts time spent
    waiting for a core, the thread's CPU time does not."""
    doc = Document(source())
    symbols = outline(doc.tree, doc.source)
    names = (*STAGES, *TOTALS)
    times: dict[str, list[float]] = {f"{s}_{c}": [] for s in names for c in ("wall", "cpu")}
    for start, end, text in keystrokes(doc, edits, seed):
        stamps = [(time.perf_counter(), time.thread_time())]
        doc.edit(start, end, text)
        stamps.append((time.perf_counter(), time.thread_time()))
        tree = doc.tree
        stamps.append((time.perf_counter(), time.thread_time()))
        new = outline(tree, doc.source)
        stamps.append((time.perf_counter(), time.thread_time()))
        diff(symbols, new)
        stamps.append((time.perf_counter(), time.thread_time()))
        symbols = new
        spans = {s: (stamps[i], stamps[i + 1]) for i, s in enumerate(STAGES)}
        spans.update({t: (spans[a][0], spans[b][1]) for t, (a, b) in TOTALS.items()})
        for name in names:
            before, after = spans[name]
            times[f"{name}_wall"].append(after[0] - before[0])
            times[f"{name}_cpu"].append(after[1] - before[1])
    return {
        "lines": doc.text.count("\n"),
        "bytes": len(doc.source),
        "symbols": len(symbols),
        **{name: summary_ms(values) for name, values in times.items()},
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--edits", type=int, default=1000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--profile", action="store_true", help="print where the time goes (cProfile)")
    args = p.parse_args()
    measure(100, args.seed + 1)  # warm-up: imports, tree-sitter's first allocations
    if args.profile:
        profiler = cProfile.Profile()
        profiler.runcall(measure, args.edits, args.seed)
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(15)
    result = measure(args.edits, args.seed)
    result.update(
        target_ms={"p50": 2.0, "p99": 5.0},
        machine=machine(),
        command=f"python bench/keystroke.py --edits {args.edits} --seed {args.seed}",
    )
    path = write_results("keystroke", result)
    for key in (*TOTALS, *STAGES):
        for clock in ("wall", "cpu"):
            s = result[f"{key}_{clock}"]
            print(
                f"{key:13s} {clock:4s} p50 {s['p50_ms']:7.3f} ms  p99 {s['p99_ms']:7.3f} ms  mean {s['mean_ms']:7.3f} ms"
            )
    print(f"{result['lines']} lines, {result['symbols']} symbols, {args.edits} edits; results: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
