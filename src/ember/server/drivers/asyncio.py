"""asyncio driver: one event loop serves every connection (``Daemon(servertype="asyncio")``).

Each call runs in its own task, so one connection can have many calls in flight (Ember's
``AsyncProxy`` multiplexes them by sequence number; the reply of a quick call does not wait
for a slow one). ``async def`` methods are awaited on the loop; plain methods run in a
worker thread pool (``THREADPOOL_SIZE`` threads) so they never block it. Every rule of calls
stays in the dispatcher (``Call.run_async``): this module only moves bytes and schedules work.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import ssl
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ... import context
from ...client.proxy import loop_serves, loop_stopped
from ...errors import DaemonError
from ...protocol import F_ONEWAY, T_INVOKE, Message
from ...transport import sync as net
from ...transport.aio import AsyncStream, new_event_loop
from ...transport.errors import tls_error
from ..dispatch import Call
from ..guards import contained
from ..session_state import Connection
from .base import ACCEPT_RETRY, OUT_OF_RESOURCES, BaseDriver, remove_listener, stall_timeout

__all__ = ["AsyncioServer", "new_event_loop"]

log = logging.getLogger("ember.server.aio")
_MANUAL_TLS = hasattr(asyncio.StreamWriter, "start_tls")  # Python 3.11+


class AsyncioServer(BaseDriver):
    """Serves a listening socket from an asyncio event loop."""

    description = "asyncio (one event loop, worker threads for plain methods)"
    pipelined = True

    def __init__(self, daemon: Any, listener: Any) -> None:
        super().__init__(daemon)
        self.sock = listener
        self.location = net.bound_location(listener)
        self.connections: set[Connection] = set()
        self.running = True
        self.event_loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None
        self._stop: asyncio.Event | None = None
        self._done = threading.Event()
        self._serving = False
        self._background: set[asyncio.Task] = set()
        self._handlers: set[asyncio.Task] = set()  # one per accepted connection (asyncio's, running _client)
        self.executor = ThreadPoolExecutor(max_workers=max(4, self.config.THREADPOOL_SIZE),
                                           thread_name_prefix="ember-aio-worker")

    @property
    def sockets(self) -> list:
        return [self.sock]

    def poll_once(self, timeout: float) -> None:
        raise DaemonError("the asyncio server runs its own event loop: use request_loop(), start() "
                          "or 'await daemon.serve_async()'")

    events = poll_once

    # ---- work the dispatcher hands over -------------------------------------------------------

    def await_coroutine(self, coro: Any) -> Any:
        """Run a coroutine on the daemon's loop from a worker thread."""
        loop = self.event_loop
        if loop is not None and loop.is_running():
            if threading.current_thread() is self._loop_thread:
                coro.close()
                raise DaemonError("cannot wait for a coroutine on the daemon's own event loop thread")
            return asyncio.run_coroutine_threadsafe(coro, loop).result()
        return asyncio.run(coro)

    def spawn(self, coro: Any, conn: Connection | None = None) -> None:
        """Run a coroutine in the background on the loop (oneway ``async def`` calls); it counts
        against ``conn``'s MAX_PENDING_CALLS until it ends."""
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        if conn is not None:
            self.pending_started(conn)
            task.add_done_callback(lambda _t: self.pending_finished(conn))

    def resume(self, conn: Connection) -> None:
        event = conn.slot_freed  # created before the connection was first paused
        if event is None:
            return
        if threading.current_thread() is self._loop_thread:
            event.set()
        else:
            loop = self.event_loop
            if loop is not None:
                with contextlib.suppress(RuntimeError):  # the loop is closed: nothing waits any more
                    loop.call_soon_threadsafe(event.set)

    async def _wait_for_slot(self, conn: Connection) -> None:
        """Back-pressure: read nothing more from ``conn`` while it has MAX_PENDING_CALLS calls and
        oneway work unfinished."""
        event = conn.slot_freed
        if event is None:
            event = conn.slot_freed = asyncio.Event()
        while self.pause_if_over_limit(conn, len(conn.tasks)) and not conn.stream.closed:
            event.clear()
            await event.wait()
        conn.paused = False

    def send_now(self, conn: Connection, frame: Any) -> None:
        conn.stream.write_threadsafe(frame)

    async def _in_thread(self, work: Callable[[], Any]) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.executor, work)

    # ---- running ------------------------------------------------------------------------

    def loop(self, condition: Any) -> None:
        """Run a new event loop in this thread until shut down (``Daemon.request_loop``)."""
        loop = new_event_loop()
        try:
            loop.run_until_complete(self.serve(condition))
        finally:
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def serve(self, condition: Any = lambda: True) -> None:
        """Serve on the running event loop until shut down or ``condition()`` is false."""
        if self._serving:
            raise DaemonError("this daemon is already serving")
        self._serving = True
        self.event_loop = loop = asyncio.get_running_loop()
        self._loop_thread = threading.current_thread()
        self._stop = asyncio.Event()
        server: asyncio.Future | None = None
        loop_serves(loop, self.location)  # blocking proxies called on this loop to this daemon are refused
        try:
            if not self.running:
                return
            self.sock.setblocking(False)
            # TLS handshakes are done per connection (start_tls, Python 3.11+) so failures get logged
            ssl_at_accept = self.daemon.ssl_context if not _MANUAL_TLS else None
            server = asyncio.ensure_future(self._accept_loop(ssl_at_accept))
            poll = self.config.POLLTIMEOUT
            while self.running and condition():
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), poll)
                self._housekeeping()
                self.daemon.periodic()
        finally:
            loop_stopped(loop, self.location)
            self.running = False
            if server is not None:
                server.cancel()
                with contextlib.suppress(BaseException):
                    await server
            await self._stop_tasks()
            self._cleanup()
            self._done.set()

    async def _accept_loop(self, ssl_at_accept: Any) -> None:
        """Accept connections until cancelled. Ember's own loop rather than asyncio's
        start_server: out of file descriptors (``ulimit -n``) asyncio logs a traceback for
        every attempt, thousands a second; here one line says so (AcceptBackoff), new clients
        wait in the listen backlog, and the connections already open are served."""
        loop = asyncio.get_running_loop()
        backoff = self.accept_backoff
        while self.running:
            try:
                csock, _addr = await loop.sock_accept(self.sock)
            except OSError as exc:
                if exc.errno in OUT_OF_RESOURCES:
                    backoff.failed(exc)
                    await asyncio.sleep(ACCEPT_RETRY)
                elif self.running:
                    log.debug("accept failed: %s", exc)  # e.g. the client gave up already (ECONNABORTED)
                continue
            backoff.succeeded()
            reader = asyncio.StreamReader(limit=1 << 20, loop=loop)
            protocol = asyncio.StreamReaderProtocol(reader, self._client, loop=loop)
            tls: dict[str, Any] = {}
            if ssl_at_accept is not None:  # Python 3.10: the TLS handshake is asyncio's
                tls = {"ssl": ssl_at_accept, "ssl_handshake_timeout": self.config.HANDSHAKE_TIMEOUT}
            connecting = asyncio.ensure_future(loop.connect_accepted_socket(_factory(protocol), csock, **tls))
            self._background.add(connecting)
            connecting.add_done_callback(self._connected)

    def _connected(self, task: asyncio.Future) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("could not set up a connection: %s", task.exception())

    def _housekeeping(self) -> None:
        """Abort connections that did not complete their CONNECT within HANDSHAKE_TIMEOUT, or
        stalled in the middle of a message for STALL_TIMEOUT (checked every POLLTIMEOUT)."""
        now = time.monotonic()
        cfg = self.config
        stall = stall_timeout(cfg)
        for conn in list(self.connections):
            if not conn.session.established and conn.opened_at < now - cfg.HANDSHAKE_TIMEOUT:
                reason = f"no handshake within {cfg.HANDSHAKE_TIMEOUT} s (HANDSHAKE_TIMEOUT)"
            elif stall and conn.session.decoder.buffered and conn.last_active < now - stall:
                reason = f"silent for {stall} s in the middle of a message (STALL_TIMEOUT)"
            else:
                continue
            log.info("closing connection from %s: %s", conn.addr, reason)
            with contextlib.suppress(Exception):
                conn.stream.abort()

    async def _stop_tasks(self) -> None:
        """Cancel every task this server started and wait for them to end, so none is left
        pending when the loop closes ("Task was destroyed but it is pending"). Connections
        are aborted, not closed gracefully: a TLS close waits for the peer's close_notify,
        which a loop that is about to stop never receives."""
        tasks = set(self._background) | self._handlers
        for conn in list(self.connections):
            tasks |= conn.tasks
            with contextlib.suppress(Exception):
                conn.stream.abort()
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)

    def shutdown(self) -> None:
        """Stop serving (from any thread); waits for the loop to finish unless called on it."""
        self.running = False
        loop, stop = self.event_loop, self._stop
        if loop is None or stop is None or loop.is_closed():
            if not self._serving:
                self._cleanup()
            return
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(stop.set)
        if threading.current_thread() is not self._loop_thread:
            self._done.wait(10)

    def _cleanup(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
        self._stop_oneway()
        remove_listener(self.sock, self.location)

    # ---- one connection -------------------------------------------------------------------

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is None or not self.running:
            writer.transport.abort()
            return
        self._handlers.add(task)
        try:
            await self._serve_client(reader, writer)
        except asyncio.CancelledError:
            if self.running:
                raise
            # cancelled by shutdown (_stop_tasks): end normally, as asyncio's start_server
            # callback (3.11) reads task.exception(), which raises for a cancelled task
        finally:
            self._handlers.discard(task)

    async def _serve_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        addr = writer.get_extra_info("peername")
        sock = writer.get_extra_info("socket")
        if sock is not None and self.config.SOCK_NODELAY:
            net.set_nodelay(sock)
        tls = self.daemon.ssl_context
        if tls is not None and _MANUAL_TLS:
            try:
                await writer.start_tls(tls, ssl_handshake_timeout=self.config.HANDSHAKE_TIMEOUT)  # type: ignore[attr-defined]
            except (OSError, asyncio.TimeoutError) as exc:
                if isinstance(exc, (ConnectionError, ssl.SSLEOFError)) or not str(exc):
                    # closed before saying anything (a port probe): not worth a warning
                    log.debug("connection from %s closed before the TLS handshake", addr)
                else:
                    log.warning("%s", tls_error(exc, addr))
                writer.close()
                return
        stream = AsyncStream(reader, writer, addr)
        conn = self.open_connection(stream, addr)
        self.connections.add(conn)
        session = conn.session
        idle = self.config.IDLE_TIMEOUT
        try:
            while not stream.closed:
                # the rest of a large payload: take what the reader has in bigger reads
                size = min(max(session.decoder.bytes_needed(), 65536), 1 << 20)
                if idle:
                    try:
                        data = await asyncio.wait_for(stream.read(size), idle)
                    except asyncio.TimeoutError:
                        log.debug("closing connection from %s: idle longer than IDLE_TIMEOUT", addr)
                        break
                else:
                    data = await stream.read(size)
                if not data:
                    break
                conn.last_active = time.monotonic()
                session.feed(data)
                while (msg := session.next_message()) is not None:
                    if msg.type == T_INVOKE:
                        task = asyncio.ensure_future(self._invoke(conn, msg))
                        conn.tasks.add(task)
                        if msg.flags & F_ONEWAY:
                            conn.oneway_tasks.add(task)
                        task.add_done_callback(functools.partial(self._call_done, conn))
                        if len(conn.tasks) + conn.pending >= self.max_pending:
                            await self._wait_for_slot(conn)
                        continue
                    reply = self.dispatcher.handle(conn, msg)
                    if reply is not None:
                        stream.write(self.daemon.encode(reply, session))
                    if session.must_close:
                        await _drain(stream)
                        return
                await _drain(stream)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.failed(conn, exc)
            await _drain(stream)
        finally:
            for task in list(conn.tasks):
                if task not in conn.oneway_tasks:  # an accepted oneway call still runs: never dropped
                    task.cancel()
            self.connections.discard(conn)
            self.close_connection(conn)

    def _call_done(self, conn: Connection, task: asyncio.Task) -> None:
        conn.tasks.discard(task)
        conn.oneway_tasks.discard(task)
        # a paused reader is woken when a slot is free, not at every call that ends: a oneway call's
        # task ends as its work starts (it still counts, as pending work). Not later either: the
        # calls still running may all be waiting for something this connection has not read yet
        if conn.paused and conn.slot_freed is not None and len(conn.tasks) + conn.pending < self.max_pending:
            conn.slot_freed.set()

    async def _invoke(self, conn: Connection, msg: Message) -> None:
        try:
            call = self.dispatcher.prepare(conn, msg, context.CallContext())
            reply = await call.run_async(self._in_thread) if type(call) is Call else call
        except Exception as exc:  # the caller still gets an answer, never silence
            reply = self.dispatcher.call_crashed(conn, msg, exc)
        except BaseException as exc:  # SystemExit & co. end this call, not the event loop
            reply = self.dispatcher.call_crashed(conn, msg, contained(exc))
        stream = conn.stream
        if reply is not None and not stream.closed:
            stream.write(self.daemon.encode(reply, conn.session))
            await _drain(stream)
        if conn.session.must_close:
            conn.close()


def _factory(protocol: asyncio.Protocol) -> Callable[[], asyncio.Protocol]:
    return lambda: protocol


async def _drain(stream: AsyncStream) -> None:
    with contextlib.suppress(Exception):
        await stream.drain()
