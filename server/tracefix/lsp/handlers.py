"""How a feature module declares its handlers, and how the server factory registers them.

Two kinds, as in ruff's server:
- `sync`: runs on the event loop with the Session, the only place the Session changes. It must
  return at once; a coroutine handler may await, but only for a thread, a process or the network.
- `background`: gets a Snapshot taken on the loop and runs on its folder's worker thread, never
  on the loop; it cannot touch the Session.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from tracefix.lsp.server import TracefixServer
    from tracefix.lsp.session import Session, Snapshot

Kind = Literal["sync", "background"]


@dataclass(frozen=True)
class Handler:
    method: str
    kind: Kind
    options: Any = None
    command: bool = False  # a workspace/executeCommand command rather than an LSP method
    # background only: (session, params) → the Snapshot to work on, or None to answer `empty`
    take: Callable[[Session, Any], Snapshot | None] | None = None
    empty: Any = None


def sync(method: str, options: Any = None, *, command: bool = False):
    def mark(fn):
        fn.handler = Handler(method, "sync", options, command)
        return fn

    return mark


def background(method: str, take: Callable[[Session, Any], Snapshot | None], empty: Any = None):
    def mark(fn):
        fn.handler = Handler(method, "background", take=take, empty=empty)
        return fn

    return mark


def register(ls: TracefixServer, session: Session, modules: list[ModuleType]) -> None:
    """Every function the modules marked, bound to the session."""
    for module in modules:
        for fn in vars(module).values():
            handler = getattr(fn, "handler", None)
            if isinstance(handler, Handler) and getattr(fn, "__module__", None) == module.__name__:
                bound = _bind(handler, fn, session)
                method = str(handler.method)
                if handler.command:
                    ls.command(method)(bound)
                else:
                    ls.feature(method, handler.options)(bound)


def _bind(handler: Handler, fn, session: Session):
    if handler.kind == "sync":
        if inspect.iscoroutinefunction(fn):

            async def run_async(ls, *args):
                return await fn(session, *args)

            return _named(run_async, fn)

        def run(ls, *args):
            return fn(session, *args)

        return _named(run, fn)

    take = handler.take
    assert take is not None  # background() sets it

    async def run_background(ls, params):
        snapshot = take(session, params)
        if snapshot is None:
            return handler.empty
        return await snapshot.state.call(fn, snapshot, params)

    return _named(run_background, fn)


def _named(wrapper, fn):
    """The wrapper under fn's name, for logs. Not functools.wraps: pygls reads the signature to
    pass the server and command arguments, and must see the wrapper's (ls, ...), not fn's."""
    wrapper.__name__, wrapper.__qualname__ = fn.__name__, fn.__qualname__
    return wrapper
