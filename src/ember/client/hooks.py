"""Client call hooks: code that runs around every call a proxy makes.

A hook is any object with ``before_call(call)`` and/or ``after_call(call, result, exc)``;
install it process-wide with :func:`add_client_hook`. ``before_call`` may add annotations
to ``call.annotations`` (4-character ids, bytes values) — that is how a trace context such
as W3C ``traceparent`` travels to the server, where Pyro5 peers simply ignore it. Raising in
``before_call`` stops the call with that exception; an exception in ``after_call`` is
logged. Both proxies (blocking and asyncio) run the same hooks; with no hook installed
the call path pays one truth test.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

__all__ = ["ClientHook", "ClientCallInfo", "add_client_hook", "remove_client_hook", "installed"]

log = logging.getLogger("ember.client.hooks")

installed: list[Any] = []  # the hooks, in the order they were added (read on every call)


class ClientCallInfo:
    """One call as a client hook sees it."""

    __slots__ = ("proxy", "uri", "object_id", "method", "oneway", "annotations", "state", "correlation_id")

    def __init__(self, proxy: Any, uri: Any, object_id: str, method: str, oneway: bool,
                 correlation_id: Any = None) -> None:
        self.proxy = proxy
        self.uri = uri  # the URI connected to (host and port of the server)
        self.object_id = object_id
        self.method = method
        self.oneway = oneway
        self.correlation_id = correlation_id  # the caller's current_context.correlation_id
        self.annotations: dict[str, bytes] = {}  # added to the call's message
        self.state: dict[str, Any] = {}  # for the hook: carry data from before_call to after_call

    def __repr__(self) -> str:
        return f"<ClientCallInfo {self.object_id}.{self.method} to {self.uri}>"


class ClientHook(Protocol):
    """The hook points (both optional)."""

    def before_call(self, call: ClientCallInfo) -> None: ...

    def after_call(self, call: ClientCallInfo, result: Any, exc: BaseException | None) -> None: ...


def add_client_hook(hook: Any) -> None:
    """Run ``hook`` around every proxy call of this process."""
    if not callable(getattr(hook, "before_call", None)) and not callable(getattr(hook, "after_call", None)):
        raise TypeError(f"{hook!r} has neither before_call nor after_call")
    installed.append(hook)


def remove_client_hook(hook: Any) -> None:
    """Remove a hook added with :func:`add_client_hook` (no error if it is not installed)."""
    if hook in installed:
        installed.remove(hook)


def before(info: ClientCallInfo) -> None:
    for hook in list(installed):
        func = getattr(hook, "before_call", None)
        if func is not None:
            func(info)


def after(info: ClientCallInfo, result: Any, exc: BaseException | None) -> None:
    for hook in list(installed):
        func = getattr(hook, "after_call", None)
        if func is not None:
            try:
                func(info, result, exc)
            except Exception:
                log.exception("client hook after_call failed")
