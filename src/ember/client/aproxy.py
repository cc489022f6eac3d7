"""``AsyncProxy``: the asyncio stand-in for a remote object.

``await proxy.method(...)`` performs a call. One connection carries every call of a proxy:
with an Ember asyncio daemon (both sides announce it in the handshake) many calls are in
flight at once and their replies are matched by sequence number, so a slow call does not
hold up a quick one; with any other daemon (Pyro5's, Ember's thread-pool or multiplex
server), which answers in order, calls are sent one at a time. Cancelling an awaiting call
is safe: its reply, if it still comes, is dropped, and the other calls are unaffected.

It has the blocking :class:`~ember.Proxy`'s features: retries (``_max_retries``) and
``await proxy._reconnect()``, connected sockets, ``copy.copy``, proxies as arguments and
results (a proxy received here arrives as an ``AsyncProxy``), TLS with the same
diagnosis of refused handshakes, and attribute syntax: ``await proxy.name`` reads an
exposed attribute (``await proxy._set(name, value)`` writes one).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
from collections.abc import Generator
from typing import Any

from .. import serializers
from ..config import config
from ..errors import CommunicationError, ConnectionClosedError, PyroError, TimeoutError
from ..protocol import F_BATCH, F_ONEWAY, ClientSession
from ..transport import shm
from ..transport.aio import AsyncStream, open_stream
from ..transport.errors import closed_hint
from ..uri import URI
from . import hooks
from ._base import ProxyCore, receiving_flavour
from .hooks import installed as _hooks
from .proxy import _FAILOVERS, _RemoteMethod
from .resolve import ReplicaRounds, acandidates, aresolve, forget, mark_failed

__all__ = ["AsyncProxy", "AsyncBatchProxy", "AsyncRemoteIterator"]

_DAEMON = "Pyro.Daemon"
_background: set[asyncio.Task] = set()  # idle releases in progress (kept from being garbage-collected)


class _AsyncMember(_RemoteMethod):
    """``proxy.name``: call it for a remote method (a coroutine), await it for a remote attribute."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, Any]:
        return self._proxy._get(self._name).__await__()

    def __repr__(self) -> str:
        return f"<remote member {self._name} of {self._proxy._pyroUri}>"


