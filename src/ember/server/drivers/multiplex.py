"""Multiplex driver: one thread serves every connection with ``selectors``.

No thread per client, so it holds many idle connections cheaply; a slow method holds up
everyone else (use the thread-pool server, or oneway calls, for long work).
"""

from __future__ import annotations

import collections
import logging
import selectors
import ssl
import time
from typing import Any

from ...transport import sync as net
from ...transport.errors import io_error
from ..plain_call import answer_plain
from ..session_state import Connection
from .base import SelectorDriver, stall_timeout

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

    def _ready(self, data: Any, mask: int = selectors.EVENT_READ) -> None:
        if mask & selectors.EVENT_WRITE:
            self._writable(data)
        elif mask & selectors.EVENT_READ:
            self._readable(data)

    def events(self, ready: list) -> None:
        by_sock = {c.stream.sock: c for c in self.connections}
        for s in ready:
            if s is self.sock:
                self._accept()
            elif s in by_sock:
                self._readable(by_sock[s])
        for conn in [c for c in self.connections if c.outbuf]:  # an outside loop waits for reads only
            self._writable(conn)
        self.daemon.periodic()

    def _accept(self) -> None:
        accepted = self._accept_socket()
        if accepted is not None:
            # non-blocking: a half-sent message (or TLS record) or a client that stops reading its
            # replies must not stall the loop; replies it cannot take yet wait in conn.outbuf
            self._add(self.socket_connection(*accepted, blocking=False))

    def _readable(self, conn: Connection) -> None:
        stream = conn.stream
        session = conn.session
        try:
            if stream.tls_pending and not stream.handshake_tls(None):
                return
            # the rest of a large payload goes straight into its buffer; anything else comes as a chunk
            target = None if stream.tls else session.decoder.recv_target()
            got = stream.recv_available() if target is None else stream.recv_into_available(target)
            if got is None:  # nothing there yet
                return
            conn.last_active = time.monotonic()
            if not got:
                self._drop(conn)
                return
            if target is not None:
                session.decoder.received(got)
            else:
                if not conn.outbuf and session.decoder.idle:  # a new message: maybe a plain call
                    frame = answer_plain(self.dispatcher, self.daemon.encode, conn, got)
                    if frame is not None:
                        self._send(conn, frame)
                        return
                session.feed(got)
            self._process(conn)
        except Exception as exc:
            self.failed(conn, exc)
            self._drop(conn)

    def _process(self, conn: Connection) -> None:
        """Answer the messages buffered for ``conn``; stop at its limit of pending work, or while
        its replies wait to be sent (the client is not reading them)."""
        session = conn.session
        while not conn.outbuf and (msg := session.next_message()) is not None:
            self.answer(conn, msg)
            if session.must_close:
                if not conn.outbuf:
                    self._drop(conn)
                return
            if conn.pending >= self.max_pending and self.pause_if_over_limit(conn):
                self._pause(conn)
                return

    def answer(self, conn: Connection, msg: Any) -> None:
        reply = self.dispatcher.handle(conn, msg)
        if reply is not None:
            self._send(conn, self.daemon.encode(reply, conn.session))

    def _send(self, conn: Connection, frame: Any) -> None:
        """Send what the socket takes now; keep the rest for when it is writable."""
        sock = conn.stream.sock
        if sock.gettimeout() != 0.0:  # a connected socket handed in by the user stays blocking
            conn.stream.send(frame)
            return
        out = conn.outbuf
        was_idle = not out
        if type(frame) is list:
            out.extend(memoryview(part).cast("B") for part in frame)
        else:
            out.append(memoryview(frame))
        if was_idle:  # else the socket is being watched for writability already
            self._flush(conn)
            if out:
                conn.write_since = time.monotonic()
                self._watch(conn, selectors.EVENT_WRITE)

    def _flush(self, conn: Connection) -> None:
        """Write queued reply bytes until the socket would block."""
        sock = conn.stream.sock
        out = conn.outbuf
        while out:
            try:
                sent = sock.send(out[0])
            except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
                return
            except OSError as exc:
                out.clear()
                raise io_error(exc, sending=True) from None
            if sent == len(out[0]):
                out.popleft()
            else:
                out[0] = out[0][sent:]
                conn.write_since = time.monotonic()

    def _writable(self, conn: Connection) -> None:
        try:
            self._flush(conn)
        except Exception as exc:
            self.failed(conn, exc)
            self._drop(conn)
            return
        if conn.outbuf:
            return
        if conn.session.must_close:
            self._drop(conn)
            return
        self._watch(conn, selectors.EVENT_READ)
        try:
            self._process(conn)  # requests that arrived while the replies waited
        except Exception as exc:
            self.failed(conn, exc)
            self._drop(conn)

    def _watch(self, conn: Connection, events: int) -> None:
        """Wait for ``events`` on ``conn`` (only writability while replies are queued: reading
        more requests from a client that does not read its replies would only pile up more)."""
        if conn.paused or conn not in self.connections:
            return
        try:
            self.selector.modify(conn.stream.sock, events, conn)
        except (KeyError, ValueError, OSError):
            pass

    def _pause(self, conn: Connection) -> None:
        """Back-pressure: read nothing more from ``conn`` until its oneway work drops below the limit."""
        self.unwatch(conn.stream.sock)

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
                self.selector.register(conn.stream.sock, selectors.EVENT_WRITE if conn.outbuf else selectors.EVENT_READ,
                                       conn)
                if conn.outbuf:
                    continue
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
            self.unwatch(conn.stream.sock)
        self.close_connection(conn)

    def _housekeeping(self) -> None:
        """Close connections that did not complete their handshake within HANDSHAKE_TIMEOUT, or
        stalled in the middle of a message for STALL_TIMEOUT (the sockets of this loop have no
        timeout of their own)."""
        super()._housekeeping()
        now = time.monotonic()
        cfg = self.config
        handshake_before = now - cfg.HANDSHAKE_TIMEOUT
        stall = stall_timeout(cfg)
        for conn in list(self.connections):
            if not conn.stream.owns_socket:
                continue
            if not conn.session.established and conn.opened_at < handshake_before:
                log.info("closing connection from %s: no handshake within %s s (HANDSHAKE_TIMEOUT)", conn.addr,
                         cfg.HANDSHAKE_TIMEOUT)
                self._drop(conn)
            elif stall and conn.session.decoder.buffered and conn.last_active < now - stall:
                log.info("closing connection from %s: silent for %s s in the middle of a message (STALL_TIMEOUT)",
                         conn.addr, stall)
                self._drop(conn)
            elif stall and conn.outbuf and conn.write_since < now - stall:
                log.info("closing connection from %s: it took none of its replies for %s s (STALL_TIMEOUT)",
                         conn.addr, stall)
                self._drop(conn)

    def _close_idle(self, before: float) -> None:
        for conn in [c for c in self.connections if c.last_active < before]:
            if conn.stream.owns_socket:  # never a connected socket the user handed in
                log.debug("closing connection from %s: idle longer than IDLE_TIMEOUT", conn.addr)
                self._drop(conn)

    def _release(self) -> None:
        for conn in list(self.connections):
            self._drop(conn)
