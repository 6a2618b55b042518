"""What a test run found: each test's outcome, and the run's own status."""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from pathlib import PurePosixPath
from typing import cast

from tracefix.running.plugin import tracefix_records as records


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


def _location(data: object) -> Location | None:
    place = _place(data)
    return Location(**place) if place else None


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


def _cause(data: object) -> records.Cause:
    """What stopped collection: {exception, message, and path and line where in the workspace}."""
    cause = _object(data)
    checked_text(cause.get("exception", "error"), "exception")
    checked_text(cause.get("message", ""), "message")
    if cause.get("path"):
        workspace_path(cause["path"])
        checked_number(cause.get("line"))
    return cast(records.Cause, cause)


def _place(data: object) -> records.Place | None:
    if not data:
        return None
    data = _object(data)
    return records.Place(
        path=workspace_path(data.get("path")),
        line=checked_number(data.get("line")),
        function=checked_text(data.get("function", ""), "function"),
    )


def cause_text(cause: records.Cause) -> str:
    """A plugin's cause record in words: "SyntaxError in shop/pricing.py:16: '(' was never closed"."""
    where = f" in {cause['path']}:{cause.get('line')}" if cause.get("path") else ""
    return f"{cause.get('exception', 'error')}{where}: {cause.get('message', '')}"


def cause_location(cause: records.Cause) -> Location | None:
    path, line = cause.get("path"), cause.get("line")
    return Location(path, line) if path and line else None


def obsolete(known: Iterable[str], requested: Collection[str], results: list[TestResult]) -> list[str]:
    """Of the `known` results, those that a run of `requested` which pytest finished shows are gone:
    a parametrization it no longer reported, a module or directory that collected this time."""
    reported = {r.nodeid for r in results}

    def covered(nodeid: str) -> bool:
        if "::" in nodeid:
            return nodeid in requested or nodeid.split("[")[0] in requested
        return any(n == nodeid or n.startswith((nodeid + "::", nodeid + "/")) for n in requested)

    return [n for n in known if n not in reported and covered(n)]


def checked_record(record: object) -> records.Report:
    """A record of tracefix_pytest's report stream, checked against its declared shape
    (tracefix_records), its paths and places normalized. Raises RecordError for a record of the
    wrong shape or kind, a path outside the workspace or a value of the wrong type; which tests
    may report is the runner's to check."""
    data = dict(_object(record))
    kind = data.get("kind")
    if kind not in records.REPORT_KINDS:
        raise RecordError(f"unknown kind of record: {kind!r:.80}")
    if kind == records.START:
        checked_nodeid(data.get("nodeid"))
    elif kind == records.SESSION:
        if not isinstance(data.get("xdist", False), bool):
            raise RecordError(f"xdist is not true or false: {data.get('xdist')!r:.80}")
    elif kind == records.DONE:
        checked_number(data.get("exitstatus"), "exitstatus", least=0)
    elif kind == records.CONFTEST_ERROR:
        _cause(data.get("cause"))
    elif kind == records.COLLECT_ERROR:
        workspace_path(checked_text(data.get("nodeid"), "nodeid").split("::")[0], empty=True)
        checked_text(data.get("message", ""), "message")
        if data.get("cause"):
            _cause(data["cause"])
    elif kind == records.RESULT:
        checked_nodeid(data.get("nodeid"))
        _outcome(data.get("outcome"))
        data["duration"] = _duration(data.get("duration", 0.0))
        checked_text(data.get("message", ""), "message")
        data["path"] = workspace_path(data.get("path", ""), empty=True)
        checked_number(data.get("line", 0), least=0)
        data["location"], data["frame"] = _place(data.get("location")), _place(data.get("frame"))
        compare = _object(data.get("compare") or {})
        if compare.get("op") == "==":
            checked_text(compare.get("left"), "left")
            checked_text(compare.get("right"), "right")
    return cast(records.Report, data)


def parse_record(record: records.Report) -> TestResult | None:
    """A checked record (`checked_record`) → TestResult, None for records that are not a test's
    outcome (start, session, conftest_error, done)."""
    if record["kind"] == records.COLLECT_ERROR:
        nodeid = record["nodeid"]
        cause = record.get("cause")
        return TestResult(
            nodeid=nodeid,
            outcome=Outcome.ERROR,
            path=workspace_path(nodeid.split("::")[0], empty=True),
            line=1,
            message=cause_text(cause) if cause else "collection failed: " + record.get("message", ""),
            frame=cause_location(cause) if cause else None,
        )
    if record["kind"] != records.RESULT:
        return None
    compare = record.get("compare")
    expected = actual = None
    if compare and compare.get("op") == "==":
        # pytest writes `assert actual == expected` by convention
        actual, expected = compare["left"], compare["right"]
    location, frame = record.get("location"), record.get("frame")
    return TestResult(
        nodeid=record["nodeid"],
        outcome=Outcome(record["outcome"]),
        duration=record["duration"],
        message=record.get("message", ""),
        path=record.get("path", ""),
        line=record.get("line", 0),
        location=Location(**location) if location else None,
        frame=Location(**frame) if frame else None,
        expected=expected,
        actual=actual,
    )
