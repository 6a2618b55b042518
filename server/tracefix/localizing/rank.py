"""Rank the functions that may have made a test fail, from plain data: what changed since the test
last passed, which tests (passing and failing) executed each function (spectrum-based fault
localization, Ochiai), and the failing run's trace walked from the test down."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from tracefix.index.files import Node
from tracefix.localizing.versions import Version
from tracefix.tracing import Trace

# Weights of the signals; a change since the test last passed outweighs everything else, a raise
# or the origin of the wrong value outweighs the spectrum, which breaks the remaining ties.
CHANGED, RAISED, ORIGIN, CALLED = 3.0, 1.5, 0.5, 0.1
PLAIN = {"None", "True", "False", "0", "1", "''", "[]", "()", "{}"}  # values too common to trace back


@dataclass(frozen=True)
class Place:
    """A function that can be blamed, and where it is now."""

    path: str
    qualname: str
    start_line: int
    end_line: int
    name_line: int

    @property
    def node(self) -> Node:
        return (self.path, self.qualname)


@dataclass
class Evidence:
    """What is known about one failing test."""

    nodeid: str
    places: dict[Node, Place]  # the functions outside test files
    executed: dict[str, frozenset[Node]]  # test → functions it executed on its last recorded run
    failing: frozenset[str]  # the tests failing now
    changes: dict[Node, Version] = field(default_factory=dict)  # since this test last passed
    trace: Trace | None = None
    frame: tuple[str, int] | None = None  # where the test's exception was raised in code under test
    called: Node | None = None  # the function called on the failing assert's line
    actual: str | None = None  # the value the assert got


@dataclass(frozen=True)
class Suspect:
    path: str
    qualname: str
    line: int  # the most suspicious line: the change, the raise, the return of the wrong value
    lines: tuple[int, ...]  # every line it is blamed for
    score: float
    evidence: tuple[str, ...]  # in words, strongest first
    change: Version | None = None

    @property
    def node(self) -> Node:
        return (self.path, self.qualname)

    @property
    def name(self) -> str:
        return self.qualname.rsplit(".", 1)[-1]

    def describe(self) -> str:
        return "; ".join(self.evidence)


def ochiai(failed: int, passed: int, total_failed: int) -> float:
    """Ochiai's suspiciousness: failed / sqrt(total_failed * (failed + passed))."""
    if failed == 0 or total_failed == 0:
        return 0.0
    return failed / math.sqrt(total_failed * (failed + passed))


@dataclass
class _Score:
    place: Place
    score: float = 0.0
    line: int = 0
    lines: list[int] = field(default_factory=list)
    evidence: list[str] = field(default_factory=list)
    depth: int = -1  # in the failing run's call tree; deeper breaks ties (bottom-up)
    strong: bool = False  # changed, raised, or gave the wrong value
    exit: int = 0  # where its last call in the failing run returned


def localize(evidence: Evidence) -> list[Suspect]:
    """The functions that may be at fault for evidence.nodeid, most suspicious first."""
    runs = _Runs(evidence.trace, evidence.places) if evidence.trace and evidence.trace.calls else None
    executed = evidence.executed.get(evidence.nodeid) or (runs.nodes if runs else frozenset())
    candidates = set(executed) | set(evidence.changes) | (runs.nodes if runs else set())
    if evidence.frame is not None:
        candidates |= {n for n, p in evidence.places.items() if _holds(p, *evidence.frame)}
    scores = {n: _Score(evidence.places[n]) for n in candidates if n in evidence.places}
    failing = {t for t in evidence.failing if t in evidence.executed} | {evidence.nodeid}
    spectra = dict(evidence.executed)
    spectra[evidence.nodeid] = frozenset(executed)
    for node, s in scores.items():
        _change(s, evidence.changes.get(node))
        _spectrum(s, node, spectra, failing)
    if runs is not None:
        runs.blame(scores, evidence.actual)
    elif evidence.frame is not None:
        for s in scores.values():
            if _holds(s.place, *evidence.frame):
                s.score += RAISED
                s.strong = True
                s.evidence.insert(0, f"the test's exception was raised at {evidence.frame[0]}:{evidence.frame[1]}")
                s.line = s.line or evidence.frame[1]
    if evidence.called in scores:
        scores[evidence.called].score += CALLED
    if runs is not None:
        runs.mark_callers(scores)
        runs.place_lines(scores)
    ranked = sorted(scores.values(), key=lambda s: (-s.score, -s.depth, s.place.path, s.place.start_line))
    return [
        Suspect(
            s.place.path,
            s.place.qualname,
            s.line or s.place.name_line,
            # its def line too: the fix stays on offer where it was asked for once the blame moves
            tuple(dict.fromkeys([*s.lines, s.line or s.place.name_line, s.place.name_line])),
            round(s.score, 3),
            tuple(s.evidence),
            evidence.changes.get(s.place.node),
        )
        for s in ranked
    ]


def _holds(place: Place, path: str, line: int) -> bool:
    return place.path == path and place.start_line <= line <= place.end_line


def _change(s: _Score, version: Version | None) -> None:
    if version is None:
        return
    lines = [line for hunk in version.hunks for line in hunk.lines]
    where = lines[0] if lines else s.place.name_line
    s.score += CHANGED
    s.strong = True
    s.line = where
    s.lines += lines
    s.evidence.append(f"changed at {s.place.path}:{where} {version.since}")