class AsyncProxy(ProxyCore):
    """An asyncio proxy. Use it from one event loop.

    >>> async with ember.AsyncProxy("PYRONAME:calc") as calc:
    ...     await calc.add(1, 2)
    3

    Exposed attributes: ``await proxy.name`` (or ``await proxy._get("name")``) and
    ``await proxy._set("name", value)``. Local controls as on :class:`~ember.Proxy`:
    ``_timeout`` (seconds; None = config ``COMMTIMEOUT``), ``_serializer``, ``_oneway``,
    ``_handshake``, ``_max_retries``, ``_release()``, ``_reconnect()``, ``_bind()``.
    """

    _stream: AsyncStream | None
    _reader_task: asyncio.Task | None
    _multiplex: bool
    _connect_lock: asyncio.Lock | None
    _call_lock: asyncio.Lock | None

    def __init__(self, uri: str | URI, ssl_context: ssl.SSLContext | None = None,
                 connected_socket: socket.socket | None = None) -> None:
        state = self._init_core(uri, connected_socket, ssl_context)
        state.update(_stream=None, _reader_task=None, _multiplex=False, _connect_lock=None, _call_lock=None,
                     _used=0.0)
        self.__dict__.update(state)

    # ---- attribute protocol ------------------------------------------------------------

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") and not self._exposed_dunder(name):
            raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")
        return _AsyncMember(self, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_"):
            if name not in self.__dict__:
                self._check_local(name)
            object.__setattr__(self, name, value)
            return
        raise AttributeError(f"cannot set remote attribute {name!r} without awaiting: "
                             f"use await proxy._set({name!r}, value)")

    def __bool__(self) -> bool:
        """Always True: truth cannot be awaited, so ``if proxy:`` never asks the remote object
        (use ``await proxy._len()`` for a remote container's size)."""
        return True

    def __repr__(self) -> str:
        state = "connected" if self._stream is not None else "not connected"
        return f"<ember.AsyncProxy {self._pyroUri} {state}>"

    # the remote object's dunders, in the forms Python lets be awaited
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """``await proxy(...)``: call the remote object itself (its exposed ``__call__``)."""
        return self._call("__call__", args, kwargs)

    def __getitem__(self, key: Any) -> Any:
        """``await proxy[key]``."""
        return self._call("__getitem__", (key,), None)

    async def _len(self) -> int:
        """The remote ``len()`` (``len(proxy)`` cannot wait for the network)."""
        return await self._call("__len__", (), None)

    async def _contains(self, item: Any) -> bool:
        """The remote ``item in obj`` (``in`` cannot wait for the network)."""
        return bool(await self._call("__contains__", (item,), None))

    def __aiter__(self) -> Any:
        """``async for item in proxy``: the remote object's ``__iter__``, item by item."""
        return _RemoteIteration(self)

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | self._methods | self._attrs)

    async def __aenter__(self) -> AsyncProxy:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._release()

    def __del__(self) -> None:
        stream = self.__dict__.get("_stream")
        if stream is not None and self.__dict__.get("_connected_socket") is None:
            with contextlib.suppress(Exception):
                stream.close()

    @property
    def _writer(self) -> asyncio.StreamWriter | None:
        stream = self._stream
        return stream.writer if stream is not None else None

    @property
    def _pending(self) -> dict[int, asyncio.Future]:
        """Calls waiting for their reply, by sequence number."""
        session = self._session
        return session.pending if session is not None else {}

    async def _get(self, name: str) -> Any:
        """The value of an exposed attribute (property) of the remote object."""
        await self._bind()
        if name not in self._attrs:
            if name in self._methods:
                raise AttributeError(f"'{name}' is a method of remote object '{self._pyroUri}': call it")
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
        if self._stream is not None:
            return
        if self._connect_lock is None:
            self._connect_lock = asyncio.Lock()
        async with self._connect_lock:
            if self._stream is None:
                await self._connect()

    async def _release(self) -> None:
        """Close the connection; pending calls fail with ConnectionClosedError; the next call reconnects."""
        stream, self._stream = self._stream, None
        task, self._reader_task = self._reader_task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        session = self._session
        if session is not None:
            _fail_pending(session, ConnectionClosedError(f"connection to {self._pyroUri} was released"))
            if session.shm is not None:  # issue 16: unmap and close the regions
                session.shm.close()
        if stream is not None and self._connected_socket is None:
            await stream.aclose()

    async def _reconnect(self, tries: int = 100_000_000, wait: float = 1.0) -> None:
        """Release and connect again, trying up to ``tries`` times ``wait`` seconds apart
        (for a server that restarts on a fixed object id). Raises the last error if all fail."""
        await self._release()
        if self._pyroUri.protocol == "PYRONAME":
            forget(self._pyroUri)  # an explicit reconnect looks the name up again
        for attempt in range(tries):
            try:
                await self._bind()
                return
            except CommunicationError:
                if attempt == tries - 1:
                    raise
                await asyncio.sleep(wait)

    async def _resolve(self) -> URI:
        uri = self._pyroUri
        if uri.protocol == "PYRO":
            return uri
        return await aresolve(uri, AsyncProxy)

    async def _open(self, uri: URI, tls: Any) -> AsyncStream:
        return await open_stream(uri, self._effective_timeout(), tls, config.SOCK_NODELAY, self._connected_socket)

    async def _connect(self) -> None:
        session = ClientSession(serializers.get(self._serializer), config)
        if self._connected_socket is not None:
            self._session = session
            self._stream = await self._open(self._pyroUri, None)
            session.skip_handshake()
            self._reader_task = asyncio.ensure_future(self._read_replies(self._stream, session))
            self._set_metadata(await self._roundtrip(_DAEMON, "get_metadata", (self._pyroUri.object,), None, 0))
            self._bound_uri = self._pyroUri
            return
        name = self._pyroUri
        if name.protocol != "PYRONAME":
            await self._open_session(await self._resolve(), session)
            return
        # a name: its replicas in turn, as the blocking Proxy does
        rounds = ReplicaRounds(name)
        while True:
            uris, cached = await acandidates(name, AsyncProxy, rounds.use_cache)
            for uri in uris:
                try:
                    await self._open_session(uri, ClientSession(serializers.get(self._serializer), config))
                    return
                except CommunicationError as exc:
                    rounds.failed(uri, exc)
            rounds.end_of_round(cached)

    async def _open_session(self, uri: URI, session: ClientSession) -> None:
        """Connect to a direct URI and do the handshake."""
        tls = self._tls()
        stream = await self._open(uri, tls)
        # issue 16: offer shared memory to a daemon on this machine
        want_shm = tls is None and config.SHM_THRESHOLD > 0 and shm.available() and shm.local_socket(stream.sock)
        try:
            try:
                await stream.send(session.connect_frame(self._handshake, uri.object, multiplex=True,
                                                         extended=self._wants_extended(), shared_memory=want_shm),
                                  uri.location)
                reply = await asyncio.wait_for(stream.recv_message(session.decoder), self._effective_timeout())
            except ConnectionClosedError as exc:
                alert = await stream.peer_alert() if tls is not None else ""
                raise self._handshake_broke(exc, alert, uri.location, tls is not None) from None
            if reply is None:
                raise ConnectionClosedError(f"connection to {uri.location} closed during the handshake"
                                            f"{closed_hint(tls is not None)}")
            answer = session.handshake(reply, uri.location)
            if want_shm and answer.extended:
                session.shm = shm.client_channel(reply.annotations, config.SHM_THRESHOLD, config.MAX_MESSAGE_SIZE)
            self._set_metadata(answer.meta)
            self._validate_handshake_response(answer.response)
        except asyncio.TimeoutError:
            stream.close()
            raise TimeoutError(f"handshake with {uri.location} timed out") from None
        except BaseException:
            stream.close()
            raise
        self._bound_uri = uri
        self._multiplex = answer.multiplex
        self._handshake_response = answer.response
        self._session = session
        self._stream = stream
        self._reader_task = asyncio.ensure_future(self._read_replies(stream, session))
        self._used = time.monotonic()
        if config.PROXY_IDLE_RELEASE:
            asyncio.get_running_loop().call_later(config.PROXY_IDLE_RELEASE, self._idle_tick, stream)

    def _idle_tick(self, stream: AsyncStream) -> None:
        """Idle release (config ``PROXY_IDLE_RELEASE``): close the connection once unused that long."""
        limit = config.PROXY_IDLE_RELEASE
        if self._stream is not stream or not limit:
            return  # released or replaced meanwhile
        left = limit - (time.monotonic() - self._used)
        if left > 0 or self._pending:
            asyncio.get_running_loop().call_later(max(left, limit / 4), self._idle_tick, stream)
            return
        task = asyncio.ensure_future(self._release())
        _background.add(task)
        task.add_done_callback(_background.discard)

    async def _read_replies(self, stream: AsyncStream, session: ClientSession) -> None:
        """Hand every reply to the call waiting for its sequence number; fail them all when the line dies."""
        error: Exception = ConnectionClosedError(f"connection to {self._pyroUri} closed by the server")
        pending = session.pending
        try:
            while True:
                data = await stream.read()
                if not data:
                    break
                session.decoder.feed(data)
                while (msg := session.decoder.next_message()) is not None:
                    future = pending.pop(msg.seq, None)
                    if future is not None and not future.done():
                        future.set_result(msg)
                    elif session.shm is not None:
                        session.dropped(msg)  # issue 16: nobody reads it: free its shared memory
                future = None  # holds the last reply: let the decoder reuse a large payload's buffer
        except asyncio.CancelledError:
            return
        except PyroError as exc:
            error = exc
        if self._stream is stream:
            self._stream = None
            self._reader_task = None
            if self._connected_socket is None:
                stream.close()
        _fail_pending(session, error)

    # ---- calls -------------------------------------------------------------------------

    async def _call(self, method: str, args: Any, kwargs: dict | None) -> Any:
        if not self._metadata_known or self._stream is None:
            await self._bind()
        if method not in self._methods:
            if method in self._attrs:
                raise AttributeError(f"'{method}' is an attribute of remote object '{self._pyroUri}': "
                                     f"use await proxy._get({method!r}) or await proxy.{method}")
            raise AttributeError(f"remote object '{self._pyroUri}' has no exposed method '{method}'")
        return await self._invoke(method, args, kwargs)

    _call_remote = _call  # what an _AsyncMember calls

    async def _invoke(self, method: str, args: Any, kwargs: dict | None, flags: int = 0,
                      object_id: str | None = None) -> Any:
        if method in self._oneway_server or method in self._oneway:
            flags |= F_ONEWAY
        retries = self._max_retries
        failovers = _FAILOVERS
        while True:
            try:
                if self._stream is None:
                    await self._bind()
                oid = object_id if object_id is not None else self._object_id()
                if self._multiplex or flags & F_ONEWAY:
                    return await self._roundtrip(oid, method, args, kwargs, flags)
                if self._call_lock is None:
                    self._call_lock = asyncio.Lock()
                async with self._call_lock:  # a daemon that answers in order: one call at a time
                    return await self._roundtrip(oid, method, args, kwargs, flags)
            except ConnectionClosedError:
                bound = self._bound_uri
                await self._release()
                if retries > 0:
                    retries -= 1
                    continue
                # the server died during the call: only an @idempotent method runs again, on another replica
                if failovers <= 0 or method not in self._idempotent or self._pyroUri.protocol != "PYRONAME":
                    raise
                failovers -= 1
                if bound is not None:
                    mark_failed(self._pyroUri, bound)

    async def _roundtrip(self, object_id: str, method: str, args: Any, kwargs: dict | None, flags: int) -> Any:
        self._used = time.monotonic()
        stream = self._stream
        if stream is None:
            await self._bind()
            stream = self._stream
            assert stream is not None
        session = self._session
        info = self._hook_info(object_id, method, flags, F_ONEWAY) if _hooks else None
        try:
            seq, frame = session.invoke_frame(object_id, method, args, kwargs, flags,
                                              extra_annotations=info.annotations if info is not None else None)
            if flags & F_ONEWAY:
                await stream.send(frame, self._pyroUri)
                result = None
            else:
                future = asyncio.get_running_loop().create_future()
                session.pending[seq] = future
                try:
                    await stream.send(frame, self._pyroUri)
                    reply = await asyncio.wait_for(future, self._effective_timeout())
                except asyncio.TimeoutError:
                    raise TimeoutError(f"call {method} to {self._pyroUri} timed out") from None
                except asyncio.CancelledError:
                    if future.done() and not future.cancelled() and session.shm is not None:
                        session.dropped(future.result())  # issue 16: the reply came, nobody reads it
                    raise
                finally:
                    session.pending.pop(seq, None)
                token = receiving_flavour.set(AsyncProxy)
                try:
                    result = session.result(reply, seq, self._remote_iterator)
                except StopIteration as exc:
                    # StopIteration cannot leave a coroutine (PEP 479): a remote one arrives as StopAsyncIteration
                    raise StopAsyncIteration(*exc.args) from None
                finally:
                    receiving_flavour.reset(token)
        except BaseException as exc:
            if info is not None:
                hooks.after(info, None, exc)
            raise
        if info is not None:
            hooks.after(info, result, None)
        return result

    def _remote_iterator(self, stream_id: str) -> AsyncRemoteIterator:
        return AsyncRemoteIterator(self, stream_id)


def _fail_pending(session: ClientSession, error: Exception) -> None:
    pending, session.pending = session.pending, {}
    for future in pending.values():
        if not future.done():
            future.set_exception(error)


class _RemoteIteration:
    """``async for`` over a proxy: asks for the remote iterator on the first step."""

    def __init__(self, proxy: AsyncProxy) -> None:
        self.proxy = proxy
        self.iterator: Any = None

    def __aiter__(self) -> _RemoteIteration:
        return self

    async def __anext__(self) -> Any:
        if self.iterator is None:
            result = await self.proxy._call("__iter__", (), None)
            self.iterator = result if hasattr(result, "__anext__") else _ListIteration(result)
        return await self.iterator.__anext__()


class _ListIteration:
    """A remote ``__iter__`` that returned a list (no stream): its items."""

    def __init__(self, items: Any) -> None:
        self.items = iter(items)

    async def __anext__(self) -> Any:
        try:
            return next(self.items)
        except StopIteration:
            raise StopAsyncIteration from None


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
