"""Ask a model for fixes of one function and keep only what the tests verify."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from tracefix.fixing.model import Completion, ModelClient, ModelError
from tracefix.fixing.prompt import Feedback, FixRequest, build_messages
from tracefix.fixing.replies import (
    Candidate,
    Rejected,
    Target,
    TargetError,
    parse_reply,
)
from tracefix.fixing.secrets import Redactor
from tracefix.fixing.shadow import Shadow
from tracefix.running.results import NOT_FAILING, RunReport
from tracefix.settings import LLMSettings
from tracefix.tracing import lines_in

TRACE_CHARS = 3000  # a candidate's trace in the next round's prompt


@dataclass
class Attempt:
    round: int
    index: int  # 1-based within the round
    temperature: float
    verdict: str  # verified | regresses | fails | rejected
    reason: str  # in words, for the user and for the next round's prompt
    candidate: Candidate | None = None
    report: RunReport | None = None
    fixes_test: bool = False
    regressions: list[str] = field(default_factory=list)
    passed: int = 0
    total: int = 0
    view: str = "trace"  # the prompt it answered: "trace", or "brief" (no trace)

    def rank(self) -> tuple:
        """Larger is better: fixes the test, breaks fewer, passes more, changes less."""
        size = self.candidate.size if self.candidate else 0
        return (self.candidate is not None, self.fixes_test, -len(self.regressions), self.passed, -size)


@dataclass
class FixOutcome:
    best: Candidate | None = None  # verified by the tests
    unverified: Candidate | None = None  # the best of the rest, only to offer clearly labelled
    evidence: str = ""  # what the tests showed for `best`, or for `unverified`
    error: str | None = None  # why no fix could be looked for (model, configuration, setup)
    attempts: list[Attempt] = field(default_factory=list)
    baseline: RunReport | None = None  # the tests in the shadow copy before any candidate
    tokens_in: int = 0
    tokens_out: int = 0
    model_calls: int = 0
    wall_time: float = 0.0


def _views(request: FixRequest, candidates: int) -> list[str]:
    """The prompt for each candidate of a round. With a trace, every second candidate gets the
    brief view without it: a small model can be led astray by a long trace, and the candidates
    are verified anyway, so two views find more fixes than one."""
    if not request.trace_text.strip():
        return ["brief"] * candidates
    return ["brief" if i % 2 else "trace" for i in range(candidates)]


def _matches(nodeid: str, test: str) -> bool:
    return nodeid == test or nodeid.startswith(test + "[")  # a parametrized test's cases


def _passes(report: RunReport, test: str) -> bool:
    mine = [r for r in report.results if _matches(r.nodeid, test)]
    return bool(mine) and all(r.outcome in NOT_FAILING for r in mine)


def _count(report: RunReport) -> str:
    passing = sum(r.outcome in NOT_FAILING for r in report.results)
    return f"{passing}/{len(report.results)} tests pass"


def _failures(report: RunReport, limit: int = 3) -> str:
    lines = []
    for r in report.failed[:limit]:
        first = (r.message.strip().splitlines() or [""])[0]
        line = f"{r.nodeid}: {r.outcome}: {first}"
        if r.expected is not None and r.actual is not None:
            line += f" (expected {r.expected}, got {r.actual})"
        lines.append(line)
    if len(report.failed) > limit:
        lines.append(f"and {len(report.failed) - limit} more")
    return "; ".join(lines)


def _judge(attempt: Attempt, report: RunReport, baseline: RunReport, test: str) -> None:
    attempt.report = report
    passing = {r.nodeid for r in report.results if r.outcome in NOT_FAILING}
    passed_before = {r.nodeid for r in baseline.results if r.outcome in NOT_FAILING}
    attempt.fixes_test = report.status == "ok" and _passes(report, test)
    # a test that passed before and now fails or no longer runs (a collection error) regressed
    attempt.regressions = sorted(passed_before - passing)
    attempt.passed = len(passing)
    attempt.total = len(passing | {r.nodeid for r in report.results} | passed_before)
    counts = f"{attempt.passed}/{attempt.total} tests pass"
    if report.status != "ok":
        attempt.verdict, attempt.reason = "fails", f"{counts}; {report.message}"
    elif attempt.fixes_test and not attempt.regressions:
        attempt.verdict, attempt.reason = "verified", counts
    elif attempt.fixes_test:
        attempt.verdict = "regresses"
        attempt.reason = f"{counts}; fixes {test} but breaks {', '.join(attempt.regressions)}: {_failures(report)}"
    else:
        attempt.verdict, attempt.reason = "fails", f"{counts}; {_failures(report)}"


def _evidence(attempt: Attempt, baseline: RunReport) -> str:
    if attempt.verdict != "verified":
        return f"not verified: {attempt.reason}"
    still = sorted(r.nodeid for r in attempt.report.failed)
    text = f"verified: {attempt.passed}/{attempt.total} affected tests pass"
    if still:
        text += f"; already failing before the fix: {', '.join(still)}"
    return text + f" (before: {_count(baseline)})"


async def refine(
    request: FixRequest,
    settings: LLMSettings,
    *,
    client: ModelClient | None = None,
    report: Callable[[str], None] | None = None,
) -> FixOutcome:
    """Up to settings.rounds rounds of settings.candidates candidates, each tested in a shadow copy.

    Stops after the first round with a verified candidate, and picks its smallest verified diff.
    Model and setup faults end in outcome.error; cancelling kills any running tests.
    """
    started = time.monotonic()
    outcome = FixOutcome()
    own_client = client is None
    calls_before = client.calls if client else 0
    try:
        target = Target.from_request(request)
        client = client or ModelClient(settings)
        hide = (settings.api_key_env,)
        async with Shadow(
            request.root, request.python, request.overlay, hide_env=hide, sandbox=request.sandbox
        ) as shadow:
            session = _Session(request, settings, client, shadow, target, outcome, report or (lambda m: None))
            await session.run()
    except (ModelError, TargetError) as exc:
        outcome.error = str(exc)
    finally:
        if client is not None:
            outcome.model_calls = client.calls - calls_before
            if own_client:
                await client.close()
        outcome.wall_time = round(time.monotonic() - started, 3)
    return outcome


@dataclass
class _Session:
    request: FixRequest
    settings: LLMSettings
    client: ModelClient
    shadow: Shadow
    target: Target
    outcome: FixOutcome
    say: Callable[[str], None]

    def __post_init__(self) -> None:
        literals = (self.client.api_key,) if self.client.key_set else ()
        self.redactor = Redactor(self.settings.redact, literals)
        self.tests = list(dict.fromkeys([self.request.test_nodeid, *self.request.affected_tests]))
        self.tried: dict[str, Attempt] = {}  # file text -> its attempt, so a repeated candidate runs once

    async def run(self) -> None:
        request, outcome = self.request, self.outcome
        baseline = outcome.baseline = await self.shadow.run(self.tests, timeout=request.test_timeout)
        if baseline.status not in ("ok", "timeout"):  # a hang is a bug to fix like any other failure
            raise TargetError(f"cannot run the tests in a copy of the workspace: {baseline.message}")
        self.say(f"before any fix: {_count(baseline)}")
        if _passes(baseline, request.test_nodeid) and not request.instruction:
            raise TargetError(
                f"{request.test_nodeid} passes in a fresh copy of the workspace, so there is nothing to "
                "fix (is it flaky, or does it depend on the network or your home directory?)"
            )
        previous: list[Feedback] = []
        for number in range(1, self.settings.rounds + 1):
            views = _views(request, self.settings.candidates)
            prompts = [
                build_messages(request, previous=previous, redact=self.redactor.redact, traced=view == "trace")
                for view in views
            ]
            self.say(f"round {number}: asking the {self.client.name} for {self.settings.candidates} candidates")
            completions = await self.client.complete_each(prompts, temperature=self.settings.temperature)
            attempts = []
            for index, completion in enumerate(completions, 1):
                outcome.tokens_in += completion.tokens_in
                outcome.tokens_out += completion.tokens_out
                attempt = await self._attempt(number, index, completion)
                attempt.view = views[completion.index]
                self.say(f"round {number}: candidate {index}/{len(completions)}: {attempt.reason}")
                attempts.append(attempt)
            outcome.attempts += attempts
            verified = [a for a in outcome.attempts if a.verdict == "verified"]
            if verified:
                best = min(verified, key=lambda a: a.candidate.size)
                outcome.best, outcome.evidence = best.candidate, _evidence(best, baseline)
                return
            overall = max(outcome.attempts, key=Attempt.rank)
            if overall.candidate is not None:
                outcome.unverified, outcome.evidence = overall.candidate, _evidence(overall, baseline)
            if number < self.settings.rounds:
                previous.append(await self._feedback(max(attempts, key=Attempt.rank), attempts))

    async def _feedback(self, best: Attempt, attempts: list[Attempt]) -> Feedback:
        """The round's best candidate, what went wrong, and its trace (LDB: the next round sees
        the values of the failing run with that candidate in place)."""
        if best.candidate is None:
            return Feedback(result="the reply was not usable: " + "; ".join(a.reason for a in attempts))
        self.shadow.write(self.target.path, best.candidate.file_text)
        try:
            trace = await self.shadow.trace(self.request.test_nodeid, timeout=self.request.test_timeout)
            text = "" if trace.error and not trace.calls else trace.render(TRACE_CHARS, lines_in(self.shadow.root))
        finally:
            self.shadow.reset(self.target.path)
        self.say(f"traced the best failing candidate of round {best.round}")
        return Feedback(result=best.reason, source=best.candidate.function_source, trace=text)

    async def _attempt(self, number: int, index: int, completion: Completion) -> Attempt:
        attempt = Attempt(number, index, completion.temperature, "rejected", "")
        parsed = parse_reply(
            self.redactor.restore(completion.text),
            self.target,
            allow_signature_change=self.request.allow_signature_change,
        )
        if isinstance(parsed, Rejected):
            attempt.reason = parsed.reason
            return attempt
        if parsed.file_text in self.tried:
            earlier = self.tried[parsed.file_text]
            reason = f"same as round {earlier.round} candidate {earlier.index}: {earlier.reason}"
            return replace(earlier, round=number, index=index, temperature=completion.temperature, reason=reason)
        attempt.candidate = parsed
        self.tried[parsed.file_text] = attempt
        self.shadow.write(self.target.path, parsed.file_text)
        try:
            run = await self.shadow.run(self.tests, timeout=self.request.test_timeout)
        finally:
            self.shadow.reset(self.target.path)
        _judge(attempt, run, self.outcome.baseline, self.request.test_nodeid)
        return attempt
