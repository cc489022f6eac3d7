"""Thread-pool driver: a worker thread serves each connection for its whole life.

Workers are pooled: ``THREADPOOL_SIZE_MIN`` idle ones are kept, the pool grows up to
``THREADPOOL_SIZE``; a connection that arrives when every worker is busy is denied as too
busy (``DENY_BUSY``, "no free workers"), so the client gets a reason.
"""

from __future__ import annotations

import logging
import queue
import selectors
import threading
from typing import Any

from ...errors import DENY_BUSY, PyroError
from ...transport import sync as net
from ..session_state import Connection
from .base import SelectorDriver

__all__ = ["ThreadPoolServer"]

log = logging.getLogger("ember.server.threadpool")
_IDLE_WORKER_SECONDS = 10.0
_TLS_HANDSHAKE_TIMEOUT = 10.0
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

    @property
    def sockets(self) -> list:
        return [self.sock]

    def serve_connection(self, conn: Connection) -> None:
        """Serve one connection until it closes (blocking). Run by pool workers."""
        stream = conn.stream
        session = conn.session
        decoder = session.decoder
        recv, sock = net.recv_message, stream.sock
        try:
            if stream.tls_pending:
                stream.handshake_tls(self.config.COMMTIMEOUT or _TLS_HANDSHAKE_TIMEOUT)
                sock = stream.sock
            while not stream.closed:
                msg = recv(sock, decoder)
                if msg is None:
                    break
                self.answer(conn, msg)
                msg = None  # let the decoder reuse a large payload's buffer for the next message
                if session.must_close:
                    break
                if conn.pending >= self.max_pending:
                    self.wait_below_limit(conn)  # back-pressure: read no more until oneway work ends
        except Exception as exc:
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
        if not self.pool.submit(conn):
            threading.Thread(target=self._refuse, args=(conn,), daemon=True).start()

    def _refuse(self, conn: Connection) -> None:
        """Read the CONNECT and deny it as too busy, so the client gets a reason."""
        stream = conn.stream
        try:
            if stream.tls_pending:
                stream.handshake_tls(_REFUSE_TIMEOUT)
            stream.sock.settimeout(_REFUSE_TIMEOUT)
            msg = stream.recv_message(conn.session.decoder)
            log.warning("refused connection from %s: no free workers (THREADPOOL_SIZE %d)", conn.addr,
                        self.config.THREADPOOL_SIZE)
            reply = conn.session.refuse(msg, "no free workers, increase server threadpool size", deny_code=DENY_BUSY)
            stream.send(self.daemon.encode(reply, conn.session))
        except (PyroError, OSError):
            pass
        finally:
            self.close_connection(conn)

    def _release(self) -> None:
        self.pool.close()
