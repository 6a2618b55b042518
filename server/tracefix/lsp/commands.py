"""workspace/executeCommand: the run commands editors bind to buttons and palettes."""

from __future__ import annotations

from tracefix.lsp import runs
from tracefix.lsp.handlers import sync
from tracefix.lsp.session import Pending, ProjectState, Session
from tracefix.protocol import Command


def _folders(session: Session, uri: str | None) -> list[ProjectState]:
    if uri:
        located = session.locate(uri)
        return [located[0]] if located else []
    return list(session.projects.values())


@sync(Command.RUN_AFFECTED, command=True)
async def run_affected(session: Session, *args) -> dict:
    """Tests affected by everything that changed since the last run (saved files), and the tests
    failing now: a test stays failing until a run shows it passing."""
    count = rerun = 0
    for state in _folders(session, args[0] if args and isinstance(args[0], str) else None):
        changes = await state.call(state.project.changes_since_snapshot)
        failing = {r.nodeid for r in state.failing()}
        count, rerun = count + len(changes), rerun + len(failing)
        if changes or failing:
            keyed = {(c.path, c.qualname): c for c in changes}
            runs.request(session, state, Pending(keyed, {c.path for c in changes}, nodeids=failing))
    return {"changes": count, "failing": rerun}


@sync(Command.RUN_ALL, command=True)
def run_all(session: Session, *args) -> dict:
    folders = _folders(session, args[0] if args and isinstance(args[0], str) else None)
    for state in folders:
        runs.request(session, state, Pending(run_all=True))
    return {"projects": len(folders)}


@sync(Command.RERUN_TEST, command=True)
def rerun_test(session: Session, *args) -> dict:
    """Arguments: [nodeid, root?]."""
    nodeid, root = (list(args) + [None, None])[:2]
    if not isinstance(nodeid, str):
        raise ValueError("tracefix.rerunTest needs a test node id")
    for state in [session.project_named(root)] if root else list(session.projects.values()):
        base = nodeid.split("[")[0]
        if any(t.nodeid == base for t in state.tests.get(base.split("::")[0], [])):
            runs.request(session, state, Pending(nodeids={nodeid}))
            return {"scheduled": nodeid}
    raise ValueError(f"no test {nodeid!r} in this workspace")
