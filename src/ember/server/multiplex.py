"""Multiplex server: one thread serves every connection with ``selectors``.

No thread per client, so it holds many idle connections cheaply; a slow method holds up
everyone else (use the thread-pool server, or oneway calls, for long work).
"""

from __future__ import annotations

import logging
import selectors
from typing import Any

from .. import net
from ..errors import CommunicationError, ConnectionClosedError, ProtocolError
from ._loop import ServerLoop, answer, report_failure
from .connection import Connection

__all__ = ["MultiplexServer"]

log = logging.getLogger("ember.server.multiplex")


class MultiplexServer(ServerLoop):
    """Serves a listening socket (or one connected socket) from a single thread."""

    def __init__(self, daemon: Any, listener: Any = None, connected_socket: Any = None) -> None:
        super().__init__(daemon)
        self.connections: set[Connection] = set()
        if connected_socket is not None:
            self.sock = None
            self.location = (None, None, None)
            # Ember never closes a socket the user handed it
            conn = daemon.new_connection(connected_socket, "connected-socket", established=True, owns_socket=False)
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
        return [self.sock] + [c.sock for c in self.connections] if self.sock else [c.sock for c in self.connections]

    def _add(self, conn: Connection) -> None:
        try:
            self.selector.register(conn.sock, selectors.EVENT_READ, conn)
        except KeyError:
            # a connection closed from another thread left its (reused) fd registered
            stale = self.selector.get_key(conn.sock.fileno()).data
            self._drop(stale)
            self.selector.register(conn.sock, selectors.EVENT_READ, conn)
        self.connections.add(conn)

    def _keep_looping(self) -> bool:
        return self.sock is not None or bool(self.connections)  # the one connected socket may be gone

    def poll_once(self, timeout: float) -> None:
        if not self.running:
            return
        try:
            events = self.selector.select(timeout)
        except (OSError, ValueError):
            return
        for key, _ in events:
            data = key.data
            if data is None:
                self._drain_wake()
            elif data == "listen":
                self._accept()
            else:
                self._readable(data)
        self.daemon.periodic()

    def events(self, ready: list) -> None:
        by_sock = {c.sock: c for c in self.connections}
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
            conn = self.daemon.new_connection(*accepted, blocking=self.daemon.ssl_context is None)
            self._add(conn)

    def _readable(self, conn: Connection) -> None:
        daemon = self.daemon
        try:
            try:
                if conn.tls_pending and not conn.tls_handshake(None):
                    return
                chunk = conn.recv_available()
            except CommunicationError:
                raise
            except OSError as exc:
                raise CommunicationError(str(exc)) from None
            if chunk is None:
                return
            if not chunk:
                self._drop(conn)
                return
            conn.decoder.feed(chunk)
            while (msg := conn.decoder.next_message()) is not None:
                answer(daemon, conn, msg)
                if conn.must_close:
                    self._drop(conn)
                    return
        except ProtocolError as exc:
            report_failure(daemon, conn, exc)
            self._drop(conn)
        except CommunicationError as exc:
            if conn.tls_pending and not isinstance(exc, ConnectionClosedError):
                log.warning("%s", exc)
            else:
                log.debug("connection from %s ended: %s", conn.addr, exc)
            self._drop(conn)
        except Exception:
            log.exception("unexpected error serving %s", conn.addr)
            self._drop(conn)

    def _drop(self, conn: Connection) -> None:
        if conn in self.connections:
            self.connections.discard(conn)
            try:
                self.selector.unregister(conn.sock)
            except (KeyError, ValueError, OSError):
                pass
        self.daemon.connection_closed(conn)

    def _release(self) -> None:
        for conn in list(self.connections):
            self._drop(conn)
