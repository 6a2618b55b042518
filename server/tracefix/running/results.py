"""What a test run found: each test's outcome, and the run's own status."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum


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
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["location"], values["frame"] = _location(data.get("location")), _location(data.get("frame"))
        values["outcome"] = Outcome(data["outcome"])
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


def _location(data: dict | None) -> Location | None:
    if not data:
        return None
    return Location(data["path"], int(data["line"]), data.get("function", ""))


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
    """A plugin record → TestResult (None for records that are not a test's outcome)."""
    kind = record.get("kind")
    if kind == "collect_error":
        cause = record.get("cause")
        return TestResult(
            nodeid=record["nodeid"],
            outcome=Outcome.ERROR,
            path=record["nodeid"].split("::")[0],
            line=1,
            message=cause_text(cause) if cause else "collection failed: " + record.get("message", ""),
            frame=cause_location(cause) if cause else None,
        )
    if kind != "result":
        return None
    compare = record.get("compare") or {}
    expected = actual = None
    if compare.get("op") == "==":
        # pytest writes `assert actual == expected` by convention
        actual, expected = compare["left"], compare["right"]
    return TestResult(
        nodeid=record["nodeid"],
        outcome=Outcome(record["outcome"]),
        duration=round(float(record.get("duration", 0.0)), 4),
        message=record.get("message", ""),
        path=record.get("path", ""),
        line=int(record.get("line", 0)),
        location=_location(record.get("location")),
        frame=_location(record.get("frame")),
        expected=expected,
        actual=actual,
    )
