"""Multiplex driver: one thread serves every connection with ``selectors``.

No thread per client, so it holds many idle connections cheaply; a slow method holds up
everyone else (use the thread-pool server, or oneway calls, for long work).
"""

from __future__ import annotations

import collections
import logging
import selectors
import time
from typing import Any

from ...transport import sync as net
from ..session_state import Connection
from .base import SelectorDriver

__all__ = ["MultiplexServer"]

log = logging.getLogger("ember.server.multiplex")


class MultiplexServer(SelectorDriver):
    """Serves a listening socket (or one connected socket) from a single thread."""

    def __init__(self, daemon: Any, listener: Any = None, connected_socket: Any = None) -> None:
        super().__init__(daemon)
        self.connections: set[Connection] = set()
        self._resumable: collections.deque[Connection] = collections.deque()  # filled by worker threads
        if connected_socket is not None:
            self.sock = None
            self.location = (None, None, None)
            # Ember never closes a socket the user handed it
            conn = self.socket_connection(connected_socket, "connected-socket", established=True, owns_socket=False)
            self._add(conn)
            self.description = "connected socket (one connection)"
        else:
            self.sock = listener
            self.sock.setblocking(False)
            self.location = net.bound_location(self.sock)
            self.selector.register(self.sock, selectors.EVENT_READ, "listen")
            self.description = "multiplex (selectors)"

    @property
    def sockets(self) -> list:
        socks = [c.stream.sock for c in self.connections]
        return [self.sock, *socks] if self.sock else socks

    def _add(self, conn: Connection) -> None:
        sock = conn.stream.sock
        try:
            self.selector.register(sock, selectors.EVENT_READ, conn)
        except KeyError:
            # a connection closed from another thread left its (reused) fd registered
            stale = self.selector.get_key(sock.fileno()).data
            self._drop(stale)
            self.selector.register(sock, selectors.EVENT_READ, conn)
        self.connections.add(conn)

    def _keep_looping(self) -> bool:
        return self.sock is not None or bool(self.connections)  # the one connected socket may be gone

    def _ready(self, data: Any) -> None:
        self._readable(data)

    def events(self, ready: list) -> None:
        by_sock = {c.stream.sock: c for c in self.connections}
        for s in ready:
            if s is self.sock:
                self._accept()
            elif s in by_sock:
                self._readable(by_sock[s])
        self.daemon.periodic()

    def _accept(self) -> None:
        accepted = self._accept_socket()
        if accepted is not None:
            # TLS sockets are non-blocking here: a half-sent TLS record must not stall the loop
            self._add(self.socket_connection(*accepted, blocking=self.daemon.ssl_context is None))

    def _readable(self, conn: Connection) -> None:
        stream = conn.stream
        session = conn.session
        try:
            if stream.tls_pending and not stream.handshake_tls(None):
                return
            target = None if stream.tls else session.decoder.recv_target()
            if target is not None:  # the rest of a large payload: straight into its buffer
                n = stream.recv_into_available(target)
                if n is None:
                    return
                conn.last_active = time.monotonic()
                if not n:
                    self._drop(conn)
                    return
                session.decoder.received(n)
            else:
                chunk = stream.recv_available()
                if chunk is None:
                    return
                conn.last_active = time.monotonic()
                if not chunk:
                    self._drop(conn)
                    return
                session.feed(chunk)
            self._process(conn)
        except Exception as exc:
            self.failed(conn, exc)
            self._drop(conn)

    def _process(self, conn: Connection) -> None:
        """Answer the messages buffered for ``conn``; stop reading from it at its limit of pending work."""
        session = conn.session
        while (msg := session.next_message()) is not None:
            self.answer(conn, msg)
            if session.must_close:
                self._drop(conn)
                return
            if conn.pending >= self.max_pending and self.pause_if_over_limit(conn):
                self._pause(conn)
                return

    def _pause(self, conn: Connection) -> None:
        """Back-pressure: read nothing more from ``conn`` until its oneway work drops below the limit."""
        try:
            self.selector.unregister(conn.stream.sock)
        except (KeyError, ValueError, OSError):
            pass

    def resume(self, conn: Connection) -> None:
        self._resumable.append(conn)
        self.wake()

    def _drain_wake(self) -> None:
        super()._drain_wake()
        while self._resumable:
            conn = self._resumable.popleft()
            if not conn.paused or conn not in self.connections:
                continue
            conn.paused = False
            try:
                self.selector.register(conn.stream.sock, selectors.EVENT_READ, conn)
                self._process(conn)  # messages that came in while it was paused
            except Exception as exc:
                self.failed(conn, exc)
                self._drop(conn)

    def _drop(self, conn: Connection) -> None:
        if conn in self.connections:
            self.connections.discard(conn)
            if conn.paused:
                conn.paused = False
                self.close_connection(conn)
                return
            try:
                self.selector.unregister(conn.stream.sock)
            except (KeyError, ValueError, OSError):
                pass
        self.close_connection(conn)

    def _close_idle(self, before: float) -> None:
        for conn in [c for c in self.connections if c.last_active < before]:
            if conn.stream.owns_socket:  # never a connected socket the user handed in
                log.debug("closing connection from %s: idle longer than IDLE_TIMEOUT", conn.addr)
                self._drop(conn)

    def _release(self) -> None:
        for conn in list(self.connections):
            self._drop(conn)
