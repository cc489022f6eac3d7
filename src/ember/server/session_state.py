"""The daemon's view of one client connection: session state without any socket.

A :class:`Connection` is what methods see as ``current_context.client``: the peer's
address, the handshake data it sent, its TLS certificate, a ``storage`` dict for the
application, its session-mode object instances and the resources to close when it goes.
Its wire state is a :class:`~ember.protocol.ServerSession`; the bytes themselves are moved
by the server driver through a transport stream (``conn.stream``).
"""

from __future__ import annotations

import collections
from typing import Any

from ..context import CallContext
from ..protocol import Message, ServerSession

__all__ = ["Connection", "set_call_context", "fill_call_context"]


class Connection:
    """One client connection's state.

    ``storage`` is a dict for the application (per-connection state, what Pyro 3 called
    thread-local storage); ``instances`` holds the session-mode objects of this client.
    """

    def __init__(self, stream: Any, addr: Any, session: ServerSession) -> None:
        self.stream = stream  # the driver's transport (SocketStream, AsyncStream); never used by dispatch
        self.addr = addr
        self.session = session
        self.instances: dict[type, Any] = {}
        self.tracked_resources: set[Any] = set()
        self.storage: dict[str, Any] = {}
        self.handshake: Any = None
        self.released = False  # the daemon has run its connection_closed cleanup
        self.established_at: float | None = None
        self.tasks: set[Any] = set()  # asyncio driver: calls in flight on this connection
        self.oneway_tasks: set[Any] = set()  # ... of which oneway calls (they outlive the connection)
        self.last_active = 0.0  # time.monotonic() of the last bytes received (kept when IDLE_TIMEOUT is on)
        self.opened_at = 0.0  # time.monotonic() of the accept (HANDSHAKE_TIMEOUT)
        self.in_call = False  # thread-pool driver: a message is being handled (not idle)
        self.evicted = False  # thread-pool driver: closed to free its worker for a new connection
        self.pending = 0  # oneway work accepted from this connection and not finished (MAX_PENDING_CALLS)
        self.paused = False  # the driver stopped reading from it until pending work ends
        self.outbuf: collections.deque = collections.deque()  # multiplex driver: reply bytes not sent yet
        self.write_since = 0.0  # ... and when sending them last made progress (STALL_TIMEOUT)
        self.slot_freed: Any = None  # asyncio driver: an asyncio.Event set when pending work ends

    @property
    def extended(self) -> bool:
        return bool(self.session.extended)

    @property
    def established(self) -> bool:
        return self.session.established

    @property
    def must_close(self) -> bool:
        return self.session.must_close

    @property
    def peer_certificate(self) -> dict | None:
        """The client's TLS certificate (mutual TLS), or None."""
        return getattr(self.stream, "peer_certificate", None)

    @property
    def closed(self) -> bool:
        return self.stream is None or self.stream.closed

    def close(self) -> None:
        """Close the transport (idempotent)."""
        if self.stream is not None:
            self.stream.close()

    def __repr__(self) -> str:
        return f"<Connection from {self.addr}{' closed' if self.closed else ''}>"


def set_call_context(ctx: CallContext, conn: Connection, msg: Message) -> None:
    """Fill the call context of the thread/task serving ``msg``."""
    fill_call_context(ctx, conn, msg.seq, msg.flags, msg.serializer_id, msg.annotations, msg.correlation_id)


def fill_call_context(ctx: CallContext, conn: Connection, seq: int, flags: int, serializer_id: int,
                      annotations: dict[str, bytes], correlation_id: Any) -> None:
    """Fill the call context of the thread/task serving a call (the plain lane has no Message)."""
    ctx.client = conn
    ctx.client_sock_addr = conn.addr
    ctx.seq = seq
    ctx.msg_flags = flags
    ctx.serializer_id = serializer_id
    ctx.annotations = annotations
    ctx.response_annotations = {}
    ctx.correlation_id = correlation_id
