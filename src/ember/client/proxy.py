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
from typing import Any, Generic, TypeVar

from .. import context, errors, net, serializers
from ..blob import SerializedBlob
from ..config import config
from ..errors import (
    CommunicationError,
    ConnectionClosedError,
    ConnectionDeniedError,
    ProtocolError,
    PyroError,
    TimeoutError,
)
from ..protocol import (
    F_ONEWAY,
    T_INVOKE,
    Decoder,
    Message,
    encode,
)
from ..serializers import _classes
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
from .resolve import resolve as resolve_uri

__all__ = ["Proxy", "RemoteIterator"]

T = TypeVar("T")



class _RemoteMethod:
    """A bound remote method: calling it performs the remote call (``proxy._call_remote``),
    for both :class:`Proxy` and :class:`~ember.AsyncProxy` (whose call returns a coroutine)."""

    __slots__ = ("_proxy", "_name", "__name__")

    def __init__(self, proxy: Proxy, name: str) -> None:
        self._proxy = proxy
        self._name = name
        self.__name__ = name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._proxy._call_remote(self._name, args, kwargs)

    def __repr__(self) -> str:
        return f"<remote method {self._name} of {self._proxy._pyroUri}>"


def _tls_wrap(ctx: Any, sock: Any, uri: URI) -> Any:
    """Do the client side of the TLS handshake on a connected socket (closing it on failure)."""
    import ssl

    from ..tls import describe_failure

    try:
        return ctx.wrap_socket(sock, server_hostname=uri.host if ctx.check_hostname else None)
    except ssl.SSLError as exc:
        net.close_quietly(sock)
        raise CommunicationError(f"TLS handshake with {uri.location} failed: {describe_failure(exc)}") from None
    except OSError as exc:
        net.close_quietly(sock)
        raise CommunicationError(f"TLS handshake with {uri.location} failed: {exc.strerror or exc}") from None


def closed_hint(tls: bool) -> str:
    """Why a daemon may have closed the connection during the handshake."""
    if not tls:
        return " (does the daemon require TLS?)"
    return " (does the daemon require a TLS client certificate? set SSL_CLIENTCERT and SSL_CLIENTKEY)"


def _tls_alert(sock: Any) -> str:
    """After a TLS connection broke during the handshake: the peer's alert, if one arrived."""
    try:
        sock.settimeout(0.5)
        sock.recv(1)
    except OSError as exc:
        return str(exc)
    return ""


