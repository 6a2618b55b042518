"""Try a model-free revert first, then ask a model for fixes of the suspect functions, and keep
only what the tests verify. The first round rewrites the top suspect alone (cheap, and what a
single-function bug needs); later rounds may rewrite any of the suspects."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from tracefix.fixing.differential import calls_of, check, special_cases
from tracefix.fixing.model import Completion, ModelClient, ModelError, not_configured_message
from tracefix.fixing.prompt import Feedback, FixRequest, Revert, build_messages
from tracefix.fixing.replies import (
    Candidate,
    Rejected,
    Target,
    TargetError,
    lines_of,
    parse_reply,
    targets_for,
    unified,
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
    verdict: str  # verified | regresses | fails | rejected | changes behaviour | overfits
    reason: str  # in words, for the user and for the next round's prompt
    candidate: Candidate | None = None
    report: RunReport | None = None
    fixes_test: bool = False
    regressions: list[str] = field(default_factory=list)
    passed: int = 0
    total: int = 0
    view: str = "trace"  # the prompt it answered: "trace", "brief" (no trace), or "revert" (no model)
    checks: list[str] = field(default_factory=list)  # what besides the tests verified it
    agreeing: int = 0  # other inputs on which it agrees with the version the tests passed with

    def rank(self) -> tuple:
        """Larger is better: fixes the test, breaks fewer, passes more, agrees with the last green
        version on more inputs, changes less ("Sifting through the chaff")."""
        size = self.candidate.size if self.candidate else 0
        return (self.candidate is not None, self.fixes_test, -len(self.regressions), self.passed, self.agreeing, -size)


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
    check_time: float = 0.0  # of wall_time, in the checks beyond the tests (differential, property)


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
    if attempt.verdict != "verified" or attempt.report is None:
        return f"not verified: {attempt.reason}"
    still = sorted(r.nodeid for r in attempt.report.failed)
    text = f"verified: {attempt.passed}/{attempt.total} affected tests pass"
    if still:
        text += f"; already failing before the fix: {', '.join(still)}"
    text += "".join(f"; {words}" for words in attempt.checks)
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
        if not settings.model and request.revert is None:
            raise TargetError(not_configured_message())
        targets_for(request, wide=True)  # a stale request is refused before anything runs
        if client is None and settings.model:
            client = ModelClient(settings)
        hide = (settings.api_key_env,)
        async with Shadow(
            request.root, request.python, request.overlay, hide_env=hide, sandbox=request.sandbox
        ) as shadow:
            session = _Session(request, settings, client, shadow, outcome, report or (lambda m: None))
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
    client: ModelClient | None  # None: no model configured, only the revert is tried
    shadow: Shadow
    outcome: FixOutcome
    say: Callable[[str], None]

    def __post_init__(self) -> None:
        literals = (self.client.api_key,) if self.client is not None and self.client.key_set else ()
        self.redactor = Redactor(self.settings.redact, literals)
        request = self.request
        self.tests = list(dict.fromkeys([request.test_nodeid, *request.failing_tests, *request.affected_tests]))
        self.tried: dict[tuple, Attempt] = {}  # candidate texts -> its attempt, so a repeated candidate runs once

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
        if request.revert is not None and await self._revert(request.revert, baseline):
            return
        if self.client is None:
            raise TargetError(f"{outcome.evidence}; for other fixes, {not_configured_message()}")
        previous: list[Feedback] = []
        for number in range(1, self.settings.rounds + 1):
            # the first round rewrites the top suspect alone; later ones may rewrite any suspect
            wide = number > 1 and bool(request.suspects)
            targets = targets_for(request, wide)
            views = _views(request, self.settings.candidates)
            prompts = [
                build_messages(
                    request, previous=previous, redact=self.redactor.redact, traced=view == "trace", wide=wide
                )
                for view in views
            ]
            self.say(f"round {number}: asking the {self.client.name} for {self.settings.candidates} candidates")
            completions = await self.client.complete_each(prompts, temperature=self.settings.temperature)
            attempts = []
            for index, completion in enumerate(completions, 1):
                outcome.tokens_in += completion.tokens_in
                outcome.tokens_out += completion.tokens_out
                attempt = await self._attempt(number, index, completion, targets, baseline)
                attempt.view = views[completion.index]
                self.say(f"round {number}: candidate {index}/{len(completions)}: {attempt.reason}")
                attempts.append(attempt)
            outcome.attempts += attempts
            verified = [a for a in outcome.attempts if a.verdict == "verified"]
            if verified:  # the best by tests passed, agreement with the last green version, size
                best = max(verified, key=Attempt.rank)
                outcome.best, outcome.evidence = best.candidate, _evidence(best, baseline)
                return
            overall = max(outcome.attempts, key=Attempt.rank)
            if overall.candidate is not None:
                outcome.unverified, outcome.evidence = overall.candidate, _evidence(overall, baseline)
            if number < self.settings.rounds:
                previous.append(await self._feedback(max(attempts, key=Attempt.rank), attempts))

    async def _revert(self, revert: Revert, baseline: RunReport) -> bool:
        """Verify the revert of the blamed changes like any candidate; True when it is verified."""
        diff = "".join(unified(path, self.request.file_text(path), text) for path, text in revert.texts.items())
        candidate = Candidate(dict(revert.texts), diff, title=revert.title)
        attempt = Attempt(0, 1, 0.0, "rejected", "", view="revert")
        await self._verify(attempt, candidate, baseline)
        self.say(f"{revert.title}: {attempt.reason}")
        self.outcome.attempts.append(attempt)
        if attempt.verdict == "verified":
            self.outcome.best, self.outcome.evidence = candidate, _evidence(attempt, baseline)
            return True
        self.outcome.unverified, self.outcome.evidence = candidate, _evidence(attempt, baseline)
        return False

    async def _feedback(self, best: Attempt, attempts: list[Attempt]) -> Feedback:
        """The round's best candidate, what went wrong, and its trace (LDB: the next round sees
        the values of the failing run with that candidate in place)."""
        if best.candidate is None:
            return Feedback(result="the reply was not usable: " + "; ".join(a.reason for a in attempts))
        self._write(best.candidate)
        try:
            trace = await self.shadow.trace(self.request.test_nodeid, timeout=self.request.test_timeout)
            text = "" if trace.error and not trace.calls else trace.render(TRACE_CHARS, lines_in(self.shadow.root))
        finally:
            self._reset(best.candidate)
        self.say(f"traced the best failing candidate of round {best.round}")
        return Feedback(result=best.reason, source=best.candidate.function_source, trace=text)

    def _write(self, candidate: Candidate) -> None:
        for path, text in candidate.texts.items():
            self.shadow.write(path, text)

    def _reset(self, candidate: Candidate) -> None:
        for path in candidate.texts:
            self.shadow.reset(path)

    async def _verify(self, attempt: Attempt, candidate: Candidate, baseline: RunReport) -> None:
        attempt.candidate = candidate
        self._write(candidate)
        try:
            run = await self.shadow.run(self.tests, timeout=self.request.test_timeout)
            _judge(attempt, run, baseline, self.request.test_nodeid)
            if attempt.verdict == "verified" and candidate.rewrites:
                started = time.monotonic()
                await self._beyond_tests(attempt, candidate)
                self.outcome.check_time += time.monotonic() - started
        finally:
            self._reset(candidate)

    async def _beyond_tests(self, attempt: Attempt, candidate: Candidate) -> None:
        """A candidate the tests verify must also keep each function it rewrites agreeing with
        the version its tests last passed with on other inputs (or, without one, deterministic
        and raising nothing new), and must not branch on the failing test's own inputs unless it
        agrees with that version elsewhere. The candidate is in the shadow meanwhile."""
        request = self.request
        for rewrite in candidate.rewrites:
            label = f"{rewrite.path}::{rewrite.qualname}"
            start, end = rewrite.lines
            original = "".join(lines_of(request.file_text(rewrite.path))[start - 1 : end])
            failing = calls_of([request.trace] if request.trace else [], rewrite.path, rewrite.qualname)
            baseline = request.baselines.get(label)
            checked = await check(
                self.shadow,
                rewrite,
                original=original,
                baseline=baseline,
                recorded=request.inputs.get(label, []),
                failing=failing,
                timeout=request.test_timeout,
            )
            if not checked.ok:
                attempt.verdict, attempt.reason = "changes behaviour", f"{attempt.reason}; {checked.problem}"
                return
            special = special_cases(rewrite.source, original, request.test_source, failing)
            if special and not (baseline is not None and checked.agreeing):
                attempt.verdict = "overfits"
                attempt.reason = (
                    f"{attempt.reason}; {rewrite.qualname} special-cases the failing test's input "
                    f"({', '.join(special)}) and no version of it with passing tests confirms the rest"
                )
                return
            attempt.checks += checked.words
            attempt.agreeing += checked.agreeing

    async def _attempt(
        self, number: int, index: int, completion: Completion, targets: list[Target], baseline: RunReport
    ) -> Attempt:
        attempt = Attempt(number, index, completion.temperature, "rejected", "")
        parsed = parse_reply(
            self.redactor.restore(completion.text),
            targets,
            allow_signature_change=self.request.allow_signature_change,
        )
        if isinstance(parsed, Rejected):
            attempt.reason = parsed.reason
            return attempt
        key = tuple(sorted(parsed.texts.items()))
        if key in self.tried:
            earlier = self.tried[key]
            reason = f"same as round {earlier.round} candidate {earlier.index}: {earlier.reason}"
            return replace(earlier, round=number, index=index, temperature=completion.temperature, reason=reason)
        self.tried[key] = attempt
        await self._verify(attempt, parsed, baseline)
        return attempt
