"""Thread-pool driver: a worker thread serves each connection for its whole life.

Workers are pooled: ``THREADPOOL_SIZE_MIN`` idle ones are kept, the pool grows up to
``THREADPOOL_SIZE``; a connection that arrives when every worker is busy is denied as too
busy (``DENY_BUSY``, "no free workers"), so the client gets a reason.
"""

from __future__ import annotations

import logging
import queue
import selectors
import socket
import threading
import time
from typing import Any

from ...errors import DENY_BUSY, PyroError
from ...transport import sync as net
from ...transport.errors import io_error
from ..plain_call import answer_plain
from ..session_state import Connection
from .base import SelectorDriver, stall_timeout

__all__ = ["ThreadPoolServer"]

log = logging.getLogger("ember.server.threadpool")
_IDLE_WORKER_SECONDS = 10.0
_REFUSE_TIMEOUT = 2.0


class _Pool:
    def __init__(self, serve: Any, min_size: int, max_size: int) -> None:
        self.serve = serve
        self.min_size = max(0, min_size)
        self.max_size = max(1, max_size)
        self.queue: queue.Queue[Connection | None] = queue.Queue()
        self.lock = threading.Lock()
        self.workers = 0
        self.idle = 0
        self.busy: set[Connection] = set()
        self.closed = False

    def submit(self, conn: Connection) -> bool:
        with self.lock:
            if self.idle > 0:
                self.idle -= 1
                self.queue.put(conn)
                return True
            if self.workers >= self.max_size:
                return False
            self.workers += 1
        threading.Thread(target=self._work, args=(conn,), name="ember-worker", daemon=True).start()
        return True

    def hand_over(self, conn: Connection) -> None:
        """Queue ``conn`` for the worker whose connection is being closed (eviction): that
        worker takes it as soon as it is free, without a new thread."""
        with self.lock:
            self.idle -= 1  # the freed worker counts itself idle, then takes this at once
            self.queue.put(conn)

    def _work(self, conn: Connection | None) -> None:
        while conn is not None:
            with self.lock:
                self.busy.add(conn)
            self.serve(conn)  # never raises: it logs and closes
            with self.lock:
                self.busy.discard(conn)
                if self.closed:
                    self.workers -= 1
                    return
                self.idle += 1
            conn = self._next()

    def _next(self) -> Connection | None:
        while True:
            try:
                return self.queue.get(timeout=_IDLE_WORKER_SECONDS)
            except queue.Empty:
                with self.lock:
                    if self.queue.qsize():
                        continue
                    if self.workers > self.min_size:
                        self.idle -= 1
                        self.workers -= 1
                        return None

    def close(self) -> None:
        with self.lock:
            self.closed = True
            busy = list(self.busy)
            idle = self.idle
        for conn in busy:
            conn.close()
        for _ in range(idle + 1):
            self.queue.put(None)


