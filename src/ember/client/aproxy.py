"""``AsyncProxy``: the asyncio stand-in for a remote object.

``await proxy.method(...)`` performs a call. One connection carries every call of a proxy:
with an Ember asyncio daemon (both sides announce it in the handshake) many calls are in
flight at once and their replies are matched by sequence number, so a slow call does not
hold up a quick one; with any other daemon (Pyro5's, Ember's thread-pool or multiplex
server), which answers in order, calls are sent one at a time. Cancelling an awaiting call
is safe: its reply, if it still comes, is dropped, and the other calls are unaffected.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from typing import Any

from .. import net, serializers
from ..config import config
from ..errors import (
    CommunicationError,
    ConnectionClosedError,
    PyroError,
    TimeoutError,
)
from ..protocol import F_BATCH, F_ONEWAY, T_INVOKE, Decoder, Message, encode
from ..uri import URI
from ._wire import (
    HANDSHAKE_REPLY_TYPES,
    RESULT_TYPES,
    call_payload,
    call_result,
    connect_message,
    handshake_result,
    parse_metadata,
)
from .proxy import _RemoteMethod
from .resolve import aresolve

__all__ = ["AsyncProxy", "AsyncBatchProxy", "AsyncRemoteIterator"]

_DAEMON = "Pyro.Daemon"


class AsyncProxy:
    """An asyncio proxy. Use it from one event loop.

    >>> async with ember.AsyncProxy("PYRONAME:calc") as calc:
    ...     await calc.add(1, 2)
    3

    Exposed attributes: ``await proxy._get("name")`` and ``await proxy._set("name", value)``.
    Local controls as on :class:`~ember.Proxy`: ``_timeout`` (seconds; None = config
    ``COMMTIMEOUT``), ``_serializer``, ``_oneway``, ``_handshake``, ``_release()``,
    ``_bind()``.
    """

    def __init__(self, uri: str | URI, ssl_context: ssl.SSLContext | None = None) -> None:
        self._pyroUri = URI(uri)
        self._bound_uri: URI | None = None
        self._ssl_context = ssl_context
        self._timeout: float | None = None
        self._serializer: str = config.SERIALIZER
        self._oneway: set[str] = set()
        self._handshake: Any = "hello"
        self._handshake_response: Any = None
        self._methods: frozenset[str] = frozenset()
        self._attrs: frozenset[str] = frozenset()
        self._oneway_server: frozenset[str] = frozenset()
        self._metadata_known = False
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task | None = None
        self._pending: dict[int, asyncio.Future] = {}
        self._seq = 0
        self._multiplex = False
        self._ser: Any = None
        self._ser_id = 0
        self._connect_lock: asyncio.Lock | None = None
        self._call_lock: asyncio.Lock | None = None

    # ---- attribute protocol ------------------------------------------------------------

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")
        return _RemoteMethod(self, name)

    def __repr__(self) -> str:
        state = "connected" if self._writer is not None else "not connected"
        return f"<ember.AsyncProxy {self._pyroUri} {state}>"

    async def __aenter__(self) -> AsyncProxy:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._release()

    def __del__(self) -> None:
        writer = getattr(self, "_writer", None)
        if writer is not None:
            with contextlib.suppress(Exception):
                writer.close()

    async def _get(self, name: str) -> Any:
        """The value of an exposed attribute (property) of the remote object."""
        await self._bind()
        if name not in self._attrs:
            raise AttributeError(f"remote object '{self._pyroUri}' has no exposed attribute '{name}'")
        return await self._invoke("__getattr__", (name,), {})

    async def _set(self, name: str, value: Any) -> None:
        """Set an exposed attribute (property) of the remote object."""
        await self._bind()
        if name not in self._attrs:
            raise AttributeError(f"remote object '{self._pyroUri}' has no exposed attribute '{name}'")
        await self._invoke("__setattr__", (name, value), {})

    async def _dir(self) -> list[str]:
        """The remote object's exposed methods and attributes."""
        await self._bind()
        return sorted(self._methods | self._attrs)

    # ---- connection management ---------------------------------------------------------

    async def _bind(self) -> None:
        """Connect now (and fetch the metadata) instead of on first use."""
        if self._writer is not None:
            return
        if self._connect_lock is None:
            self._connect_lock = asyncio.Lock()
        async with self._connect_lock:
            if self._writer is None:
                await self._connect()

    async def _release(self) -> None:
        """Close the connection; pending calls fail with ConnectionClosedError; the next call reconnects."""
        writer, self._writer = self._writer, None
        task, self._reader_task = self._reader_task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        self._fail_pending(ConnectionClosedError(f"connection to {self._pyroUri} was released"))
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def _effective_timeout(self) -> float | None:
        t = self._timeout if self._timeout is not None else config.COMMTIMEOUT
        return t or None

    async def _resolve(self) -> URI:
        uri = self._pyroUri
        if uri.protocol == "PYRO":
            return uri
        return await aresolve(uri, AsyncProxy)

    async def _open(self, uri: URI) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bool]:
        tls = self._ssl_context
        if tls is None and config.SSL:
            from ..tls import client_context

            tls = client_context(config)
        try:
            if uri.sockname is not None:
                coro = asyncio.open_unix_connection(uri.sockname, ssl=tls, server_hostname="" if tls else None,
                                                    limit=1 << 20)
            else:
                host = uri.host
                coro = asyncio.open_connection(host, uri.port, ssl=tls, family=net._family_for(host or ""),
                                               server_hostname=host if tls is not None and tls.check_hostname
                                               else None, limit=1 << 20)
            reader, writer = await asyncio.wait_for(coro, self._effective_timeout())
        except asyncio.TimeoutError:
            raise TimeoutError(f"connecting to {uri.location} timed out") from None
        except ssl.SSLError as exc:
            from ..tls import describe_failure

            raise CommunicationError(f"TLS handshake with {uri.location} failed: {describe_failure(exc)}") from None
        except OSError as exc:
            raise CommunicationError(f"cannot connect to {uri.location}: {exc.strerror or exc}") from None
        sock = writer.get_extra_info("socket")
        if sock is not None and config.SOCK_NODELAY:
            net.set_nodelay(sock)
        return reader, writer, tls is not None

    async def _connect(self) -> None:
        uri = await self._resolve()
        ser = serializers.get(self._serializer)
        reader, writer, tls = await self._open(uri)
        decoder = Decoder(config.MAX_MESSAGE_SIZE, config.MAX_ANNOTATIONS_SIZE, HANDSHAKE_REPLY_TYPES)
        try:
            writer.write(encode(connect_message(ser, self._handshake, uri.object, 0, multiplex=True),
                                config.COMPRESSION, config.MAX_MESSAGE_SIZE))
            reply = await asyncio.wait_for(_read_message(reader, decoder), self._effective_timeout())
            if reply is None:
                from .proxy import closed_hint

                raise ConnectionClosedError(f"connection to {uri.location} closed during the handshake"
                                            f"{closed_hint(tls)}")
            answer = handshake_result(reply, uri.location, ser.serializer_id)
            self._methods, self._attrs, self._oneway_server = parse_metadata(answer.meta, self._pyroUri)
        except asyncio.TimeoutError:
            writer.close()
            raise TimeoutError(f"handshake with {uri.location} timed out") from None
        except OSError as exc:
            writer.close()
            raise ConnectionClosedError(f"connection to {uri.location} lost during the handshake: "
                                        f"{exc.strerror or exc}") from None
        except BaseException:
            writer.close()
            raise
        self._metadata_known = True
        self._bound_uri = uri
        self._ser = answer.serializer
        self._ser_id = ser.serializer_id
        self._multiplex = answer.multiplex
        self._handshake_response = answer.response
        self._validate_handshake_response(answer.response)
        decoder.allowed_types = RESULT_TYPES
        self._writer = writer
        self._reader_task = asyncio.ensure_future(self._read_replies(reader, decoder, writer))

    def _validate_handshake_response(self, data: Any) -> None:
        """Hook: inspect the daemon's handshake answer; raise to refuse the connection."""

    async def _read_replies(self, reader: asyncio.StreamReader, decoder: Decoder,
                            writer: asyncio.StreamWriter) -> None:
        """Hand every reply to the call waiting for its sequence number; fail them all when the line dies."""
        error: Exception = ConnectionClosedError(f"connection to {self._pyroUri} closed by the server")
        try:
            while True:
                data = await reader.read(1 << 20)
                if not data:
                    break
                decoder.feed(data)
                while (msg := decoder.next_message()) is not None:
                    future = self._pending.pop(msg.seq, None)
                    if future is not None and not future.done():
                        future.set_result(msg)
        except asyncio.CancelledError:
            return
        except PyroError as exc:
            error = exc
        except OSError as exc:
            error = ConnectionClosedError(f"connection to {self._pyroUri} lost: {exc.strerror or exc}")
        if self._writer is writer:
            self._writer = None
            self._reader_task = None
            writer.close()
        self._fail_pending(error)

    def _fail_pending(self, error: Exception) -> None:
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(error)

    # ---- calls -------------------------------------------------------------------------

    async def _call(self, method: str, args: Any, kwargs: dict | None) -> Any:
        if not self._metadata_known or self._writer is None:
            await self._bind()
        if method not in self._methods:
            if method in self._attrs:
                raise AttributeError(f"'{method}' is an attribute of remote object '{self._pyroUri}': "
                                     f"use await proxy._get({method!r})")
            raise AttributeError(f"remote object '{self._pyroUri}' has no exposed method '{method}'")
        return await self._invoke(method, args, kwargs)

    _call_remote = _call  # what a _RemoteMethod calls

    async def _invoke(self, method: str, args: Any, kwargs: dict | None, flags: int = 0,
                      object_id: str | None = None) -> Any:
        if method in self._oneway_server or method in self._oneway:
            flags |= F_ONEWAY
        if self._writer is None:
            await self._bind()
        if object_id is None:
            object_id = (self._bound_uri or self._pyroUri).object
        if self._multiplex or flags & F_ONEWAY:
            return await self._roundtrip(object_id, method, args, kwargs, flags)
        if self._call_lock is None:
            self._call_lock = asyncio.Lock()
        async with self._call_lock:  # a daemon that answers in order: one call at a time
            return await self._roundtrip(object_id, method, args, kwargs, flags)

    def _next_seq(self) -> int:
        seq = self._seq
        while True:
            seq = (seq + 1) & 0xFFFF
            if seq not in self._pending:
                self._seq = seq
                return seq

    async def _roundtrip(self, object_id: str, method: str, args: Any, kwargs: dict | None, flags: int) -> Any:
        writer = self._writer
        if writer is None:
            await self._bind()
            writer = self._writer
            assert writer is not None
        from .. import context

        ctx = context.peek()
        ann, corr = (ctx.annotations, ctx.correlation_id) if ctx is not None else (None, None)
        ser = self._ser
        seq = self._next_seq()
        data, ann, extra = call_payload(ser, object_id, method, args, kwargs, ann, self._ser_id)
        frame = encode(Message(T_INVOKE, self._ser_id, flags | extra, seq, data, ann, corr),
                       config.COMPRESSION, config.MAX_MESSAGE_SIZE, parts=True)
        write = writer.writelines if type(frame) is list else writer.write
        if flags & F_ONEWAY:
            write(frame)
            await _drain(writer, self._pyroUri)
            return None
        future = asyncio.get_running_loop().create_future()
        self._pending[seq] = future
        try:
            write(frame)
            await _drain(writer, self._pyroUri)
            reply = await asyncio.wait_for(future, self._effective_timeout())
        except asyncio.TimeoutError:
            raise TimeoutError(f"call {method} to {self._pyroUri} timed out") from None
        finally:
            self._pending.pop(seq, None)
        if reply.annotations and ctx is not None:
            ctx.response_annotations = reply.annotations
        try:
            return call_result(reply, ser, self._remote_iterator)
        except StopIteration as exc:
            # StopIteration cannot leave a coroutine (PEP 479): a remote one arrives as StopAsyncIteration
            raise StopAsyncIteration(*exc.args) from None

    def _remote_iterator(self, stream_id: str) -> AsyncRemoteIterator:
        return AsyncRemoteIterator(self, stream_id)