class Proxy(Generic[T]):
    """A connection to a remote object; attribute access becomes remote calls.

    >>> calc = ember.Proxy("PYRO:calc@127.0.0.1:9999")
    >>> calc.add(1, 2)
    3

    Local controls start with an underscore: ``_timeout`` (seconds, None = config
    ``COMMTIMEOUT``), ``_serializer`` (name), ``_oneway`` (set of method names to call
    oneway), ``_handshake`` (data for the daemon's ``validate_handshake``),
    ``_max_retries``, ``_release()``, ``_reconnect()``, ``_bind()``.
    """

    def __init__(self, uri: str | URI, connected_socket: Any = None, ssl_context: Any = None) -> None:
        if connected_socket is not None and isinstance(uri, str) and ":" not in uri:
            uri = URI(f"PYRO:{uri}@./u:connected-socket")
        # straight into __dict__: __setattr__ is for remote attributes and costs a call per name
        self.__dict__.update({
            "_pyroUri": URI(uri),
            "_bound_uri": None,
            "_timeout": None,
            "_serializer": config.SERIALIZER,
            "_oneway": set(),
            "_handshake": "hello",
            "_handshake_response": None,
            "_max_retries": config.MAX_RETRIES,
            "_methods": frozenset(),
            "_attrs": frozenset(),
            "_oneway_server": frozenset(),
            "_metadata_known": False,
            "_sock": None,
            "_lock": threading.RLock(),
            "_seq": 0,
            "_decoder": None,
            "_extended": False,
            "_connected_socket": connected_socket,
            "_ssl_context": ssl_context,
            "_method_cache": {},
        })

    # ---- attribute protocol ------------------------------------------------------------

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(f"{type(self).__name__!s} has no attribute {name!r}")
        return self._remote(name)

    def _remote(self, name: str) -> Any:
        cached = self._method_cache.get(name)
        if cached is not None:
            return cached
        if not self._metadata_known:
            self._bind()
        if name in self._methods:
            method = self._method_cache[name] = _RemoteMethod(self, name)
            self.__dict__[name] = method  # later lookups skip __getattr__ (cleared with the metadata)
            return method
        if name in self._attrs:
            return self._invoke("__getattr__", (name,), None)
        raise AttributeError(f"remote object '{self._pyroUri}' has no exposed attribute or method '{name}'")

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_"):
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

    def __str__(self) -> str:
        return repr(self)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Proxy) and other._pyroUri == self._pyroUri

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    def __hash__(self) -> int:
        return hash(self._pyroUri)

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

    def __enter__(self) -> Proxy[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self._release()

    def __copy__(self) -> Proxy[T]:
        new = type(self)(self._pyroUri)
        new._timeout = self._timeout
        new._serializer = self._serializer
        new._oneway = set(self._oneway)
        new._handshake = self._handshake
        new._max_retries = self._max_retries
        new._ssl_context = self._ssl_context
        return new

    def __getstate__(self) -> dict:
        raise TypeError("proxies travel through Ember's serializers, not pickle")

    def __del__(self) -> None:
        try:
            sock = self._sock
            if sock is not None:
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

    def _reconnect(self, tries: int = 100_000_000, wait: float = 1.0) -> None:
        """Release and connect again, trying up to ``tries`` times ``wait`` seconds apart.

        For a server that restarts on a fixed object id (same URI). Raises the last
        :class:`CommunicationError` if every try fails.
        """
        with self._lock:
            self._release()
            for attempt in range(tries):
                try:
                    self._connect()
                    return
                except CommunicationError:
                    if attempt == tries - 1:
                        raise
                    time.sleep(wait)

    def _effective_timeout(self) -> float | None:
        t = self._timeout if self._timeout is not None else config.COMMTIMEOUT
        return t or None

    def _resolve(self) -> URI:
        """The direct URI to connect to; magic URIs are looked up again on every (re)connect."""
        uri = self._pyroUri
        if uri.protocol == "PYRO":
            return uri
        return resolve_uri(uri, Proxy)

    def _connect(self) -> None:
        """Open the connection and do the handshake (caller holds the lock)."""
        ser = serializers.get(self._serializer)
        self.__dict__["_decoder"] = Decoder(config.MAX_MESSAGE_SIZE, config.MAX_ANNOTATIONS_SIZE)
        if self._connected_socket is not None:
            self._sock = self._connected_socket
            self._ser, self._ser_id, self._extended = ser, ser.serializer_id, False
            self._decoder.allowed_types = RESULT_TYPES
            meta = self._invoke_locked("Pyro.Daemon", "get_metadata", [self._pyroUri.object], {}, 0)
            self._set_metadata(meta)
            return
        uri = self._resolve()
        sock = net.connect(uri, self._effective_timeout(), config.SOCK_NODELAY)
        tls = self._ssl_context
        if tls is None and config.SSL:
            from ..tls import client_context

            try:
                tls = client_context(config)
            except BaseException:
                net.close_quietly(sock)
                raise
        if tls is not None:
            sock = _tls_wrap(tls, sock, uri)
        try:
            self._decoder.allowed_types = HANDSHAKE_REPLY_TYPES
            try:
                net.send(sock, encode(connect_message(ser, self._handshake, uri.object, self._seq),
                                      config.COMPRESSION, config.MAX_MESSAGE_SIZE))
                reply = net.recv_message(sock, self._decoder)
            except ConnectionClosedError as exc:
                reason = _tls_alert(sock) if tls is not None else ""
                if "CERTIFICATE_REQUIRED" in reason or "CERTIFICATE_REQUIRED" in str(exc):
                    raise ConnectionDeniedError(f"connection to {uri.location} rejected: the daemon requires a TLS "
                                                "client certificate (set SSL_CLIENTCERT and SSL_CLIENTKEY)",
                                                errors.DENY_SECURITY) from None
                raise ConnectionClosedError(f"connection to {uri.location} lost during the handshake: "
                                            f"{reason or exc}") from None
            if reply is None:
                raise ConnectionClosedError(f"connection to {uri.location} closed during the handshake"
                                            f"{closed_hint(tls is not None)}")
            answer = handshake_result(reply, uri.location, ser.serializer_id)
        except BaseException:
            net.close_quietly(sock)
            raise
        self.__dict__.update(_sock=sock, _bound_uri=uri, _extended=answer.extended, _ser=answer.serializer,
                             _ser_id=ser.serializer_id, _handshake_response=answer.response)
        self._decoder.allowed_types = RESULT_TYPES
        self._set_metadata(answer.meta)
        self._validate_handshake_response(self._handshake_response)

    def _validate_handshake_response(self, data: Any) -> None:
        """Hook: inspect the daemon's handshake answer; raise to refuse the connection."""

    def _set_metadata(self, meta: Any) -> None:
        self._methods, self._attrs, self._oneway_server = parse_metadata(meta, self._pyroUri)
        self._metadata_known = True
        for name in self._method_cache:
            self.__dict__.pop(name, None)
        self._method_cache.clear()

    # ---- calls -------------------------------------------------------------------------

    def _invoke(self, method: str, args: Any, kwargs: dict | None, flags: int = 0) -> Any:
        if method in self._oneway_server or method in self._oneway:
            flags |= F_ONEWAY
        retries = self._max_retries
        while True:
            with self._lock:
                try:
                    if self._sock is None:
                        self._connect()
                    return self._invoke_locked((self._bound_uri or self._pyroUri).object, method, args, kwargs,
                                               flags)
                except ConnectionClosedError:
                    self._release()
                    if retries <= 0:
                        raise
                    retries -= 1

    _call_remote = _invoke  # what a _RemoteMethod calls

    def _invoke_locked(self, object_id: str, method: str, args: Any, kwargs: dict | None, flags: int) -> Any:
        ser = self._ser
        seq = self.__dict__["_seq"] = (self._seq + 1) & 0xFFFF
        ctx = context.peek()
        if ctx is not None:
            ann = ctx.annotations
            corr = ctx.correlation_id
        else:
            ann, corr = None, None
        if args and type(args[0]) is SerializedBlob:
            data, ann, extra = call_payload(ser, object_id, method, args, kwargs, ann, self._ser_id)
            flags |= extra
        else:
            data = ser.dumps_call(object_id, method, args, kwargs)
        sock = self._sock
        try:
            timeout = self._timeout if self._timeout is not None else config.COMMTIMEOUT
            timeout = timeout or None
            if timeout != sock.gettimeout():
                sock.settimeout(timeout)
            net.send(sock, encode(Message(T_INVOKE, self._ser_id, flags, seq, data, ann, corr),
                                  config.COMPRESSION, config.MAX_MESSAGE_SIZE, parts=True))
            if flags & F_ONEWAY:
                return None
            reply = net.recv_message(sock, self._decoder)
        except TimeoutError:
            self._release()
            raise
        except ProtocolError:
            self._release()
            raise
        if reply is None:
            self._release()
            raise ConnectionClosedError(f"connection to {self._pyroUri} closed by the server")
        if reply.seq != seq:
            self._release()
            raise ProtocolError(f"invalid reply sequence number {reply.seq} (expected {seq})")
        if reply.annotations and ctx is not None:
            ctx.response_annotations = reply.annotations
        if not reply.flags:
            return ser.loads(reply.data)  # the usual plain result
        return call_result(reply, ser, self._remote_iterator)

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
                return proxy._invoke_locked("Pyro.Daemon", "get_next_stream_item", [self.stream_id], {}, 0)
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
            proxy._invoke_locked("Pyro.Daemon", "close_stream", [self.stream_id], {}, F_ONEWAY)
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


def _proxy_to_dict(proxy: Proxy) -> dict:
    return {
        "__class__": "Pyro5.client.Proxy",
        "state": (str(proxy._pyroUri), tuple(proxy._oneway_server | proxy._oneway), tuple(proxy._methods),
                  tuple(proxy._attrs), proxy._handshake, None),
    }


def _dict_to_proxy(_: str, d: dict) -> Proxy:
    try:
        uri, oneway, methods, attrs, handshake, serializer = d["state"]
    except (KeyError, TypeError, ValueError):
        raise PyroError("invalid serialized proxy") from None
    proxy = Proxy(uri)
    if methods or attrs:
        proxy._methods = frozenset(methods or ())
        proxy._attrs = frozenset(attrs or ())
        proxy._oneway_server = frozenset(oneway or ())
        proxy._metadata_known = True
    proxy._handshake = handshake
    if serializer:
        proxy._serializer = serializer
    return proxy


_classes.register_class_to_dict(Proxy, _proxy_to_dict)
_classes.register_dict_to_class("Pyro5.client.Proxy", _dict_to_proxy)
