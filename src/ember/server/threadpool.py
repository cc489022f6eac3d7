"""Thread-pool server: a worker thread serves each connection for its whole life.

Workers are pooled: ``THREADPOOL_SIZE_MIN`` idle ones are kept, the pool grows up to
``THREADPOOL_SIZE``; a connection that arrives when every worker is busy is refused with
CONNECTFAIL "no free workers".
"""

from __future__ import annotations

import logging
import queue
import selectors
import threading
from typing import Any

from .. import net
from ..errors import DENY_BUSY, CommunicationError, ConnectionClosedError, ProtocolError
from ..protocol import Message, MsgType
from ._loop import ServerLoop, answer, report_failure
from .connection import Connection
from .daemon import DENY_ANNOTATION

__all__ = ["ThreadPoolServer", "serve_connection"]

log = logging.getLogger("ember.server.threadpool")
_IDLE_WORKER_SECONDS = 10.0
_TLS_HANDSHAKE_TIMEOUT = 10.0


def serve_connection(daemon: Any, conn: Connection) -> None:
    """Serve one connection until it closes (blocking). Used by pool workers."""
    try:
        if conn.tls_pending:
            conn.tls_handshake(daemon.config.COMMTIMEOUT or _TLS_HANDSHAKE_TIMEOUT)
        while not conn.closed:
            msg = net.recv_message(conn.sock, conn.decoder)
            if msg is None:
                break
            answer(daemon, conn, msg)
            if conn.must_close:
                break
    except ProtocolError as exc:
        report_failure(daemon, conn, exc)
    except CommunicationError as exc:
        if conn.tls_pending and not isinstance(exc, ConnectionClosedError):
            log.warning("%s", exc)
        else:
            log.debug("connection from %s ended: %s", conn.addr, exc)
    except Exception:
        log.exception("unexpected error serving %s", conn.addr)
    finally:
        daemon.connection_closed(conn)


class _Pool:
    def __init__(self, daemon: Any, min_size: int, max_size: int) -> None:
        self.daemon = daemon
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
            serve_connection(self.daemon, conn)  # never raises: it logs and closes
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


class ThreadPoolServer(ServerLoop):
    """Accepts connections and hands each to a pooled worker thread."""

    def __init__(self, daemon: Any, listener: Any) -> None:
        super().__init__(daemon)
        cfg = daemon.config
        self.sock = listener
        self.location = net.bound_location(self.sock)
        self.pool = _Pool(daemon, cfg.THREADPOOL_SIZE_MIN, cfg.THREADPOOL_SIZE)
        self.selector.register(self.sock, selectors.EVENT_READ, "listen")
        self.description = f"thread pool ({cfg.THREADPOOL_SIZE_MIN}-{cfg.THREADPOOL_SIZE} workers)"

    @property
    def sockets(self) -> list:
        return [self.sock]

    def poll_once(self, timeout: float) -> None:
        if not self.running:
            return
        try:
            events = self.selector.select(timeout)
        except (OSError, ValueError):
            return  # closed under us during shutdown
        for key, _ in events:
            if key.data is None:
                self._drain_wake()
            else:
                self._accept()
        self.daemon.periodic()

    def events(self, ready: list) -> None:
        if self.sock in ready:
            self._accept()
        self.daemon.periodic()

    def _accept(self) -> None:
        accepted = self._accept_socket()
        if accepted is None:
            return
        conn = self.daemon.new_connection(*accepted)
        if not self.pool.submit(conn):
            threading.Thread(target=self._refuse, args=(conn,), daemon=True).start()

    def _refuse(self, conn: Connection) -> None:
        """Read the CONNECT and answer CONNECTFAIL, so the client gets a reason."""
        try:
            if conn.tls_pending:
                conn.tls_handshake(2.0)
            conn.sock.settimeout(2.0)
            msg = net.recv_message(conn.sock, conn.decoder)
            seq, ser = (msg.seq, msg.serializer_id) if msg is not None else (0, 2)
            from .. import serializers

            try:
                payload = serializers.by_id(ser).dumps("no free workers, increase server threadpool size")
            except Exception:
                ser, payload = 2, serializers.by_id(2).dumps("no free workers, increase server threadpool size")
            log.warning("refused connection from %s: no free workers (THREADPOOL_SIZE %d)", conn.addr,
                        self.daemon.config.THREADPOOL_SIZE)
            deny = {DENY_ANNOTATION: str(DENY_BUSY).encode()}
            conn.send(self.daemon.encode(Message(MsgType.CONNECTFAIL, ser, 0, seq, payload, deny)))
        except Exception:
            pass
        finally:
            self.daemon.connection_closed(conn)

    def _release(self) -> None:
        self.pool.close()
