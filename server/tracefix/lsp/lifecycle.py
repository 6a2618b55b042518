"""Start-up, workspace folders, settings and trust."""

from __future__ import annotations

import asyncio
from pathlib import Path

from lsprotocol import types
from pygls.uris import to_fs_path

from tracefix.lsp import reviews, watching
from tracefix.lsp.server import TracefixServer, server
from tracefix.project import Project


@server.feature(types.INITIALIZE)
def initialize(ls: TracefixServer, params: types.InitializeParams) -> None:
    options = params.initialization_options or {}
    if isinstance(options, dict):
        settings = options.get("settings", {})
        ls.editor_settings = settings if isinstance(settings, dict) else {}
        ls.trusted = options.get("trusted", True) is not False


def _roots(ls: TracefixServer) -> list[Path]:
    uris = [f.uri for f in ls.workspace.folders.values()] or ([ls.workspace.root_uri] if ls.workspace.root_uri else [])
    return [Path(to_fs_path(u)).resolve() for u in uris if u and to_fs_path(u)]


async def _pull_settings(ls: TracefixServer) -> None:
    caps = ls.client_capabilities.workspace
    if not (caps and caps.configuration):
        return
    try:
        values = await asyncio.wait_for(ls.workspace_configuration_async(
            types.ConfigurationParams(items=[types.ConfigurationItem(section="tracefix")])), 10)
    except Exception as exc:  # an editor that cannot answer keeps the initializationOptions
        ls.warn(f"could not read the editor's tracefix settings: {exc!r}")
        return
    if values and isinstance(values[0], dict):
        ls.editor_settings = values[0]


async def open_project(ls: TracefixServer, root: Path) -> None:
    try:
        project = await asyncio.to_thread(Project, root, ls.editor_settings, warm=True)
    except Exception as exc:
        ls.log(f"cannot index {root}: {exc!r}", types.MessageType.Error)
        return
    ls.projects[project.root] = project
    for warning in project.warnings:
        ls.warn(warning)
    project.baseline_everything()
    ls.publisher.restore(project)
    reviews.refresh(ls, project)
    ls.log(f"indexed {root}: {len(project.index.files)} Python files, {len(project.index.tests())} tests")


@server.feature(types.INITIALIZED)
async def initialized(ls: TracefixServer, params: types.InitializedParams) -> None:
    await _pull_settings(ls)
    for root in _roots(ls):
        await open_project(ls, root)
    ls.ready.set()
    await watching.start(ls)
    ls.runs.publish_status()


@server.feature(types.WORKSPACE_DID_CHANGE_WORKSPACE_FOLDERS)
async def folders_changed(ls: TracefixServer, params: types.DidChangeWorkspaceFoldersParams) -> None:
    for folder in params.event.removed:
        project = ls.projects.pop(Path(to_fs_path(folder.uri)).resolve(), None)
        if project is not None:
            ls.publisher.forget(project)
            project.close()
    for folder in params.event.added:
        await open_project(ls, Path(to_fs_path(folder.uri)).resolve())


@server.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
async def configuration_changed(ls: TracefixServer, params: types.DidChangeConfigurationParams) -> None:
    settings = params.settings
    if isinstance(settings, dict) and isinstance(settings.get("tracefix"), dict):
        ls.editor_settings = settings["tracefix"]
    else:
        await _pull_settings(ls)
    for project in ls.projects.values():
        for warning in project.reconfigure(ls.editor_settings):
            ls.warn(warning)


@server.feature(types.SHUTDOWN)
def shutdown(ls: TracefixServer, params) -> None:
    ls.runs.cancel_all()
    for task in list(ls.background):
        task.cancel()  # traces and fixes in flight would write to a closed connection
    watching.stop()
    for project in ls.projects.values():
        project.close()
