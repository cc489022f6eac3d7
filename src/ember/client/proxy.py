"""``Proxy``: the local stand-in for a remote object.

A proxy owns one connection, opened lazily on first use and re-opened on the next use
after it was released or lost. **Thread safety**: a proxy may be used from several
threads at once; calls are serialized on its one connection by a lock (a call waits for
the previous one's reply). For parallel calls give each thread its own proxy
(``copy.copy(proxy)`` makes one with its own connection).
"""

from __future__ import annotations

import threading
import time
import weakref
from asyncio import AbstractEventLoop
from asyncio import _get_running_loop as _running_loop  # the C accessor: no exception when there is none
from typing import Any, Generic, TypeVar

from .. import serializers
from ..config import config
from ..errors import CommunicationError, ConnectionClosedError, DeadlockError, ProtocolError, PyroError, TimeoutError
from ..protocol import F_ONEWAY, HEADER_SIZE, T_RESULT, ClientSession
from ..protocol.plain import plain_header
from ..transport import shm
from ..transport import sync as net
from ..transport.errors import closed_hint, io_error
from ..transport.tls import peer_alert, wrap_client
from ..uri import URI
from . import hooks
from ._base import ProxyCore
from .hooks import installed as _hooks
from .idle import watch
from .resolve import ReplicaRounds, candidates, forget, mark_failed
from .resolve import resolve as resolve_uri

__all__ = ["Proxy", "RemoteIterator", "loop_serves", "loop_stopped"]

T = TypeVar("T")
_DAEMON = "Pyro.Daemon"
_monotonic = time.monotonic
# a connection unused for this long is checked for a close by the daemon before the next call
# (one non-blocking select, only after a pause, so back-to-back calls never pay it)
_STALE = 0.05
# how many times a call to an @idempotent method of a PYRONAME: proxy moves to another replica
# after its server died during the call
_FAILOVERS = 3

# event loops that serve Ember asyncio daemons -> the (host, port, unix path) they listen on;
# a blocking call from such a loop's own thread to one of them could never be answered
_serving_loops: weakref.WeakKeyDictionary[AbstractEventLoop, set[tuple]] = weakref.WeakKeyDictionary()
_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "0.0.0.0", "::", ""})
# whether any loop serves a daemon: a plain global read on every call (a WeakKeyDictionary's
# truth test runs Python code); it may stay true after a loop was collected, which only costs
# the full check
_serving = False


def loop_serves(loop: AbstractEventLoop, location: tuple) -> None:
    """Note that ``loop`` serves an asyncio daemon at ``location`` (called by the asyncio driver)."""
    global _serving
    _serving_loops.setdefault(loop, set()).add(tuple(location))
    _serving = True


def loop_stopped(loop: AbstractEventLoop, location: tuple) -> None:
    """The daemon at ``location`` no longer serves on ``loop``."""
    global _serving
    locations = _serving_loops.get(loop)
    if locations is not None:
        locations.discard(tuple(location))
        if not locations:
            _serving_loops.pop(loop, None)
    _serving = bool(_serving_loops)


def _is_local(host: str | None) -> bool:
    return host is None or host in _LOCAL_HOSTS or host.startswith("127.")


def _served_here(uri: URI) -> bool:
    """Whether ``uri`` names a daemon served by the event loop running in this thread."""
    loop = _running_loop()
    if loop is None:
        return False
    locations = _serving_loops.get(loop)
    if not locations or uri.protocol != "PYRO":
        return False
    for host, port, sockname in locations:
        if uri.sockname is not None:
            if sockname == uri.sockname:
                return True
        elif port == uri.port and (host == uri.host or (_is_local(host) and _is_local(uri.host))):
            return True
    return False


def _deadlock(uri: URI, method: str) -> DeadlockError:
    return DeadlockError(
        f"blocking ember.Proxy call {method!r} to {uri} made on the event loop thread of the asyncio daemon "
        "that serves it: the loop would wait for itself and freeze. In async code use ember.aio.AsyncProxy "
        "(await proxy.method(...)); or make the calling method a plain def, which runs in a worker thread")