def _spectrum(s: _Score, node: Node, spectra: dict[str, frozenset[Node]], failing: set[str]) -> None:
    ran = [t for t, nodes in spectra.items() if node in nodes]
    failed = sum(t in failing for t in ran)
    passed = len(ran) - failed
    value = ochiai(failed, passed, len(failing))
    s.score += value
    if failed and not passed:
        tests = "the failing test" if failed == 1 else f"{failed} failing tests"
        s.evidence.append(f"executed only by failing tests ({tests})")
    elif failed:
        s.evidence.append(f"executed by {failed} failing and {passed} passing tests (Ochiai {value:.2f})")


class _Runs:
    """The failing run's calls as a tree (calls arrive in the order they started)."""

    def __init__(self, trace: Trace, places: dict[Node, Place]):
        self.calls = trace.calls
        self.parent: dict[int, int | None] = {}
        self.children: dict[int | None, list[int]] = {}
        stack: list[int] = []
        for i, call in enumerate(self.calls):
            while stack and self.calls[stack[-1]].depth >= call.depth:
                stack.pop()
            self.parent[i] = stack[-1] if stack else None
            self.children.setdefault(self.parent[i], []).append(i)
            stack.append(i)
        self.places = places
        self.nodes = frozenset(n for c in self.calls if (n := (c.path, c.qualname)) in places)

    def _node(self, i: int) -> Node:
        call = self.calls[i]
        return (call.path, call.qualname)

    def blame(self, scores: dict[Node, _Score], actual: str | None) -> None:
        for i, call in enumerate(self.calls):
            s = scores.get(self._node(i))
            if s is not None:
                s.depth = max(s.depth, call.depth)
        raised = [i for i, c in enumerate(self.calls) if c.exception is not None and self._node(i) in scores]
        if raised:
            deepest = max(raised, key=lambda i: (self.calls[i].depth, i))
            self._credit(scores, deepest, RAISED, self._raised_words(deepest))
            return
        origin = self._origin(self._top_level(), actual) if actual is not None else None
        if origin is None:
            return
        call = self.calls[origin]
        self._credit(scores, origin, ORIGIN, f"returned {call.returned}, the value the failing assert got")
        for fed, consumer in self._feeders(origin):
            returned = self.calls[fed].returned
            words = f"returned {returned}, which {self.calls[consumer].qualname} made the failing value from"
            self._credit(scores, fed, ORIGIN, words)

    def _raised_words(self, i: int) -> str:
        call = self.calls[i]
        where = f" at {call.path}:{call.exit_line}" if call.exit_line else ""
        return f"raised {(call.exception or '').splitlines()[0]}{where} in the failing run"

    def _credit(self, scores: dict[Node, _Score], i: int, weight: float, words: str) -> None:
        call = self.calls[i]
        s = scores[self._node(i)]
        s.score += weight
        s.strong = True
        s.evidence.append(words)
        if not s.line:
            s.line = call.exit_line or call.first_line
        s.lines.append(call.exit_line or call.first_line)

    def _top_level(self) -> list[int]:
        """The calls the test code made itself."""
        return [i for i, p in self.parent.items() if p is None or self._node(p) not in self.places]

    def _origin(self, level: list[int], value: str) -> int | None:
        """Walking down from level: the deepest call on a chain of calls that each returned value,
        i.e. where that value was made (a caller that only hands a callee's result on is not
        where it went wrong)."""
        found = None
        while True:
            returned = [i for i in level if self.calls[i].returned == value and self._node(i) in self.places]
            if not returned:
                return found
            found = returned[-1]
            level = self.children.get(found, [])

    def _feeders(self, origin: int) -> list[tuple[int, int]]:
        """(call, the call it fed): the earlier calls whose returned value another call on the
        value's path was given as an argument, followed back (`with_tax(apply_discount(p, c))`:
        a wrong total may come from the discount, not the tax)."""
        found: list[tuple[int, int]] = []
        frontier, seen = [origin], {origin}
        while frontier:
            consumer = frontier.pop()
            for value in set(self.calls[consumer].args.values()) - PLAIN:
                earlier = [j for j in range(consumer) if j not in seen and self.calls[j].returned == value]
                made = self._origin(earlier[-1:], value) if earlier else None
                if made is not None and made not in seen:
                    seen.add(made)
                    found.append((made, consumer))
                    frontier.append(made)
        return found

    def mark_callers(self, scores: dict[Node, _Score]) -> None:
        """MGDebugger's bottom-up idea: before a caller is blamed, its sub-functions are; a caller
        of a strong suspect that has no strong evidence of its own is marked as such."""
        for i in range(len(self.calls)):
            node = self._node(i)
            s = scores.get(node)
            if s is None or s.strong:
                continue
            below = [
                j
                for j in self._descendants(i)
                if (other := scores.get(self._node(j))) is not None and other.strong and self._node(j) != node
            ]
            if below:
                callee = self.calls[below[0]].qualname
                words = f"calls {callee}, the likelier cause"
                if words not in s.evidence:
                    s.evidence.append(words)
                    s.score -= 0.5 * CALLED  # ranks below what it calls when the rest ties

    def place_lines(self, scores: dict[Node, _Score]) -> None:
        """A suspect nothing points inside is shown where its last call in the failing run left it."""
        for i, call in enumerate(self.calls):
            s = scores.get(self._node(i))
            if s is not None and not s.line and call.exit_line and not s.lines:
                s.exit = call.exit_line
        for s in scores.values():
            if not s.line and s.exit:
                s.line = s.exit

    def _descendants(self, i: int) -> list[int]:
        found, frontier = [], [i]
        while frontier:
            frontier = [j for k in frontier for j in self.children.get(k, [])]
            found += frontier
        return found
