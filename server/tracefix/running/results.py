"""What a test run found: each test's outcome, and the run's own status."""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from pathlib import PurePosixPath


class Outcome(StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    ERROR = "error"
    SKIPPED = "skipped"
    XFAILED = "xfailed"
    TIMEOUT = "timeout"
    CRASHED = "crashed"
    NOT_RUN = "not run"


FAILING = frozenset({Outcome.FAILED, Outcome.ERROR, Outcome.TIMEOUT, Outcome.CRASHED})
NOT_FAILING = frozenset({Outcome.PASSED, Outcome.SKIPPED, Outcome.XFAILED})
RAISED = frozenset({Outcome.FAILED, Outcome.ERROR})  # the test ran to a raise: its trace shows why


class RunStatus(StrEnum):
    """How the test process ended: OK is pytest's session finishing, whatever the tests did."""

    OK = "ok"
    TIMEOUT = "timeout"
    CRASHED = "crashed"
    CANCELLED = "cancelled"
    ERROR = "error"


class Verdict(StrEnum):
    """What a run shows about the selected tests."""

    PASSED = "passed"  # every one ran and none failed
    FAILED = "failed"  # every one ran and one failed
    INCOMPLETE = "incomplete"  # the run did not complete (some have no outcome): never a pass


@dataclass(frozen=True)
class Location:
    path: str  # relative to the project root, posix
    line: int  # 1-based
    function: str = ""


@dataclass
class TestResult:
    nodeid: str
    outcome: Outcome
    duration: float = 0.0
    message: str = ""
    path: str = ""  # the test's file, relative to the root
    line: int = 0  # the test's def line, 1-based
    location: Location | None = None  # the failing line in the test file
    frame: Location | None = None  # the deepest frame in workspace non-test code
    expected: str | None = None
    actual: str | None = None

    @property
    def failing(self) -> bool:
        return self.outcome in FAILING

    @property
    def uncollected(self) -> bool:
        """A module or directory that failed to collect: its tests have no outcome."""
        return "::" not in self.nodeid

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TestResult:
        """A stored result (`to_dict`), checked like a record: a store can come from anywhere.
        Raises RecordError."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in _object(data).items() if k in known}
        values["nodeid"] = checked_nodeid(data.get("nodeid"))
        values["outcome"] = _outcome(data.get("outcome"), allowed=tuple(Outcome))
        for name in ("message", "expected", "actual"):
            if values.get(name) is not None:
                values[name] = checked_text(values[name], name)
        values["path"] = workspace_path(values.get("path", ""), empty=True)
        values["line"] = checked_number(values.get("line", 0), least=0)
        values["duration"] = _duration(values.get("duration", 0.0))
        values["location"], values["frame"] = _location(data.get("location")), _location(data.get("frame"))
        return cls(**values)


@dataclass
class RunReport:
    results: list[TestResult] = field(default_factory=list)
    status: RunStatus = RunStatus.OK
    message: str = ""
    duration: float = 0.0
    output: str = ""
    xdist: bool | None = None  # whether the test interpreter has pytest-xdist; None if pytest never started
    location: Location | None = None  # where the cause in `message` is, when it is one place

    @property
    def failed(self) -> list[TestResult]:
        return [r for r in self.results if r.failing]

    @property
    def verdict(self) -> Verdict:
        if self.status != RunStatus.OK or any(r.outcome == Outcome.NOT_RUN or r.uncollected for r in self.results):
            return Verdict.INCOMPLETE
        return Verdict.FAILED if self.failed else Verdict.PASSED

    def summary(self) -> str:
        counts: dict[str, int] = {}
        for r in self.results:
            counts[r.outcome] = counts.get(r.outcome, 0) + 1
        parts = [f"{n} {k}" for k, n in sorted(counts.items(), key=lambda kv: kv[0] not in FAILING)]
        text = ", ".join(parts) or "no tests ran"
        return f"{text} in {self.duration:.1f} s"


class RecordError(ValueError):
    """A record the test process wrote that tracefix refuses. Test code runs in that process and
    can write to the report fd too, so a record is checked like any untrusted input."""


# what tracefix_pytest writes
KINDS = frozenset({"session", "start", "result", "collect_error", "conftest_error", "done"})
RESULT_OUTCOMES = tuple(o for o in Outcome if o != Outcome.NOT_RUN)


def workspace_path(value: object, empty: bool = False) -> str:
    """A path from the test process: relative, inside the workspace (no `..`), posix."""
    if empty and value == "":
        return ""
    if not isinstance(value, str) or not value or "\0" in value or "\\" in value:
        raise RecordError(f"not a path: {value!r:.80}")
    path = PurePosixPath(value)
    if path.is_absolute() or ".." in path.parts:
        raise RecordError(f"a path outside the workspace: {value!r:.80}")
    return path.as_posix()


def asked_for(nodeid: str, nodeids: list[str]) -> bool:
    """Whether a test (or a collection error's file or folder) is inside what a run asked for."""
    if nodeid == "":
        return True  # a collection error of the whole session
    for asked in nodeids:
        if asked in ("", ".") or nodeid == asked or nodeid.startswith((asked + "::", asked + "[", asked + "/")):
            return True
        if asked.startswith((nodeid + "::", nodeid.rstrip("/") + "/")):  # a collection error above it
            return True
    return False


def checked_nodeid(value: object) -> str:
    """A test id from the test process: text whose file part is a workspace path."""
    if not isinstance(value, str) or not value or "\0" in value:
        raise RecordError(f"not a test id: {value!r:.80}")
    workspace_path(value.split("::")[0])
    return value


def checked_number(value: object, name: str = "line", least: int = 1) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < least:
        raise RecordError(f"{name} is not a whole number from {least}: {value!r:.80}")
    return value


def checked_text(value: object, name: str) -> str:
    if not isinstance(value, str):
        raise RecordError(f"{name} is not text: {value!r:.80}")
    return value


def _object(value: object) -> dict:
    if not isinstance(value, dict):
        raise RecordError(f"not an object: {value!r:.80}")
    return value


def _duration(value: object) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
        raise RecordError(f"duration is not a number of seconds: {value!r:.80}")
    return round(float(value), 4)


def _outcome(value: object, allowed: tuple[Outcome, ...] = RESULT_OUTCOMES) -> Outcome:
    if not isinstance(value, str) or value not in allowed:
        raise RecordError(f"not an outcome: {value!r:.80}")
    return Outcome(value)


def _cause(data: object) -> dict:
    """What stopped collection: {exception, message, and path and line where in the workspace}."""
    cause = _object(data)
    checked_text(cause.get("exception", "error"), "exception")
    checked_text(cause.get("message", ""), "message")
    if cause.get("path"):
        workspace_path(cause["path"])
        checked_number(cause.get("line"))
    return cause


def _location(data: object) -> Location | None:
    if not data:
        return None
    data = _object(data)
    return Location(
        workspace_path(data.get("path")),
        checked_number(data.get("line")),
        checked_text(data.get("function", ""), "function"),
    )


def cause_text(cause: dict) -> str:
    """A plugin's cause record in words: "SyntaxError in shop/pricing.py:16: '(' was never closed"."""
    where = f" in {cause['path']}:{cause['line']}" if cause.get("path") else ""
    return f"{cause.get('exception', 'error')}{where}: {cause.get('message', '')}"


def cause_location(cause: dict) -> Location | None:
    return Location(cause["path"], int(cause["line"])) if cause.get("path") else None


def obsolete(known: Iterable[str], requested: Collection[str], results: list[TestResult]) -> list[str]:
    """Of the `known` results, those that a run of `requested` which pytest finished shows are gone:
    a parametrization it no longer reported, a module or directory that collected this time."""
    reported = {r.nodeid for r in results}

    def covered(nodeid: str) -> bool:
        if "::" in nodeid:
            return nodeid in requested or nodeid.split("[")[0] in requested
        return any(n == nodeid or n.startswith((nodeid + "::", nodeid + "/")) for n in requested)

    return [n for n in known if n not in reported and covered(n)]


def parse_record(record: dict) -> TestResult | None:
    """A plugin record → TestResult, None for records that are not a test's outcome (start,
    session, conftest_error, done). Raises RecordError for a record of the wrong shape or kind, a
    path outside the workspace or a value of the wrong type; which tests may report is the
    runner's to check."""
    kind = _object(record).get("kind")
    if kind not in KINDS:
        raise RecordError(f"unknown kind of record: {kind!r:.80}")
    if kind == "start":
        checked_nodeid(record.get("nodeid"))
    elif kind == "session":
        if not isinstance(record.get("xdist", False), bool):
            raise RecordError(f"xdist is not true or false: {record.get('xdist')!r:.80}")
    elif kind == "done":
        checked_number(record.get("exitstatus"), "exitstatus", least=0)
    elif kind == "conftest_error":
        _cause(record.get("cause"))
    elif kind == "collect_error":
        nodeid = checked_text(record.get("nodeid"), "nodeid")
        cause = _cause(record["cause"]) if record.get("cause") else None
        return TestResult(
            nodeid=nodeid,
            outcome=Outcome.ERROR,
            path=workspace_path(nodeid.split("::")[0], empty=True),
            line=1,
            message=cause_text(cause)
            if cause
            else "collection failed: " + checked_text(record.get("message", ""), "message"),
            frame=cause_location(cause) if cause else None,
        )
    if kind != "result":
        return None
    compare = _object(record.get("compare") or {})
    expected = actual = None
    if compare.get("op") == "==":
        # pytest writes `assert actual == expected` by convention
        actual, expected = checked_text(compare.get("left"), "left"), checked_text(compare.get("right"), "right")
    return TestResult(
        nodeid=checked_nodeid(record.get("nodeid")),
        outcome=_outcome(record.get("outcome")),
        duration=_duration(record.get("duration", 0.0)),
        message=checked_text(record.get("message", ""), "message"),
        path=workspace_path(record.get("path", ""), empty=True),
        line=checked_number(record.get("line", 0), least=0),
        location=_location(record.get("location")),
        frame=_location(record.get("frame")),
        expected=expected,
        actual=actual,
    )
