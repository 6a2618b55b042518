"""workspace/executeCommand: the commands editors bind to buttons and palettes."""

from __future__ import annotations

from tracefix.lsp.runs import Pending
from tracefix.lsp.server import TracefixServer, server

RUN_AFFECTED = "tracefix.runAffected"
RUN_ALL = "tracefix.runAll"
RERUN_TEST = "tracefix.rerunTest"


def _projects(ls: TracefixServer, uri: str | None):
    if uri:
        located = ls.locate(uri)
        return [located[0]] if located else []
    return list(ls.projects.values())


@server.command(RUN_AFFECTED)
def run_affected(ls: TracefixServer, *args) -> dict:
    """Tests affected by everything that changed since the last run (saved files)."""
    count = 0
    for project in _projects(ls, args[0] if args and isinstance(args[0], str) else None):
        changes = project.changes_since_snapshot()
        count += len(changes)
        if changes:
            ls.runs.request(project, Pending({(c.path, c.qualname): c for c in changes}, {c.path for c in changes}))
    return {"changes": count}


@server.command(RUN_ALL)
def run_all(ls: TracefixServer, *args) -> dict:
    projects = _projects(ls, args[0] if args and isinstance(args[0], str) else None)
    for project in projects:
        ls.runs.request(project, Pending(run_all=True))
    return {"projects": len(projects)}


@server.command(RERUN_TEST)
def rerun_test(ls: TracefixServer, *args) -> dict:
    """Arguments: [nodeid, root?]."""
    nodeid, root = (list(args) + [None, None])[:2]
    if not isinstance(nodeid, str):
        raise ValueError("tracefix.rerunTest needs a test node id")
    for project in [ls.project_named(root)] if root else list(ls.projects.values()):
        if project.index.test_for(nodeid) is not None:
            ls.runs.request(project, Pending(nodeids={nodeid}))
            return {"scheduled": nodeid}
    raise ValueError(f"no test {nodeid!r} in this workspace")