class ThreadPoolServer(SelectorDriver):
    """Accepts connections and hands each to a pooled worker thread."""

    def __init__(self, daemon: Any, listener: Any) -> None:
        super().__init__(daemon)
        cfg = self.config
        self.sock = listener
        self.location = net.bound_location(self.sock)
        self.pool = _Pool(self.serve_connection, cfg.THREADPOOL_SIZE_MIN, cfg.THREADPOOL_SIZE)
        self.selector.register(self.sock, selectors.EVENT_READ, "listen")
        self.description = f"thread pool ({cfg.THREADPOOL_SIZE_MIN}-{cfg.THREADPOOL_SIZE} workers)"
        self._refusing: dict[Connection, float] = {}  # connections being denied -> when to give up

    @property
    def sockets(self) -> list:
        return [self.sock]

    def serve_connection(self, conn: Connection) -> None:
        """Serve one connection until it closes (blocking). Run by pool workers."""
        stream = conn.stream
        session = conn.session
        decoder = session.decoder
        cfg = self.config
        recv, sock = net.recv_message, stream.sock
        stall = stall_timeout(cfg)
        try:
            # the handshake (TLS and CONNECT) gets HANDSHAKE_TIMEOUT, whatever COMMTIMEOUT is
            deadline = conn.opened_at + cfg.HANDSHAKE_TIMEOUT
            if stream.tls_pending:
                stream.handshake_tls(max(deadline - time.monotonic(), 0.01))
                sock = stream.sock
            while not session.established and not stream.closed:
                sock.settimeout(max(deadline - time.monotonic(), 0.01))
                try:
                    msg = recv(sock, decoder)
                except TimeoutError:
                    log.info("closing connection from %s: no handshake within %s s (HANDSHAKE_TIMEOUT)", conn.addr,
                             cfg.HANDSHAKE_TIMEOUT)
                    return
                if msg is None:
                    return
                self.answer(conn, msg)
                if session.must_close:
                    return
            sock.settimeout(stream.timeout)
            conn.last_active = time.monotonic()
            dispatcher, encode = self.dispatcher, self.daemon.encode
            while not stream.closed:
                answered = False
                if decoder.idle:  # a new message starts: the common small call takes the plain lane
                    try:
                        chunk = sock.recv(65536)
                    except OSError as exc:
                        raise io_error(exc) from None
                    if not chunk:
                        break
                    conn.in_call = True
                    frame = answer_plain(dispatcher, encode, conn, chunk)
                    answered = frame is not None
                    if answered:
                        stream.send(frame)
                    else:
                        decoder.feed(chunk)  # the general way: the decoder judges it (recv gets the rest)
                if not answered:
                    conn.in_call = False
                    msg = recv(sock, decoder, 65536, stall)
                    if msg is None:
                        break
                    conn.in_call = True
                    self.answer(conn, msg)
                    msg = None  # let the decoder reuse a large payload's buffer for the next message
                conn.in_call = False
                conn.last_active = time.monotonic()
                if session.must_close:
                    break
                if conn.pending >= self.max_pending:
                    self.wait_below_limit(conn)  # back-pressure: read no more until oneway work ends
        except Exception as exc:
            if not conn.evicted:
                self.failed(conn, exc)
        finally:
            self.close_connection(conn)

    def events(self, ready: list) -> None:
        if self.sock in ready:
            self._accept()
        self.daemon.periodic()

    def _accept(self) -> None:
        accepted = self._accept_socket()
        if accepted is None:
            return
        conn = self.socket_connection(*accepted)
        if self.pool.submit(conn):
            return
        victim = self._idlest()
        if victim is not None:
            log.info("all %d workers taken: closing the connection from %s (idle %.1f s) for a new one",
                     self.pool.max_size, victim.addr, time.monotonic() - victim.last_active)
            victim.evicted = True
            _interrupt(victim.stream.sock)
            self.pool.hand_over(conn)
            return
        self._refuse(conn)

    def _idlest(self) -> Connection | None:
        """The connection idle longest, between calls, for at least THREADPOOL_EVICT_IDLE seconds."""
        limit = self.config.THREADPOOL_EVICT_IDLE
        if not limit:
            return None
        before = time.monotonic() - limit
        with self.pool.lock:
            idle = [c for c in self.pool.busy if not c.in_call and not c.evicted and not c.paused
                    and (c.last_active or c.opened_at) <= before]
        return min(idle, key=lambda c: c.last_active or c.opened_at) if idle else None

    # ---- refusing without a thread: the acceptor's own selector reads the CONNECT -------------

    def _refuse(self, conn: Connection) -> None:
        """Deny a connection as too busy: its CONNECT is read (and answered) by this loop."""
        log.warning("refusing connection from %s: no free workers (THREADPOOL_SIZE %d)", conn.addr,
                    self.config.THREADPOOL_SIZE)
        conn.stream.sock.settimeout(0.0)
        try:
            self.selector.register(conn.stream.sock, selectors.EVENT_READ, conn)
        except (KeyError, ValueError, OSError):
            self.close_connection(conn)
            return
        self._refusing[conn] = time.monotonic() + _REFUSE_TIMEOUT

    def _ready(self, conn: Any, mask: int = selectors.EVENT_READ) -> None:
        stream = conn.stream
        try:
            if stream.tls_pending and not stream.handshake_tls(None):
                return
            chunk = stream.recv_available()
            if chunk is None:
                return
            if chunk:
                conn.session.feed(chunk)
                msg = conn.session.next_message()
                if msg is None:
                    return
                reply = conn.session.refuse(msg, "no free workers, increase server threadpool size",
                                            deny_code=DENY_BUSY)
                stream.send(self.daemon.encode(reply, conn.session))
        except (PyroError, OSError):
            pass
        self._end_refusal(conn)

    def _end_refusal(self, conn: Connection) -> None:
        self._refusing.pop(conn, None)
        self.unwatch(conn.stream.sock)
        self.close_connection(conn)

    def _housekeeping(self) -> None:
        super()._housekeeping()
        now = time.monotonic()
        for conn, until in list(self._refusing.items()):
            if until < now:
                self._end_refusal(conn)

    def _release(self) -> None:
        for conn in list(self._refusing):
            self._end_refusal(conn)
        self.pool.close()


def _interrupt(sock: Any) -> None:
    """Wake the worker blocked reading ``sock``: shut the connection down under it (for a TLS
    socket the plain socket's shutdown, so the TLS object is left to its own thread)."""
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass
