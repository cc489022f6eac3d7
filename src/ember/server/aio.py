"""asyncio server: one event loop serves every connection (``Daemon(servertype="asyncio")``).

Each call runs in its own task, so one connection can have many calls in flight (Ember's
``AsyncProxy`` multiplexes them by sequence number; the reply of a quick call does not wait
for a slow one). ``async def`` methods are awaited on the loop; plain methods run in a
worker thread pool (``THREADPOOL_SIZE`` threads) so they never block it. The rules of the
protocol stay in ``Daemon``: this module only moves bytes and schedules work.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import ssl
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .. import context, net
from ..errors import DaemonError, ProtocolError
from ..protocol import F_ONEWAY, T_INVOKE, Message
from .connection import Connection

__all__ = ["AsyncioServer", "new_event_loop"]

log = logging.getLogger("ember.server.aio")
_MANUAL_TLS = hasattr(asyncio.StreamWriter, "start_tls")  # Python 3.11+


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A new event loop: uvloop's when it is installed, asyncio's otherwise."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class AioConnection(Connection):
    """A connection served by the event loop: writes go to the asyncio transport."""

    def __init__(self, writer: asyncio.StreamWriter, addr: Any, cfg: Any) -> None:
        super().__init__(writer.get_extra_info("socket"), addr, cfg.MAX_MESSAGE_SIZE, cfg.MAX_ANNOTATIONS_SIZE)
        self.writer = writer
        self.loop = asyncio.get_running_loop()
        self.tls = writer.get_extra_info("sslcontext") is not None
        self.tls_pending = False
        self.peer_certificate = writer.get_extra_info("peercert") or None
        self.tasks: set[asyncio.Task] = set()

    def send(self, frame: bytes) -> None:
        if self.closed:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            _write(self.writer, frame)
        else:
            self.loop.call_soon_threadsafe(_write, self.writer, frame)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(Exception):
            if asyncio.get_running_loop() is self.loop:
                self.writer.close()
                return
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self.writer.close)


class AsyncioServer:
    """Serves a listening socket from an asyncio event loop."""

    description = "asyncio (one event loop, worker threads for plain methods)"

    def __init__(self, daemon: Any, listener: Any) -> None:
        self.daemon = daemon
        self.sock = listener
        self.location = net.bound_location(listener)
        self.connections: set[AioConnection] = set()
        self.running = True
        self.event_loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._done = threading.Event()
        self._serving = False
        self.executor = ThreadPoolExecutor(max_workers=max(4, daemon.config.THREADPOOL_SIZE),
                                           thread_name_prefix="ember-aio-worker")

    @property
    def sockets(self) -> list:
        return [self.sock]

    def poll_once(self, timeout: float) -> None:
        raise DaemonError("the asyncio server runs its own event loop: use request_loop(), start() "
                          "or 'await daemon.serve_async()'")

    events = poll_once

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
        self.event_loop = asyncio.get_running_loop()
        self.daemon._aio_loop = self.event_loop
        self.daemon._aio_thread = threading.current_thread()
        self._stop = asyncio.Event()
        server = None
        try:
            if not self.running:
                return
            self.sock.setblocking(False)
            # TLS handshakes are done per connection (start_tls, Python 3.11+) so failures get logged
            ssl_at_accept = self.daemon.ssl_context if not _MANUAL_TLS else None
            server = await asyncio.start_server(self._client, sock=self.sock, ssl=ssl_at_accept, limit=1 << 20)
            poll = self.daemon.config.POLLTIMEOUT
            while self.running and condition():
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), poll)
                self.daemon.periodic()
        finally:
            self.running = False
            if server is not None:
                server.close()
            for conn in list(self.connections):
                for task in list(conn.tasks):
                    task.cancel()
                conn.close()
            if server is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(server.wait_closed(), 5)
            self._cleanup()
            self._done.set()

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
        if threading.current_thread() is not self.daemon._aio_thread:
            self._done.wait(10)

    def _cleanup(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
        net.close_quietly(self.sock)
        path = self.location[2]
        if path and not path.startswith("\0"):
            with contextlib.suppress(OSError):
                os.remove(path)

    # ---- one connection -------------------------------------------------------------------

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        daemon = self.daemon
        addr = writer.get_extra_info("peername")
        sock = writer.get_extra_info("socket")
        if sock is not None and daemon.config.SOCK_NODELAY:
            net.set_nodelay(sock)
        if daemon.ssl_context is not None and _MANUAL_TLS:
            try:
                await writer.start_tls(daemon.ssl_context, ssl_handshake_timeout=daemon.config.COMMTIMEOUT or 10.0)
            except (OSError, asyncio.TimeoutError) as exc:
                from ..tls import describe_failure

                if isinstance(exc, (ConnectionError, ssl.SSLEOFError)) or not str(exc):
                    # closed before saying anything (a port probe): not worth a warning
                    log.debug("connection from %s closed before the TLS handshake", addr)
                else:
                    log.warning("TLS handshake with %s failed: %s", addr, describe_failure(exc))
                writer.close()
                return
        conn = AioConnection(writer, addr, daemon.config)
        daemon.connection_opened(conn)
        self.connections.add(conn)
        decoder = conn.decoder
        try:
            while not conn.closed:
                try:
                    data = await reader.read(65536)
                except (ConnectionError, OSError) as exc:
                    log.debug("connection from %s ended: %s", addr, exc)
                    break
                if not data:
                    break
                decoder.feed(data)
                while (msg := decoder.next_message()) is not None:
                    if msg.type == T_INVOKE:
                        task = asyncio.ensure_future(self._invoke(conn, msg))
                        conn.tasks.add(task)
                        task.add_done_callback(conn.tasks.discard)
                        continue
                    reply = daemon.dispatch(conn, msg)
                    if reply is not None:
                        _write(writer, daemon.encode(reply))
                    if conn.must_close:
                        await _drain(writer)
                        return
                await _drain(writer)
        except ProtocolError as exc:
            reply = daemon.connection_failed(conn, exc)
            if reply is not None:
                with contextlib.suppress(Exception):
                    _write(writer, daemon.encode(reply))
                    await _drain(writer)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("unexpected error serving %s", addr)
        finally:
            for task in list(conn.tasks):
                task.cancel()
            self.connections.discard(conn)
            conn.close()
            daemon.connection_closed(conn)

    async def _invoke(self, conn: AioConnection, msg: Message) -> None:
        daemon = self.daemon
        ctx = context.CallContext()
        prepared = daemon._prepare(conn, msg, ctx)
        if type(prepared) is not tuple:
            reply = prepared
        else:
            reply = await self._call(conn, msg, prepared)
        if reply is not None and not conn.closed:
            _write(conn.writer, daemon.encode(reply))
            await _drain(conn.writer)
        if conn.must_close:
            conn.close()

    async def _call(self, conn: AioConnection, msg: Message, prepared: tuple) -> Message | None:
        daemon = self.daemon
        ser, ctx, obj, method, func, args, kwargs = prepared
        oneway = msg.flags & F_ONEWAY
        loop = asyncio.get_running_loop()
        if func is None:
            def batch() -> Message | None:
                context.set_context(ctx)
                return daemon._batch(conn, msg, ser, obj, args, oneway)

            return await loop.run_in_executor(self.executor, batch)
        if inspect.iscoroutinefunction(func):
            context.set_context(ctx)  # this task's own context
            if oneway:
                task = asyncio.ensure_future(self._oneway(func, args, kwargs, conn, method))
                conn.tasks.add(task)
                task.add_done_callback(conn.tasks.discard)
                return None
            try:
                result = await (func(*args, **kwargs) if kwargs else func(*args))
            except Exception as exc:
                return daemon._call_failed(conn, msg, ser, obj, method, exc)
            return daemon._complete(conn, msg, ser, ctx, result)
        if oneway:
            daemon._run_oneway(func, args, kwargs, method, conn, ctx)
            return None

        def run() -> Message:
            context.set_context(ctx)
            try:
                result = func(*args, **kwargs) if kwargs else func(*args)
                if inspect.iscoroutine(result):
                    result = daemon.await_coroutine(result)
            except Exception as exc:
                return daemon._call_failed(conn, msg, ser, obj, method, exc)
            return daemon._complete(conn, msg, ser, ctx, result)

        return await loop.run_in_executor(self.executor, run)

    async def _oneway(self, func: Any, args: Any, kwargs: Any, conn: AioConnection, method: str) -> None:
        try:
            await (func(*args, **kwargs) if kwargs else func(*args))
        except Exception as exc:
            self.daemon._report_error(conn, method, exc)


async def _drain(writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        await writer.drain()


def _write(writer: asyncio.StreamWriter, frame: Any) -> None:
    """Write a frame (bytes, or [header, payload] for a large payload)."""
    if type(frame) is list:
        writer.writelines(frame)
    else:
        writer.write(frame)