class AsyncRemoteIterator:
    """``async for`` over a remote iterator or generator, one item per call."""

    def __init__(self, proxy: AsyncProxy, stream_id: str) -> None:
        self.proxy = proxy
        self.stream_id = stream_id
        self.done = False

    def __aiter__(self) -> AsyncRemoteIterator:
        return self

    async def __anext__(self) -> Any:
        if self.done:
            raise StopAsyncIteration
        try:
            return await self.proxy._invoke("get_next_stream_item", [self.stream_id], {}, object_id=_DAEMON)
        except StopAsyncIteration:
            self.done = True
            raise
        except PyroError:
            self.done = True
            raise

    async def aclose(self) -> None:
        """Tell the daemon to drop the stream (safe to call twice)."""
        if self.done:
            return
        self.done = True
        with contextlib.suppress(PyroError):
            await self.proxy._invoke("close_stream", [self.stream_id], {}, F_ONEWAY, object_id=_DAEMON)

    async def __aenter__(self) -> AsyncRemoteIterator:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class AsyncBatchProxy:
    """Record calls, then send them in one message: ``results = await batch()``.

    The results come as a generator in call order; a call that raised raises its exception
    when reached, and later calls were not run. ``await batch(oneway=True)`` does not wait.
    """

    def __init__(self, proxy: AsyncProxy) -> None:
        self._proxy = proxy
        self._calls: list[tuple[str, tuple, dict]] = []

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)

        def record(*args: Any, **kwargs: Any) -> None:
            self._calls.append((name, args, kwargs))

        return record

    def __len__(self) -> int:
        return len(self._calls)

    async def __call__(self, oneway: bool = False) -> Any:
        calls, self._calls = self._calls, []
        proxy = self._proxy
        await proxy._bind()
        unknown = [name for name, _a, _k in calls if name not in proxy._methods]
        if unknown:
            raise AttributeError(f"remote object '{proxy._pyroUri}' has no exposed method '{unknown[0]}'")
        if not calls:
            return None if oneway else iter(())
        payload = [[name, list(args), kwargs] for name, args, kwargs in calls]
        flags = F_BATCH | (F_ONEWAY if oneway else 0)
        return await proxy._invoke("<batch>", payload, None, flags)


async def _read_message(reader: asyncio.StreamReader, decoder: Decoder) -> Message | None:
    msg = decoder.next_message()
    while msg is None:
        data = await reader.read(1 << 20)
        if not data:
            if decoder.buffered:
                raise ConnectionClosedError("connection closed in the middle of a message")
            return None
        decoder.feed(data)
        msg = decoder.next_message()
    return msg


async def _drain(writer: asyncio.StreamWriter, uri: URI) -> None:
    try:
        await writer.drain()
    except (ConnectionError, OSError) as exc:
        raise ConnectionClosedError(f"connection to {uri} lost while sending: {exc}") from None