class _RemoteMethod:
    """A bound remote method: calling it performs the remote call (``proxy._call_remote``)."""

    __slots__ = ("_proxy", "_name", "__name__", "_doc")

    def __init__(self, proxy: Any, name: str, doc: str | None = None) -> None:
        self._proxy = proxy
        self._name = name
        self.__name__ = name
        self._doc = doc

    @property
    def __doc__(self) -> str | None:  # type: ignore[override]
        """The remote method's docstring (``help(proxy.method)``), when the daemon sent it."""
        return self._doc

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._proxy._call_remote(self._name, args, kwargs)

    def __repr__(self) -> str:
        return f"<remote method {self._name} of {self._proxy._pyroUri}>"


class Proxy(ProxyCore, Generic[T]):
    """A connection to a remote object; attribute access becomes remote calls.

    >>> calc = ember.Proxy("PYRO:calc@127.0.0.1:9999")
    >>> calc.add(1, 2)
    3

    Local controls start with an underscore: ``_timeout`` (seconds, None = config
    ``COMMTIMEOUT``), ``_serializer`` (name), ``_oneway`` (set of method names to call
    oneway), ``_handshake`` (data for the daemon's ``validate_handshake``),
    ``_max_retries``, ``_release()``, ``_reconnect()``, ``_bind()``.
    """

    _sock: Any
    _lock: Any
    _method_cache: dict[str, _RemoteMethod]

    # ``self: Proxy[Any]``: a plain ``Proxy(uri)`` is a ``Proxy[Any]`` to type checkers (no
    # annotation needed), while ``Proxy[Calc](uri)`` or ``p: Proxy[Calc] = Proxy(uri)`` still work
    def __init__(self: Proxy[Any], uri: str | URI, connected_socket: Any = None, ssl_context: Any = None) -> None:
        # straight into __dict__: __setattr__ is for remote attributes and costs a call per name
        state = self._init_core(uri, connected_socket, ssl_context)
        state.update(_sock=None, _lock=threading.RLock(), _method_cache={}, _used=0.0)
        self.__dict__.update(state)

    # ---- attribute protocol ------------------------------------------------------------

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            if self._exposed_dunder(name):
                return self._remote(name)  # p.__dunder__(): the remote object's exposed dunder
            raise AttributeError(f"{type(self).__name__!s} has no attribute {name!r}")
        return self._remote(name)

    def _remote(self, name: str) -> Any:
        cached = self._method_cache.get(name)
        if cached is not None:
            return cached
        if not self._metadata_known:
            self._bind()
        if name in self._methods:
            method = self._method_cache[name] = _RemoteMethod(self, name, self.__dict__.get("_docs", {}).get(name))
            self.__dict__[name] = method  # later lookups skip __getattr__ (cleared with the metadata)
            return method
        if name in self._attrs:
            return self._invoke("__getattr__", (name,), None)
        raise AttributeError(f"remote object '{self._pyroUri}' has no exposed attribute or method '{name}'")

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_"):
            if name not in self.__dict__:
                self._check_local(name)
            object.__setattr__(self, name, value)
            return
        if not self._metadata_known:
            self._bind()
        if name in self._attrs:
            self._invoke("__setattr__", (name, value), None)
            return
        raise AttributeError(f"remote object '{self._pyroUri}' has no exposed attribute '{name}'")

    def __dir__(self) -> list[str]:
        if not self._metadata_known:
            self._bind()
        return sorted(set(super().__dir__()) | self._methods | self._attrs)

    def __repr__(self) -> str:
        state = "connected" if self._sock is not None else "not connected"
        return f"<ember.Proxy {self._pyroUri} {state}>"

    def __bool__(self) -> bool:
        """True, without a remote call, unless the proxy knows (from the metadata it already
        holds) that the remote object exposes ``__bool__`` or ``__len__``: then that decides.
        ``if proxy:`` never connects; ``len(proxy)`` does."""
        if self._metadata_known:
            if "__bool__" in self._methods:
                return bool(self._remote("__bool__")())
            if "__len__" in self._methods:
                return bool(self._remote("__len__")())
        return True

    # container dunders forward to the remote object when it exposes them
    def __len__(self) -> int:
        return self._remote("__len__")()

    def __getitem__(self, key: Any) -> Any:
        return self._remote("__getitem__")(key)

    def __setitem__(self, key: Any, value: Any) -> None:
        self._remote("__setitem__")(key, value)

    def __delitem__(self, key: Any) -> None:
        self._remote("__delitem__")(key)

    def __iter__(self) -> Any:
        return iter(self._remote("__iter__")())

    def __contains__(self, item: Any) -> bool:
        return bool(self._remote("__contains__")(item))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the remote object itself (its exposed ``__call__``)."""
        return self._remote("__call__")(*args, **kwargs)

    def __enter__(self) -> Proxy[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self._release()

    def __del__(self) -> None:
        try:
            sock = self._sock
            if sock is not None and self._connected_socket is None:
                net.close_quietly(sock)
        except Exception:
            pass

    # ---- connection management ---------------------------------------------------------

    def _bind(self) -> None:
        """Connect now (and fetch the metadata) instead of on first use."""
        with self._lock:
            if self._sock is None:
                self._connect()

    def _release(self) -> None:
        """Close the connection; the next use reconnects."""
        with self._lock:
            sock, self._sock = self._sock, None
            if sock is not None and self._connected_socket is None:
                net.close_quietly(sock)
            session = self.__dict__.get("_session")
            if session is not None and session.shm is not None:  # issue 16: unmap and close the regions
                session.shm.close()

    def _release_if_idle(self, now: float) -> bool:
        """Idle release (config ``PROXY_IDLE_RELEASE``): close the connection if it has not been
        used for that long; True once it is closed. Never waits for a call in progress."""
        limit = config.PROXY_IDLE_RELEASE
        if self._sock is None:
            return True
        if not limit or now - self._used < limit or not self._lock.acquire(blocking=False):
            return False
        try:
            self._release()
            return True
        finally:
            self._lock.release()

    def _reconnect(self, tries: int = 100_000_000, wait: float = 1.0) -> None:
        """Release and connect again, trying up to ``tries`` times ``wait`` seconds apart.

        For a server that restarts on a fixed object id (same URI). Raises the last
        :class:`CommunicationError` if every try fails.
        """
        with self._lock:
            self._release()
            if self._pyroUri.protocol == "PYRONAME":
                forget(self._pyroUri)  # an explicit reconnect looks the name up again
            for attempt in range(tries):
                try:
                    self._connect()
                    return
                except CommunicationError:
                    if attempt == tries - 1:
                        raise
                    time.sleep(wait)

    def _resolve(self) -> URI:
        """The direct URI to connect to; magic URIs are looked up again on every (re)connect."""
        uri = self._pyroUri
        if uri.protocol == "PYRO":
            return uri
        return resolve_uri(uri, Proxy)

    def _connect(self) -> None:
        """Open the connection and do the handshake (caller holds the lock).

        A ``PYRONAME:`` proxy tries the name's replicas in turn (round robin over new
        connections), each failed one left out of the cached lookup; when all fail and the
        list came from the lookup cache, it asks the name server once more."""
        if self._connected_socket is not None:
            session = ClientSession(serializers.get(self._serializer), config)
            self.__dict__["_session"] = session
            self._sock = self._connected_socket
            session.skip_handshake()
            self._set_metadata(self._invoke_locked(_DAEMON, "get_metadata", [self._pyroUri.object], {}, 0))
            return
        name = self._pyroUri
        if name.protocol != "PYRONAME":
            self._open(self._resolve())
            return
        rounds = ReplicaRounds(name)
        while True:
            uris, cached = candidates(name, Proxy, rounds.use_cache)
            for uri in uris:
                try:
                    self._open(uri)
                    return
                except CommunicationError as exc:
                    rounds.failed(uri, exc)
            rounds.end_of_round(cached)

    def _open(self, uri: URI) -> None:
        """Connect to a direct URI and do the handshake."""
        session = ClientSession(serializers.get(self._serializer), config)
        self.__dict__["_session"] = session
        if _serving and _served_here(uri):
            raise _deadlock(uri, "<connect>")
        sock = net.connect(uri, self._effective_timeout(), config.SOCK_NODELAY)
        try:
            tls = self._tls()
        except BaseException:
            net.close_quietly(sock)
            raise
        if tls is not None:
            sock = wrap_client(tls, sock, uri.host, uri.location)
        # issue 16: offer shared memory to a daemon on this machine
        want_shm = tls is None and config.SHM_THRESHOLD > 0 and shm.available() and shm.local_socket(sock)
        try:
            try:
                net.send(sock, session.connect_frame(self._handshake, uri.object, extended=self._wants_extended(),
                                                     shared_memory=want_shm))
                reply = net.recv_message(sock, session.decoder)
            except ConnectionClosedError as exc:
                raise self._handshake_broke(exc, peer_alert(sock) if tls is not None else "", uri.location,
                                            tls is not None) from None
            if reply is None:
                raise ConnectionClosedError(f"connection to {uri.location} closed during the handshake"
                                            f"{closed_hint(tls is not None)}")
            answer = session.handshake(reply, uri.location)
            if want_shm and answer.extended:
                session.shm = shm.client_channel(reply.annotations, config.SHM_THRESHOLD, config.MAX_MESSAGE_SIZE)
        except BaseException:
            net.close_quietly(sock)
            raise
        self.__dict__.update(_sock=sock, _bound_uri=uri, _handshake_response=answer.response, _used=time.monotonic())
        if config.PROXY_IDLE_RELEASE:
            watch(self, config.PROXY_IDLE_RELEASE)
        self._set_metadata(answer.meta)
        self._validate_handshake_response(self._handshake_response)

    def _set_metadata(self, meta: Any) -> None:
        super()._set_metadata(meta)
        for name in self._method_cache:
            self.__dict__.pop(name, None)
        self._method_cache.clear()

    @property
    def _extended(self) -> bool:
        session = self._session
        return session is not None and bool(session.extended)

    # ---- calls -------------------------------------------------------------------------

    def _invoke(self, method: str, args: Any, kwargs: dict | None, flags: int = 0) -> Any:
        if _serving and _served_here(self._bound_uri or self._pyroUri):
            raise _deadlock(self._bound_uri or self._pyroUri, method)
        if method in self._oneway_server or method in self._oneway:
            flags |= F_ONEWAY
        retries = self._max_retries
        failovers = _FAILOVERS
        while True:
            with self._lock:
                try:
                    state = self.__dict__
                    now = _monotonic()
                    if now - state["_used"] > _STALE:  # after a pause: did the daemon close it (IDLE_TIMEOUT)?
                        sock = state["_sock"]
                        if sock is not None and state["_connected_socket"] is None and net.peer_closed(sock):
                            self._release()
                    state["_used"] = now
                    if state["_sock"] is None:
                        self._connect()
                    return self._invoke_locked((self._bound_uri or self._pyroUri).object, method, args, kwargs,
                                               flags)
                except ConnectionClosedError:
                    bound = self._bound_uri
                    self._release()
                    if retries > 0:
                        retries -= 1
                        continue
                    # the server died during the call: only a method marked @idempotent may run again,
                    # on another replica of its name
                    if failovers <= 0 or method not in self._idempotent or self._pyroUri.protocol != "PYRONAME":
                        raise
                    failovers -= 1
                    if bound is not None:
                        mark_failed(self._pyroUri, bound)

    _call_remote = _invoke  # what a _RemoteMethod calls

    def _invoke_locked(self, object_id: str, method: str, args: Any, kwargs: dict | None, flags: int,
                       extra_annotations: dict[str, bytes] | None = None) -> Any:
        if _hooks and extra_annotations is None:
            return self._invoke_hooked(object_id, method, args, kwargs, flags)
        session = self._session
        seq, frame = session.invoke_frame(object_id, method, args, kwargs, flags, extra_annotations=extra_annotations)
        sock = self._sock
        plain = None  # the chunk holding a plain RESULT, decoded straight from it
        try:
            timeout = self._timeout if self._timeout is not None else config.COMMTIMEOUT
            timeout = timeout or None
            if timeout != sock.gettimeout():
                sock.settimeout(timeout)
            try:
                net.send(sock, frame)
            except ConnectionClosedError:
                self._refusal_after_send(sock, session, seq)
                raise
            if flags & F_ONEWAY:
                return None
            decoder = session.decoder
            if decoder.idle:  # the reply starts in the next chunk
                try:
                    chunk = sock.recv(65536)
                except OSError as exc:
                    raise io_error(exc) from None
                header = plain_header(decoder, chunk, T_RESULT)
                if header is not None and header[1] == seq and header[0] == session.serializer_id:
                    plain = chunk
                else:
                    decoder.feed(chunk)  # the general way (recv_message takes what is buffered first)
            reply = net.recv_message(sock, decoder) if plain is None else None
        except TimeoutError as exc:
            self._release()
            raise self._timed_out(method, exc) from None
        except ProtocolError:
            self._release()
            raise
        if plain is not None:
            return session.serializer.loads(plain[HEADER_SIZE:])
        if reply is None:
            self._release()
            raise ConnectionClosedError(f"connection to {self._pyroUri} closed by the server")
        try:
            return session.result(reply, seq, self._remote_iterator)
        except ProtocolError:
            if session.must_close:
                self._release()
            raise

    def _invoke_hooked(self, object_id: str, method: str, args: Any, kwargs: dict | None, flags: int) -> Any:
        """The same call with client hooks around it (they may add annotations)."""
        info = self._hook_info(object_id, method, flags, F_ONEWAY)
        try:
            result = self._invoke_locked(object_id, method, args, kwargs, flags, extra_annotations=info.annotations)
        except BaseException as exc:
            hooks.after(info, None, exc)
            raise
        hooks.after(info, result, None)
        return result

    def _refusal_after_send(self, sock: Any, session: ClientSession, seq: int) -> None:
        """The daemon closed the connection while a call was being sent: if it said why first
        (a call over its MAX_MESSAGE_SIZE), raise that instead of the bare broken connection."""
        try:
            sock.settimeout(0.5)
            reply = net.recv_message(sock, session.decoder)
        except (OSError, PyroError):
            return
        if reply is not None and reply.seq == seq:
            self._release()
            session.result(reply, seq, self._remote_iterator)

    def _timed_out(self, method: str, exc: TimeoutError) -> TimeoutError:
        """The timeout error of a call, naming the method, the URI and the limit."""
        return TimeoutError(f"call {method} to {self._bound_uri or self._pyroUri} timed out ({exc}) after "
                            f"{self._effective_timeout()} s; raise proxy._timeout (or config COMMTIMEOUT) "
                            "if the call legitimately takes longer")

    def _remote_iterator(self, stream_id: str) -> RemoteIterator:
        return RemoteIterator(self, stream_id)


class RemoteIterator:
    """Items of a remote iterator/generator, fetched one call at a time.

    Stops the remote stream when closed, garbage-collected (e.g. after an early
    ``break``), or used as a context manager.
    """

    def __init__(self, proxy: Proxy, stream_id: str) -> None:
        self.proxy = proxy
        self.stream_id = stream_id
        self.done = False

    def __iter__(self) -> RemoteIterator:
        return self

    def __next__(self) -> Any:
        if self.done:
            raise StopIteration
        proxy = self.proxy
        try:
            with proxy._lock:
                if proxy._sock is None:
                    proxy._connect()
                return proxy._invoke_locked(_DAEMON, "get_next_stream_item", [self.stream_id], {}, 0)
        except (StopIteration, PyroError) as exc:
            self.done = True
            if isinstance(exc, StopIteration):
                raise StopIteration from None
            raise

    def close(self) -> None:
        """Tell the daemon to drop the stream (oneway; safe to call twice)."""
        if self.done:
            return
        self.done = True
        proxy = self.proxy
        if proxy._sock is None or not proxy._lock.acquire(blocking=False):
            return  # never block (this runs from __del__); the daemon's linger limit cleans up
        try:
            proxy._invoke_locked(_DAEMON, "close_stream", [self.stream_id], {}, F_ONEWAY)
        except PyroError:
            pass
        finally:
            proxy._lock.release()

    def __enter__(self) -> RemoteIterator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass
