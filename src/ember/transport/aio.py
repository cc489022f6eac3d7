"""asyncio streams with the same surface as :class:`.sync.SocketStream`.

:func:`open_stream` connects (TCP or unix socket, optionally TLS) and maps failures
through :mod:`.errors` as the blocking side does; :class:`AsyncStream` receives whole
messages through a decoder and writes whole frames.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from typing import Any

from ..errors import ConnectionClosedError
from ..uri import URI
from .errors import connect_error, io_error
from .sync import family_for, set_nodelay

__all__ = ["AsyncStream", "open_stream", "new_event_loop"]

_LIMIT = 1 << 20


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A new event loop: uvloop's when it is installed, asyncio's otherwise."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class AsyncStream:
    """One connection on asyncio streams."""

    __slots__ = ("reader", "writer", "peer", "tls", "peer_certificate", "closed", "loop")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: Any = None) -> None:
        self.reader = reader
        self.writer = writer
        self.peer = peer if peer is not None else writer.get_extra_info("peername")
        self.tls = writer.get_extra_info("sslcontext") is not None
        self.peer_certificate: dict | None = writer.get_extra_info("peercert") or None
        self.closed = False
        self.loop = asyncio.get_running_loop()

    @property
    def sock(self) -> Any:
        return self.writer.get_extra_info("socket")

    async def read(self, size: int = _LIMIT) -> bytes:
        """The next bytes (b"" when the peer closed)."""
        try:
            return await self.reader.read(size)
        except OSError as exc:
            raise io_error(exc) from None

    async def recv_message(self, decoder: Any) -> Any:
        """The next whole message from ``decoder`` (None: closed cleanly between messages)."""
        msg = decoder.next_message()
        while msg is None:
            data = await self.read()
            if not data:
                if decoder.buffered:
                    raise ConnectionClosedError("connection closed in the middle of a message")
                return None
            decoder.feed(data)
            msg = decoder.next_message()
        return msg

    async def peer_alert(self) -> str:
        """After a TLS connection broke during the handshake: the peer's alert, if one arrived."""
        try:
            await asyncio.wait_for(self.reader.read(1), 0.5)
        except (OSError, asyncio.TimeoutError) as exc:
            return str(exc)
        return ""

    def write(self, frame: Any) -> None:
        """Queue one whole frame (bytes, or a list of parts: header, payload or buffers)."""
        if type(frame) is list:
            # part by part: writelines() would join them first, one more copy of a large payload
            write = self.writer.write
            for part in frame:
                write(part)
        else:
            self.writer.write(frame)

    async def drain(self, what: object = "connection") -> None:
        """Wait until the written frames are handed to the OS."""
        try:
            await self.writer.drain()
        except OSError as exc:
            raise ConnectionClosedError(f"{what} lost while sending: {exc}") from None

    async def send(self, frame: Any, what: object = "connection") -> None:
        self.write(frame)
        await self.drain(what)

    def close(self) -> None:
        """Close the stream (idempotent; safe from any thread)."""
        if self.closed:
            return
        self.closed = True
        if _running_loop() is self.loop:
            self.writer.close()
        else:
            with contextlib.suppress(RuntimeError):  # the loop is gone: so is the transport
                self.loop.call_soon_threadsafe(self.writer.close)

    def abort(self) -> None:
        """Close at once, without TLS's close_notify exchange (on the loop's thread).

        A graceful TLS close needs the event loop to run until the peer answers; a server
        shutting its loop down cannot wait for that, and a transport left half-closed keeps
        the task reading from it pending forever.
        """
        self.closed = True
        self.writer.transport.abort()

    def write_threadsafe(self, frame: Any) -> None:
        """:meth:`write` from any thread (a worker thread's reply goes through the loop)."""
        if self.closed:
            return
        if _running_loop() is self.loop:
            self.write(frame)
        else:
            self.loop.call_soon_threadsafe(self.write, frame)

    async def aclose(self) -> None:
        self.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


async def open_stream(uri: URI, timeout: float | None, tls: ssl.SSLContext | None = None,
                      nodelay: bool = True, sock: Any = None) -> AsyncStream:
    """Connect to the location of a ``PYRO:`` URI (TCP or unix socket, TLS when ``tls``),
    or wrap ``sock``, a socket that is already connected."""
    try:
        if sock is not None:
            coro = asyncio.open_connection(sock=sock, limit=_LIMIT)
        elif uri.sockname is not None:
            coro = asyncio.open_unix_connection(uri.sockname, ssl=tls, server_hostname="" if tls else None,
                                                limit=_LIMIT)
        else:
            host = uri.host or ""
            coro = asyncio.open_connection(host, uri.port, ssl=tls, family=family_for(host),
                                           server_hostname=host if tls is not None and tls.check_hostname else None,
                                           limit=_LIMIT)
        reader, writer = await asyncio.wait_for(coro, timeout)
    except (OSError, asyncio.TimeoutError) as exc:
        raise connect_error(exc, uri.location) from None
    tcp = writer.get_extra_info("socket")
    if tcp is not None and nodelay:
        set_nodelay(tcp)
    return AsyncStream(reader, writer)
