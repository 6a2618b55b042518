"""The records tracefix's plugins write and the server reads, declared once.

The plugins import this as the top-level module `tracefix_records` (their directory is on the
test process's PYTHONPATH); the server as `tracefix.running.plugin.tracefix_records`. The server
still checks every record it reads against these shapes: test code runs in the process that
writes them and can write records too.
Python >= 3.9, stdlib only. PYTEST_DONT_REWRITE: it has no asserts.
"""

from typing import Dict, Final, List, Literal, Optional, Tuple, TypedDict, Union

# The report stream of tracefix_pytest (the fd in TRACEFIX_REPORT_FD), one JSON object a line.
SESSION: Final = "session"
START: Final = "start"
RESULT: Final = "result"
COLLECT_ERROR: Final = "collect_error"
CONFTEST_ERROR: Final = "conftest_error"
DONE: Final = "done"
# tracefix_deps' file (TRACEFIX_DEPS): ENV first, DEPS per test, SESSION (its own shape) at the end
ENV: Final = "env"
DEPS: Final = "deps"
# tracefix_trace's and tracefix_differ's records, on the report fd of their own runs
TRACE: Final = "trace"
DIFFERENTIAL: Final = "differential"

REPORT_KINDS = frozenset({SESSION, START, RESULT, COLLECT_ERROR, CONFTEST_ERROR, DONE})
DEPS_KINDS = frozenset({ENV, DEPS, SESSION})
KINDS = REPORT_KINDS | DEPS_KINDS | {TRACE, DIFFERENTIAL}


class Place(TypedDict):
    """A line in the workspace: its path relative to the root (posix), 1-based."""

    path: str
    line: int
    function: str


class _Cause(TypedDict):
    exception: str
    message: str


class Cause(_Cause, total=False):
    """What stopped collection (the user's exception, not pytest's wrapper), and where in the
    workspace when it is there."""

    path: str
    line: int


class Compare(TypedDict):
    """The operands of the failing comparison, as reprs cut to 200 characters."""

    op: str
    left: str
    right: str


class Session(TypedDict):
    kind: Literal["session"]
    root: str
    python: str
    xdist: bool


class Start(TypedDict):
    kind: Literal["start"]
    nodeid: str
    time: float


class _Result(TypedDict):
    kind: Literal["result"]
    nodeid: str
    outcome: str  # an Outcome but "not run"
    duration: float
    path: str  # the test's file
    line: int  # the test's def line


class Result(_Result, total=False):
    message: str
    when: str  # the phase that failed: setup, call, teardown
    exception: str
    location: Optional[Place]  # the failing line in the test's file
    frame: Optional[Place]  # the deepest frame in workspace non-test code
    compare: Compare


class _CollectError(TypedDict):
    kind: Literal["collect_error"]
    nodeid: str  # the module or directory; "" for the session
    message: str


class CollectError(_CollectError, total=False):
    cause: Cause


class ConftestError(TypedDict):
    kind: Literal["conftest_error"]
    cause: Cause


class Done(TypedDict):
    kind: Literal["done"]
    exitstatus: int


Report = Union[Session, Start, Result, CollectError, ConftestError, Done]


class Env(TypedDict):
    """The test interpreter, and the mtime of each sys.path folder outside the workspace (an
    install changes it)."""

    kind: Literal["env"]
    executable: str
    paths: Dict[str, int]


class _Deps(TypedDict):
    kind: Literal["deps"]
    nodeid: str
    complete: bool  # False: something kept the plugin from seeing all the test used; nothing more


class Deps(_Deps, total=False):
    code: List[Tuple[str, int]]  # (path, first line of the code that ran; 0: a module's body)
    fixtures: List[Tuple[str, str, int]]  # (name, path, line of its function)
    files: List[str]  # data files read
    dirs: List[str]  # directories listed
    dists: Dict[str, str]  # installed distribution → version, of the code that ran


class _Collected(TypedDict):
    kind: Literal["session"]
    code: List[Tuple[str, int]]
    files: List[str]


class Collected(_Collected, total=False):
    """What ran or was read outside any test (tracefix_deps' SESSION): at collection, between
    tests; one per pytest-xdist worker."""

    dirs: List[str]  # a data directory listed to make parametrize cases
    imports: Dict[str, List[Tuple[str, int]]]  # a workspace module → the code its import ran


Recorded = Union[Env, Deps, Collected]


class Block(TypedDict):
    start_line: int
    end_line: int
    changed: Dict[str, str]  # locals it changed → repr
    note: str  # "…×7 iterations": a run of loop iterations condensed into one


class Call(TypedDict):
    """One invocation of a workspace function, its blocks in execution order."""

    path: str
    qualname: str
    first_line: int
    last_line: int
    depth: int
    index: int
    args: Dict[str, str]
    returned: Optional[str]
    exception: Optional[str]
    exit_line: Optional[int]
    blocks: List[Block]


class Trace(TypedDict):
    kind: Literal["trace"]
    nodeid: str
    outcome: Optional[str]  # None while the test runs (partial)
    exception: Optional[str]  # the test's failure message
    partial: bool  # written when the step budget ran out, before the test finished
    truncated: bool
    calls: List[Call]


class Shown(TypedDict, total=False):
    args: Dict[str, str]  # argument → repr
    candidate: str  # what the rewrite gave
    baseline: str  # what the other version gave


class Differential(TypedDict, total=False):
    """tracefix_differ's one record: what it checked, or the error that stopped it."""

    kind: Literal["differential"]
    checked: int
    unparsed: int
    differ: List[Shown]
    flaky: List[Shown]
    raises: List[Shown]
    out_of_time: bool
    error: str


# tracefix_warm's messages over its socket: no kind, each step of the exchange has one shape
class Ready(TypedDict):
    ready: int  # the worker's pid
    seconds: float  # how long it took to start


class Request(TypedDict):
    """A run (sent with two fds: its output pipe and its report pipe)."""

    args: List[str]  # pytest's arguments
    cwd: str
    env: Dict[str, str]
    limits: Dict[str, int]  # process.rlimits: the limits the run applies to itself


class Forked(TypedDict):
    pid: int


class Exited(TypedDict):
    exit: int


class Stale(TypedDict):
    """Why the worker quits instead of running, and the modules its replacement must not import."""

    stale: str
    skip: List[str]


Reply = Union[Ready, Forked, Exited, Stale]  # what the worker sends the server


class Imported(TypedDict):
    """What a run imported from outside the workspace, from the fork to its worker."""

    plain: List[str]
    rewritten: List[str]  # by pytest's assertion rewriting: never imported ahead of a run
