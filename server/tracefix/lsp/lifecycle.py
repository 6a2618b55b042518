"""Start-up, workspace folders, settings, trust and shutdown."""

from __future__ import annotations

import asyncio
from pathlib import Path

from lsprotocol import types
from pygls.uris import to_fs_path

from tracefix.fixing.shadow import bubblewrap, unconfined_warning
from tracefix.index.store import StoreError
from tracefix.lsp import publishing, reviews, runs, watching
from tracefix.lsp.handlers import sync
from tracefix.lsp.session import ProjectState, Session
from tracefix.project import Project


@sync(types.INITIALIZE)
def initialize(session: Session, params: types.InitializeParams) -> None:
    options = params.initialization_options or {}
    if isinstance(options, dict):
        settings = options.get("settings", {})
        session.editor_settings = settings if isinstance(settings, dict) else {}
        session.trusted = options.get("trusted", True) is not False


def _roots(session: Session) -> list[Path]:
    workspace = session.ls.workspace
    uris = [f.uri for f in workspace.folders.values()] or ([workspace.root_uri] if workspace.root_uri else [])
    return [Path(path).resolve() for u in uris if u and (path := to_fs_path(u))]


async def _pull_settings(session: Session) -> None:
    caps = session.ls.client_capabilities.workspace
    if not (caps and caps.configuration):
        return
    try:
        values = await asyncio.wait_for(
            session.ls.workspace_configuration_async(
                types.ConfigurationParams(items=[types.ConfigurationItem(section="tracefix")])
            ),
            10,
        )
    except Exception as exc:  # an editor that cannot answer keeps the initializationOptions
        session.ls.warn(f"could not read the editor's tracefix settings: {exc!r}")
        return
    if values and isinstance(values[0], dict):
        session.editor_settings = values[0]


async def open_project(session: Session, root: Path) -> None:
    if not root.is_dir():
        session.ls.warn(f"workspace folder {root} does not exist; not indexed")
        return
    try:
        project = await asyncio.to_thread(Project, root, session.editor_settings, warm=True)
    except StoreError as exc:
        session.ls.log(f"cannot index {root}: {exc}", types.MessageType.Error)
        session.ls.tell(f"tracefix: {exc}", types.MessageType.Error)
        return
    except Exception as exc:
        session.ls.log(f"cannot index {root}: {exc!r}", types.MessageType.Error)
        return
    state = ProjectState(project)
    session.projects[project.root] = state
    for warning in project.warnings:
        session.ls.warn(warning)
    await state.call(project.baseline_everything)
    await state.refresh_tests()
    await publishing.restore(session, state)
    await reviews.refresh(session, state)
    files = await state.call(lambda: len(project.index.files))
    session.ls.log(f"indexed {root}: {files} Python files, {sum(map(len, state.tests.values()))} tests")


async def close_project(session: Session, state: ProjectState) -> None:
    session.projects.pop(state.root, None)
    publishing.forget(session, state)
    await state.close()


@sync(types.INITIALIZED)
async def initialized(session: Session, params: types.InitializedParams) -> None:
    await _pull_settings(session)
    for root in _roots(session):
        await open_project(session, root)
    session.ready.set()
    await watching.start(session)
    runs.publish_status(session)
    await _announce_sandbox(session)


async def _announce_sandbox(session: Session) -> None:
    """Whether fixes will be confined, said once at start; a warning the user sees when a model is
    set up and they will not be (docs/security.md)."""
    confined = await asyncio.to_thread(bubblewrap)  # probes start processes: never on the loop
    session.ls.log(f"candidate fixes run in {'a bubblewrap sandbox' if confined else 'a copy, without a sandbox'}")
    for mode in {s.settings.sandbox for s in session.projects.values() if s.settings.llm.model}:
        warning = await asyncio.to_thread(unconfined_warning, mode)
        if warning:
            session.ls.tell(f"tracefix: {warning}", types.MessageType.Warning)


@sync(types.WORKSPACE_DID_CHANGE_WORKSPACE_FOLDERS)
async def folders_changed(session: Session, params: types.DidChangeWorkspaceFoldersParams) -> None:
    # a folder that is not on disk (a virtual workspace's) has no project, as at startup
    for folder in params.event.removed:
        path = to_fs_path(folder.uri)
        state = session.projects.get(Path(path).resolve()) if path else None
        if state is not None:
            watching.unwatch(session, state)
            await close_project(session, state)
    for folder in params.event.added:
        if not (path := to_fs_path(folder.uri)):
            continue
        root = Path(path).resolve()
        await open_project(session, root)
        if root in session.projects:
            watching.watch(session, session.projects[root])


@sync(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
async def configuration_changed(session: Session, params: types.DidChangeConfigurationParams) -> None:
    settings = params.settings
    if isinstance(settings, dict) and isinstance(settings.get("tracefix"), dict):
        session.editor_settings = settings["tracefix"]
    else:
        await _pull_settings(session)
    for state in session.projects.values():
        # here, not on the worker: a request that follows this notification must see the new settings
        for warning in state.project.reconfigure(session.editor_settings):
            session.ls.warn(warning)


@sync(types.SHUTDOWN)
async def shutdown(session: Session, params) -> None:
    session.shut_down = True
    for task in list(session.tasks):
        task.cancel()  # runs, traces and fixes in flight would write to a closed connection
    watching.stop(session)
    for state in list(session.projects.values()):
        await close_project(session, state)
