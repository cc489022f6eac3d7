"""``current_context``: what the code running now knows about the call it serves or makes.

On the server, during a call: ``client`` (the connection object), ``client_sock_addr``,
``seq``, ``msg_flags``, ``serializer_id``, ``annotations`` (received), and
``response_annotations`` (set them to send annotations back), ``correlation_id``.
On the client: set ``correlation_id`` (a :class:`uuid.UUID`) and ``annotations`` (a dict of
4-character keys to bytes) and every call this thread/task makes carries them;
``response_annotations`` holds what the last reply carried.

It lives in a :mod:`contextvars` variable: each thread (and each asyncio task) has its own.
A server method that calls other Ember objects passes its ``correlation_id`` along.
"""

from __future__ import annotations

import contextvars
import sys
import threading
import uuid
from typing import Any

__all__ = ["CallContext", "current_context"]


class CallContext:
    """The per-thread/per-task call state; see the module docstring."""

    __slots__ = (
        "client",
        "client_sock_addr",
        "seq",
        "msg_flags",
        "serializer_id",
        "annotations",
        "response_annotations",
        "correlation_id",
    )

    def __init__(self) -> None:
        self.client: Any = None
        self.client_sock_addr: Any = None
        self.seq = 0
        self.msg_flags = 0
        self.serializer_id = 0
        self.annotations: dict[str, bytes] = {}
        self.response_annotations: dict[str, bytes] = {}
        self.correlation_id: uuid.UUID | None = None

    def copy(self) -> CallContext:
        """An independent copy (its annotation dicts copied too): what a oneway call's worker
        thread gets. Written out field by field: it runs for every oneway call."""
        new = CallContext.__new__(CallContext)
        new.client = self.client
        new.client_sock_addr = self.client_sock_addr
        new.seq = self.seq
        new.msg_flags = self.msg_flags
        new.serializer_id = self.serializer_id
        ann, resp = self.annotations, self.response_annotations
        new.annotations = dict(ann) if isinstance(ann, dict) else ann
        new.response_annotations = dict(resp) if isinstance(resp, dict) else resp
        new.correlation_id = self.correlation_id
        return new

    @property
    def peer_certificate(self) -> dict | None:
        """The client's TLS certificate (``SSLSocket.getpeercert()`` form), or None."""
        return self.client.peer_certificate if self.client is not None else None

    @property
    def storage(self) -> dict:
        """A dict that lives as long as the client's connection: per-connection state."""
        if self.client is None:
            raise RuntimeError("no client connection in this context (not inside a remote call)")
        return self.client.storage

    def track_resource(self, resource: Any) -> None:
        """Close ``resource`` (call its ``close()``) when the client's connection drops."""
        if self.client is not None:
            self.client.tracked_resources.add(resource)

    def untrack_resource(self, resource: Any) -> None:
        """Stop tracking a resource registered with :meth:`track_resource`."""
        if self.client is not None:
            self.client.tracked_resources.discard(resource)


_var: contextvars.ContextVar[CallContext] = contextvars.ContextVar("ember_call_context")
_owners: contextvars.ContextVar[int] = contextvars.ContextVar("ember_call_context_owner")


def get() -> CallContext:
    """The CallContext of the running thread/task (created on first use)."""
    try:
        return _var.get()
    except LookupError:
        ctx = CallContext()
        _var.set(ctx)
        _owners.set(_owner_token())
        return ctx


def peek() -> CallContext | None:
    """The CallContext if one exists, without creating it (hot path of proxies)."""
    return _var.get(None)


def set_context(ctx: CallContext) -> None:
    """Make ``ctx`` the CallContext of the running thread/task (which then owns it)."""
    _var.set(ctx)
    _owners.set(_owner_token())


def _owner_token() -> int:
    # asyncio is only looked at once something imported it: without it no task can be running
    aio = sys.modules.get("asyncio")
    if aio is not None:
        try:
            return id(aio.current_task())
        except RuntimeError:  # no event loop running in this thread
            pass
    return threading.get_ident()


def _owned() -> CallContext:
    """This task's (or thread's) own CallContext, for changing it.

    asyncio tasks copy the context they start in, so tasks started from one place share
    its CallContext object; the first change a task makes gives it a copy of its own, so
    concurrent tasks setting annotations do not see each other's.
    """
    ctx = _var.get(None)
    owner = _owner_token()
    if ctx is None or _owners.get(None) != owner:
        ctx = ctx.copy() if ctx is not None else CallContext()
        _var.set(ctx)
        _owners.set(owner)
    return ctx


class _CurrentContext:
    """Attribute access goes to the running thread's/task's :class:`CallContext`."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        return getattr(get(), name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(_owned(), name, value)

    def track_resource(self, resource: Any) -> None:
        get().track_resource(resource)

    def untrack_resource(self, resource: Any) -> None:
        get().untrack_resource(resource)

    def __repr__(self) -> str:
        ctx = get()
        return f"<current_context client={ctx.client_sock_addr} seq={ctx.seq} corr={ctx.correlation_id}>"


current_context = _CurrentContext()
