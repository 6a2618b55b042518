"""Runs a rewritten function against a baseline version of it on given inputs, in the user's
interpreter inside the shadow copy (the rewritten code comes from a model). Python >= 3.9, stdlib.

    python -m tracefix_differ PAYLOAD.json

The payload: {"path": "shop/pricing.py", "qualname": "apply_discount", "baseline": source or null,
"original": source or null, "inputs": [{"args": {name: repr}, "failing": bool}], "seconds": budget}.
With a baseline (a version under which the tests passed), each input runs both versions and any
difference outside the failing test's inputs is reported (differential). Without one, the
rewritten function runs twice per input, and the original (the version before the rewrite) once
where the rewrite raises (property: the same answer twice, no exception the original did not
raise). One JSON record goes to TRACEFIX_REPORT_FD: tracefix_records.Differential.
"""

import ast
import copy
import importlib
import inspect
import json
import math
import os
import signal
import sys
import textwrap
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING or __package__:  # mypy's import names the package
    from tracefix.running.plugin import tracefix_records as records
else:  # the shadow copy's interpreter has the plugins' directory on its path
    import tracefix_records as records

CALL_SECONDS = 1.0  # one call of either version


class _Slow(Exception):
    pass


def _alarm(signum, frame):
    raise _Slow()


def _module(root, path):
    """Import the module at root/path the way its tests do: from above its top package."""
    directory = os.path.dirname(os.path.join(root, path))
    parts = [os.path.splitext(os.path.basename(path))[0]]
    while os.path.exists(os.path.join(directory, "__init__.py")) and directory != root:
        parts.insert(0, os.path.basename(directory))
        directory = os.path.dirname(directory)
    sys.path.insert(0, directory)
    name = ".".join(p for p in parts if p != "__init__")
    return importlib.import_module(name)


def _function(module, qualname):
    found = module
    for part in qualname.split("."):
        found = getattr(found, part)
    return found


def _baseline(module, qualname, source):
    namespace = dict(vars(module))
    exec(compile(textwrap.dedent(source), "<baseline of %s>" % qualname, "exec"), namespace)
    return namespace[qualname.rsplit(".", 1)[-1]]


def _call(fn, args):
    """(kind, value): ("ok", result) or ("raise", exception type name); arguments by name, the
    variadic ones spread."""
    positional, named = [], {}
    skipped = False  # after a parameter left to its default, the rest go by name
    for name, param in inspect.signature(fn).parameters.items():
        if name not in args:
            skipped = True
            continue
        value = copy.deepcopy(args[name])
        if param.kind == param.VAR_POSITIONAL:
            positional.extend(value)
        elif param.kind == param.VAR_KEYWORD:
            named.update(value)
        elif param.kind in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD) and not skipped and not named:
            positional.append(value)
        else:
            named[name] = value
    signal.setitimer(signal.ITIMER_REAL, CALL_SECONDS)
    try:
        return "ok", fn(*positional, **named)
    except _Slow:
        return "raise", "no answer within %gs" % CALL_SECONDS
    except Exception as exc:  # what the function raises is what is compared
        return "raise", type(exc).__name__
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def _same(a, b):
    if isinstance(a, bool) or isinstance(b, bool):
        return a == b and type(a) is type(b)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
            return True
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        # lengths checked: zip(strict=) does not exist before Python 3.10
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))  # noqa: B905
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    try:
        return bool(a == b)
    except Exception:
        return repr(a) == repr(b)


def _shown(outcome):
    kind, value = outcome
    text = repr(value) if kind == "ok" else "raises " + value
    return text if len(text) <= 120 else text[:117] + "..."


def _agree(x, y):
    return x[0] == y[0] and (_same(x[1], y[1]) if x[0] == "ok" else x[1] == y[1])


def check(payload) -> "records.Differential":
    module = _module(os.getcwd(), payload["path"])
    rewritten = _function(module, payload["qualname"])
    source = payload.get("baseline")
    other = _baseline(module, payload["qualname"], source) if source else None
    original = payload.get("original")
    before = _baseline(module, payload["qualname"], original) if original else None
    deadline = time.monotonic() + payload.get("seconds", 10)
    found = records.Differential(kind=records.DIFFERENTIAL, checked=0, unparsed=0, differ=[], flaky=[], raises=[])
    for item in payload["inputs"]:
        if time.monotonic() > deadline:
            found["out_of_time"] = True
            break
        try:
            args = {k: ast.literal_eval(v) for k, v in item["args"].items()}
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            found["unparsed"] += 1  # a value whose repr is no literal, or was cut short
            continue
        found["checked"] += 1
        now = _call(rewritten, args)
        shown = records.Shown(args=item["args"], candidate=_shown(now))
        if other is not None:
            then = _call(other, args)
            if not _agree(now, then) and not item.get("failing"):
                found["differ"].append({**shown, "baseline": _shown(then)})
            continue
        if not _agree(now, _call(rewritten, args)):
            found["flaky"].append(shown)
        if before is not None and now[0] == "raise":
            then = _call(before, args)
            if then[0] == "ok":
                found["raises"].append({**shown, "baseline": _shown(then)})
    return found


def main(argv):
    with open(argv[1], encoding="utf-8") as f:
        payload = json.load(f)
    signal.signal(signal.SIGALRM, _alarm)
    try:
        record = check(payload)
    except Exception as exc:
        record = records.Differential(kind=records.DIFFERENTIAL, error="%s: %s" % (type(exc).__name__, exc))
    data = (json.dumps(record, default=repr) + "\n").encode("utf-8", "replace")
    fd = int(os.environ["TRACEFIX_REPORT_FD"])
    while data:
        data = data[os.write(fd, data) :]


if __name__ == "__main__":
    main(sys.argv)
