"""What tracefix adds to LSP: its commands, requests and notifications, and the payloads they carry.

The one list of names: the server registers these, docs/protocol.md documents them and the VS Code
extension's src/protocol.ts mirrors the payload types; tests/test_protocol.py holds both to this
module.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal, TypedDict


class Command(StrEnum):
    """workspace/executeCommand names."""

    RUN_AFFECTED = "tracefix.runAffected"
    RUN_ALL = "tracefix.runAll"
    RERUN_TEST = "tracefix.rerunTest"
    SHOW_TRACE = "tracefix.showTrace"
    FIX_TEST = "tracefix.fixTest"
    ADDRESS_REVIEW = "tracefix.addressReview"
    ADD_REVIEW = "tracefix.addReviewComment"
    RESOLVE_REVIEW = "tracefix.resolveReviewComment"
    EXPLAIN_MODEL = "tracefix.explainModel"


class Method(StrEnum):
    """Custom notifications (server → client) and requests (client → server)."""

    STATUS = "tracefix/status"  # notification
    TEST_RESULTS = "tracefix/testResults"  # notification
    AFFECTED = "tracefix/affected"  # request


State = Literal["idle", "running", "failed", "untrusted", "error"]


class StatusParams(TypedDict):
    state: State
    running: int  # tests in runs under way
    failed: int  # tests failing now, in all workspace folders
    message: str


class Place(TypedDict):
    uri: str
    line: int  # 1-based


class ResultPayload(TypedDict):
    nodeid: str
    outcome: str  # tracefix.running.results.Outcome
    duration: float  # seconds
    message: str
    path: str  # the test file, absolute
    uri: str
    line: int | None  # the test's def line, 1-based
    location: Place | None  # the failing line
    reason: str  # why the test was selected


class RunSummary(TypedDict):
    passed: int
    failed: int
    errors: int
    skipped: int
    duration: float  # seconds
    status: str  # tracefix.running.results.RunStatus, or "nothing to run"
    verdict: str  # tracefix.running.results.Verdict: passed, failed or incomplete (never a pass)
    message: str  # the cause, when the run did not complete


class TestResultsParams(TypedDict):
    runId: str
    results: list[ResultPayload]
    done: bool  # the run ended; `summary` says how
    summary: RunSummary | None


class TextDocument(TypedDict):
    uri: str


class AffectedParams(TypedDict):
    textDocument: TextDocument


class ChangePayload(TypedDict):
    path: str
    symbol: str
    kind: str
    what: str
    line: int


class SelectedPayload(TypedDict):
    nodeid: str
    reason: str


class AffectedResult(TypedDict):
    changed: list[ChangePayload]
    selected: list[SelectedPayload]
