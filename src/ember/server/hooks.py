"""Server call hooks: code that runs on every connection and call of a daemon.

A hook is any object with some of the methods of :class:`ServerHook` (missing ones are
skipped); install it with ``daemon.add_hook(hook)``. Hooks run on the thread or task that
serves the call, with :data:`ember.current_context` set for it, on every server type:
auditing, authorization decisions (raise in ``call_started`` to refuse the call: the client
gets that exception), metrics and tracing (see ``ember.observability``). An exception in
any other hook method is logged, never sent to the client.

>>> class Audit:
...     def call_started(self, call):
...         log.info("%s.%s from %s", call.object_id, call.method, call.conn.addr)
>>> daemon.add_hook(Audit())
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

__all__ = ["ServerHook", "CallInfo", "HookList", "add_default_hook", "remove_default_hook", "default_hooks"]

log = logging.getLogger("ember.server.hooks")


class CallInfo:
    """What a hook learns about one call."""

    __slots__ = ("conn", "object_id", "method", "oneway", "batch", "correlation_id", "annotations", "started",
                 "state", "args", "kwargs")

    def __init__(self, conn: Any, object_id: str, method: str, oneway: bool, batch: bool, correlation_id: Any,
                 annotations: dict[str, bytes], started: float) -> None:
        self.conn = conn
        self.object_id = object_id
        self.method = method
        self.oneway = oneway
        self.batch = batch
        self.correlation_id = correlation_id
        self.annotations = annotations
        self.started = started  # time.perf_counter() when the call was decoded
        self.state: dict[str, Any] = {}  # for hooks: carry data from call_started to call_finished
        self.args: Any = ()  # the call's positional arguments (for a batch: its recorded calls)
        self.kwargs: dict | None = None

    def __repr__(self) -> str:
        return f"<CallInfo {self.object_id}.{self.method} from {getattr(self.conn, 'addr', None)}>"


class ServerHook(Protocol):
    """The hook points (all optional)."""

    def connection_opened(self, conn: Any) -> None: ...

    def connection_closed(self, conn: Any) -> None: ...

    def call_started(self, call: CallInfo) -> None: ...

    def call_finished(self, call: CallInfo, result: Any) -> None: ...

    def call_failed(self, call: CallInfo, exc: BaseException) -> None: ...


_POINTS = ("connection_opened", "connection_closed", "call_started", "call_finished", "call_failed")


default_hooks: list[Any] = []  # installed in every daemon created from now on (e.g. by ember.otel.instrument())


def add_default_hook(hook: Any) -> None:
    """Install ``hook`` in every :class:`~ember.Daemon` created after this call."""
    if hook not in default_hooks:
        default_hooks.append(hook)


def remove_default_hook(hook: Any) -> None:
    """Stop installing ``hook`` in new daemons (daemons that have it keep it)."""
    if hook in default_hooks:
        default_hooks.remove(hook)


class HookList:
    """The hooks of one daemon, bound per hook point so that firing costs nothing when empty."""

    connection_opened: tuple
    connection_closed: tuple
    call_started: tuple
    call_finished: tuple
    call_failed: tuple

    def __init__(self) -> None:
        self.hooks: list[Any] = []
        for point in _POINTS:
            setattr(self, point, ())

    def __bool__(self) -> bool:
        return bool(self.hooks)

    def add(self, hook: Any) -> None:
        if not any(callable(getattr(hook, p, None)) for p in _POINTS):
            raise TypeError(f"{hook!r} has none of the hook methods {', '.join(_POINTS)}")
        self.hooks.append(hook)
        self._rebind()

    def remove(self, hook: Any) -> None:
        self.hooks.remove(hook)
        self._rebind()

    def _rebind(self) -> None:
        for point in _POINTS:
            setattr(self, point, tuple(f for h in self.hooks if callable(f := getattr(h, point, None))))

    def fire(self, point: str, *args: Any) -> None:
        """Call every hook's ``point`` method; exceptions are logged (use for all but call_started)."""
        for func in getattr(self, point):
            try:
                func(*args)
            except Exception:
                log.exception("server hook %s failed", point)
