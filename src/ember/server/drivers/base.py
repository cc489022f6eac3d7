"""What every server driver shares: the driver interface, connection bookkeeping, the one
per-connection failure policy, oneway scheduling, and for the selector-based drivers the
wake-up socket pair, accepting with back-off, and a shutdown that lets the loop's own
thread clean up.

A driver only moves bytes between transport streams and the daemon's
:class:`~ember.server.dispatch.Dispatcher`, and schedules work; every rule of the protocol
and of calls lives in the sessions and the dispatcher.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import selectors
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from ...errors import CommunicationError, ConnectionClosedError, DaemonError, ProtocolError
from ...protocol import ByteBudget, Message, ServerSession
from ...transport import sync as net
from ..session_state import Connection

__all__ = ["Driver", "BaseDriver", "SelectorDriver", "stall_timeout", "AcceptBackoff", "ACCEPT_RETRY", "OUT_OF_RESOURCES"]

log = logging.getLogger("ember.server")

_SWEEP_INTERVAL = 0.25  # seconds between housekeeping sweeps of a selector loop
OUT_OF_RESOURCES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


_resource: Any
try:
    import resource as _resource
except ImportError:  # Windows
    _resource = None

ACCEPT_RETRY = 0.1  # seconds between accept attempts while out of file descriptors or memory


class AcceptBackoff:
    """What a listener logs while it cannot accept for lack of resources (``ulimit -n``
    reached: EMFILE; the system's file table full: ENFILE; ENOBUFS, ENOMEM): one line when it
    starts, a reminder at most every ``remind`` seconds, one line when accepting works again.
    Meanwhile new connections wait in the listen backlog; connections already open are served."""

    def __init__(self, remind: float = 60.0) -> None:
        self.remind = remind
        self.since: float | None = None
        self.failures = 0
        self._last_log = 0.0

    def failed(self, exc: OSError) -> None:
        now = time.monotonic()
        self.failures += 1
        if self.since is None:
            self.since = self._last_log = now
            log.warning("cannot accept new connections: %s%s; retrying every %s s, new clients wait meanwhile",
                        exc.strerror or exc, _fd_limit_hint(exc), ACCEPT_RETRY)
        elif now - self._last_log >= self.remind:
            self._last_log = now
            log.warning("still cannot accept new connections after %.0f s: %s (%d attempts)", now - self.since,
                        exc.strerror or exc, self.failures)

    def succeeded(self) -> None:
        if self.since is not None:
            log.warning("accepting new connections again after %.1f s (%d failed attempts)",
                        time.monotonic() - self.since, self.failures)
            self.since = None
            self.failures = 0


def _fd_limit_hint(exc: OSError) -> str:
    if exc.errno != errno.EMFILE:
        return ""
    try:
        soft, _hard = _resource.getrlimit(_resource.RLIMIT_NOFILE)
    except (AttributeError, OSError, ValueError):
        return " (the process's limit of open files)"
    return f" (the process's limit of open files, ulimit -n, is {soft}: raise it to serve more clients at once)"


class Driver(Protocol):
    """What the daemon needs of a server driver (register new ones with
    :func:`ember.server.drivers.register_driver`)."""

    description: str
    location: tuple  # (host, port, unix socket path)
    pipelined: bool  # may answer the calls of one connection out of order (announced as EMUX)

    @property
    def sockets(self) -> list: ...

    def loop(self, condition: Callable[[], bool]) -> None: ...

    def poll_once(self, timeout: float) -> None: ...

    def events(self, ready: list) -> None: ...

    async def serve(self, condition: Callable[[], bool] = ...) -> None: ...

    def shutdown(self) -> None: ...

    def await_coroutine(self, coro: Any) -> Any: ...

    def run_oneway(self, work: Callable[[], None], conn: Any = None) -> None: ...

    def spawn(self, coro: Any, conn: Any = None) -> None: ...


class BaseDriver:
    """Connection bookkeeping, the failure policy and oneway scheduling, for every driver."""

    description = "?"
    pipelined = False
    location: tuple = (None, None, None)

    def __init__(self, daemon: Any) -> None:
        self.daemon = daemon
        self.dispatcher = daemon.dispatcher
        self.config = daemon.config
        self.accept_backoff = AcceptBackoff()
        self._oneway_pool: ThreadPoolExecutor | None = None
        self._oneway_lock = threading.Lock()
        self._count_lock = threading.Lock()
        self.budget = ByteBudget(self.config.MAX_BYTES_IN_FLIGHT)
        self.max_pending = self.config.MAX_PENDING_CALLS
        self._pending_cond = threading.Condition()

    # ---- connections ------------------------------------------------------------------------

    def open_connection(self, stream: Any, addr: Any, established: bool = False) -> Connection:
        """A new connection over ``stream``: counted, and announced to the hooks."""
        cfg = self.config
        conn = Connection(stream, addr, ServerSession(cfg.MAX_MESSAGE_SIZE, cfg.MAX_ANNOTATIONS_SIZE, established,
                                                         cfg.LOGWIRE, addr, self.budget))
        conn.opened_at = time.monotonic()
        self.dispatcher.admission.opened()
        self.dispatcher.connection_opened(conn)
        return conn

    def socket_connection(self, sock: socket.socket, addr: Any, established: bool = False, owns_socket: bool = True,
                          blocking: bool = True) -> Connection:
        """:meth:`open_connection` for an accepted socket (wrapped in TLS when the daemon serves TLS)."""
        ctx = self.daemon.ssl_context
        if ctx is not None and not established:
            sock = ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        cfg = self.config
        # a blocking stream waits at most IDLE_TIMEOUT for a client's next message (then it closes)
        waits = [t for t in (cfg.COMMTIMEOUT, cfg.IDLE_TIMEOUT if not established else 0) if t]
        stream = net.SocketStream(sock, addr, min(waits) if waits else None, blocking, owns_socket)
        stream.send_timeout = stall_timeout(cfg)
        conn = self.open_connection(stream, addr, established)
        conn.last_active = time.monotonic()
        return conn

    def close_connection(self, conn: Connection) -> None:
        """Release everything tied to a connection that went away (once per connection)."""
        with self._count_lock:
            if conn.released:
                return
            conn.released = True
        self.dispatcher.admission.closed()
        self.dispatcher.disconnecting(conn)  # Pyro5's order: before the socket and the resources close
        conn.close()
        conn.session.closed()
        self.dispatcher.connection_closed(conn)

    def answer(self, conn: Connection, msg: Message) -> None:
        """Dispatch one message and send its reply, if it has one."""
        reply = self.dispatcher.handle(conn, msg)
        if reply is not None:
            conn.stream.send(self.daemon.encode(reply, conn.session))

    def send_now(self, conn: Connection, frame: Any) -> None:
        """Send a frame on this driver's kind of stream without waiting for an event loop."""
        conn.stream.send(frame)

    def failed(self, conn: Connection, exc: BaseException) -> None:
        """The one failure policy for a connection's I/O: what is logged, what the peer is told."""
        if isinstance(exc, ProtocolError):
            reply = self.dispatcher.protocol_failure(conn, exc)
            if reply is not None:
                with contextlib.suppress(CommunicationError):
                    self.send_now(conn, self.daemon.encode(reply, conn.session))
        elif isinstance(exc, CommunicationError):
            if getattr(conn.stream, "tls_pending", False) and not isinstance(exc, ConnectionClosedError):
                log.warning("%s", exc)
            else:
                log.debug("connection from %s ended: %s", conn.addr, exc)
        else:
            log.error("unexpected error serving %s", conn.addr, exc_info=exc)

    # ---- work the dispatcher hands over ------------------------------------------------------

    def await_coroutine(self, coro: Any) -> Any:
        """Run a coroutine a plain method returned, from a worker thread: on a private loop."""
        return asyncio.run(coro)

    def run_oneway(self, work: Callable[[], None], conn: Connection | None = None) -> None:
        """Run oneway work without holding up the connection (a shared worker pool).

        The work counts against ``conn``'s MAX_PENDING_CALLS until it ends; the driver stops
        reading from a connection at its limit (:meth:`pause_if_over_limit`), so a client sending
        oneway calls faster than they run is slowed down by TCP, and no call is dropped.
        """
        pool = self._oneway_pool
        if pool is None:
            with self._oneway_lock:
                if self._oneway_pool is None:
                    self._oneway_pool = ThreadPoolExecutor(max_workers=max(4, self.config.THREADPOOL_SIZE),
                                                           thread_name_prefix="ember-oneway")
                pool = self._oneway_pool
        if conn is None:
            pool.submit(work)
            return
        with self._pending_cond:  # what pending_started() does, without the call (once per oneway call)
            conn.pending += 1

        def counted() -> None:
            try:
                work()
            finally:
                self.pending_finished(conn)

        pool.submit(counted)

    def pending_started(self, conn: Connection) -> None:
        with self._pending_cond:
            conn.pending += 1

    def pending_finished(self, conn: Connection) -> None:
        with self._pending_cond:
            conn.pending -= 1
            if conn.pending >= self.max_pending or not conn.paused:
                return
            self._pending_cond.notify_all()
        self.resume(conn)

    def pause_if_over_limit(self, conn: Connection, in_flight: int = 0) -> bool:
        """Mark ``conn`` paused when its pending work (plus ``in_flight`` calls) is at the limit;
        True if so. Done under the lock that :meth:`pending_finished` takes, so a resume is never missed."""
        with self._pending_cond:
            if conn.pending + in_flight < self.max_pending:
                return False
            conn.paused = True
            return True

    def wait_below_limit(self, conn: Connection) -> None:
        """Block the connection's own thread until its pending work is below the limit."""
        with self._pending_cond:
            conn.paused = True
            while conn.pending >= self.max_pending and not conn.closed:
                self._pending_cond.wait(1.0)
            conn.paused = False

    def resume(self, conn: Connection) -> None:
        """``conn`` dropped below its limit of pending work (called from the thread that ended it)."""

    def spawn(self, coro: Any, conn: Connection | None = None) -> None:
        coro.close()
        raise DaemonError(f"{self.description} server cannot run coroutines in the background")

    async def serve(self, condition: Callable[[], bool] = lambda: True) -> None:
        raise DaemonError("serve_async() needs Daemon(servertype='asyncio')")

    def _stop_oneway(self) -> None:
        if self._oneway_pool is not None:
            self._oneway_pool.shutdown(wait=False)


class SelectorDriver(BaseDriver):
    """Base of the selector-driven drivers. Subclasses implement ``_accept``, ``_ready``,
    ``events`` and ``_release``."""

    sock: socket.socket | None

    def __init__(self, daemon: Any) -> None:
        super().__init__(daemon)
        self.nodelay = self.config.SOCK_NODELAY
        self.selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)  # a full wake-up buffer already wakes the loop: never block a sender
        self.selector.register(self._wake_r, selectors.EVENT_READ, None)
        self.running = True
        self._looping: threading.Event | None = None
        self._loop_thread: threading.Thread | None = None
        self._cleaned = False
        self._next_sweep = 0.0

    def poll_once(self, timeout: float) -> None:
        """One pass: wait up to ``timeout`` for sockets, serve what is ready, do housekeeping."""
        if not self.running:
            return
        try:
            events = self.selector.select(timeout)
        except (OSError, ValueError):
            return  # closed under us during shutdown
        for key, mask in events:
            data = key.data
            if data is None:
                self._drain_wake()
            elif data == "listen":
                self._accept()
            else:
                self._ready(data, mask)
        now = time.monotonic()
        if now >= self._next_sweep:
            self._next_sweep = now + _SWEEP_INTERVAL
            self._housekeeping()
        self.daemon.periodic()

    def _housekeeping(self) -> None:
        """Timeouts that no socket enforces by itself (a few times a second at most)."""
        if self.config.IDLE_TIMEOUT:
            self._close_idle(time.monotonic() - self.config.IDLE_TIMEOUT)

    def _close_idle(self, before: float) -> None:
        """Close connections that sent nothing since ``before`` (IDLE_TIMEOUT); blocking
        streams time out on their own."""

    def _accept(self) -> None:
        raise NotImplementedError

    def _ready(self, data: Any, mask: int) -> None:
        """A registered socket other than the listener is ready (``data`` as registered; ``mask``
        the selector events)."""
        raise NotImplementedError

    def events(self, ready: list) -> None:
        raise NotImplementedError

    def _release(self) -> None:
        """Close what the subclass owns (connections, workers)."""

    def _keep_looping(self) -> bool:
        return True

    def loop(self, condition: Callable[[], bool]) -> None:
        """Serve until shut down or ``condition()`` is false; clean up when shut down."""
        poll = self.config.POLLTIMEOUT
        self._looping = threading.Event()
        self._loop_thread = threading.current_thread()
        try:
            while self.running and condition() and self._keep_looping():
                try:
                    self.poll_once(poll)
                except Exception:  # the loop serves everyone: never let one failure end it
                    log.exception("error in the server loop")
        finally:
            looping, self._looping = self._looping, None
            if not self.running:
                self._cleanup()
            looping.set()

    def _accept_socket(self) -> tuple[socket.socket, Any] | None:
        """Accept one client socket; on fd/memory exhaustion log and back off instead of failing."""
        assert self.sock is not None
        try:
            csock, addr = self.sock.accept()
        except BlockingIOError:
            return None
        except OSError as exc:
            if exc.errno in OUT_OF_RESOURCES:
                self.accept_backoff.failed(exc)
                time.sleep(ACCEPT_RETRY)
            return None
        self.accept_backoff.succeeded()
        csock.setblocking(True)
        if self.nodelay:
            net.set_nodelay(csock)
        return csock, addr

    def _drain_wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_r.recv(512)

    def unwatch(self, sock: Any) -> None:
        """Stop selecting on ``sock`` (quietly: it may be gone or closed already)."""
        try:
            self.selector.unregister(sock)
        except (KeyError, ValueError, OSError):
            pass

    def wake(self) -> None:
        """Make the loop's select return now (from any thread)."""
        with contextlib.suppress(OSError):
            self._wake_w.send(b"!")

    def shutdown(self) -> None:
        """Stop the loop; the loop's thread cleans up (or this one, if no loop runs)."""
        self.running = False
        with contextlib.suppress(OSError):
            self._wake_w.send(b"!")
        looping = self._looping
        if looping is not None:
            if threading.current_thread() is self._loop_thread:
                return  # the loop cleans up when it returns
            if looping.wait(timeout=10):
                return
        self._cleanup()

    def _cleanup(self) -> None:
        if self._cleaned:
            return
        self._cleaned = True
        self._release()
        self._stop_oneway()
        with contextlib.suppress(Exception):
            self.selector.close()
        if self.sock is not None:
            remove_listener(self.sock, self.location)
        self._wake_r.close()
        self._wake_w.close()


def remove_listener(sock: socket.socket, location: tuple) -> None:
    """Close a listening socket and remove its unix socket file, if it has one."""
    net.close_quietly(sock)
    path = location[2]
    if path and not path.startswith("\0"):
        with contextlib.suppress(OSError):
            os.remove(path)


def stall_timeout(cfg: Any) -> float | None:
    """How long a peer may stay silent in the middle of a message (STALL_TIMEOUT, or a lower COMMTIMEOUT)."""
    waits = [t for t in (cfg.STALL_TIMEOUT, cfg.COMMTIMEOUT) if t]
    return min(waits) if waits else None
