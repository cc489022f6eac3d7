"""The Daemon: a registry of objects and the I/O-free dispatch of protocol messages.

``Daemon.dispatch(conn, message)`` takes one decoded message and returns the reply
message (or None): it never touches a socket. The server loops in ``threadpool`` and
``multiplex`` only move bytes between sockets and this method.
"""

from __future__ import annotations

import asyncio
import collections.abc
import ipaddress
import logging
import socket
import threading
import time
import types
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .. import context, serializers
from ..blob import BLOB_ANNOTATION, SerializedBlob, parse_blob_annotation
from ..config import Config
from ..config import config as global_config
from ..errors import (
    DENY_BUSY,
    DENY_NAMES,
    DENY_SECURITY,
    DENY_UNSPECIFIED,
    DaemonError,
    PyroError,
    SecurityError,
    SerializeError,
    format_traceback,
)
from ..protocol import (
    DENY_ANNOTATION,
    EMBER_CAPS,
    F_BATCH,
    F_EXCEPTION,
    F_ITEMSTREAM,
    F_KEEPSERIALIZED,
    F_ONEWAY,
    MULTIPLEX_CAPS,
    T_INVOKE,
    T_RESULT,
    Message,
    MsgType,
    encode,
)
from ..serializers import _classes
from ..uri import URI
from . import meta as metamod
from .connection import Connection
from .streams import StreamRegistry, close_iterator

__all__ = ["Daemon", "DaemonObject", "DAEMON_NAME", "EMBER_CAPS", "DENY_ANNOTATION"]

log = logging.getLogger("ember.server.daemon")
DAEMON_NAME = "Pyro.Daemon"
_CAPS_VALUE = b"1"
_MARSHAL_ID = 2
_ITER_EXCLUDED = (str, bytes, bytearray, dict, list, tuple, set, frozenset)
_PLAIN = frozenset({int, float, str, bytes, bool, type(None), list, tuple, dict, set, frozenset, complex})


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def _is_iterator(value: Any) -> bool:
    """True for iterators and generators (callers skip the plain types first: the cheap test)."""
    return isinstance(value, collections.abc.Iterator) and not isinstance(value, _ITER_EXCLUDED)


class DaemonObject:
    """The daemon's own remote object, registered as ``Pyro.Daemon``."""

    def __init__(self, daemon: Daemon) -> None:
        self._daemon = daemon

    def ping(self) -> None:
        """Answer, to show the daemon is alive."""

    def registered(self) -> list[str]:
        """All object ids registered in this daemon."""
        return list(self._daemon.objects_by_id)

    def info(self) -> str:
        """A one-line description of the daemon."""
        d = self._daemon
        return (
            f"{DAEMON_NAME} bound on {d.location}, NAT {d.nat_location}, {len(d.objects_by_id)} objects registered. "
            f"Servertype: {d.server_description}"
        )

    def get_metadata(self, objectId: str) -> dict:  # noqa: N803 - Pyro5's parameter name
        """The methods, oneway methods and attributes of a registered object."""
        return self._daemon.metadata_for(objectId).as_dict()

    def get_next_stream_item(self, streamId: str) -> Any:  # noqa: N803
        """The next item of a streamed iterator; StopIteration at its end."""
        return self._daemon.streams.next_item(streamId, context.get().client)

    def close_stream(self, streamId: str) -> None:  # noqa: N803
        """Forget a stream the client stopped reading."""
        self._daemon.streams.close(streamId)


for _name in ("ping", "registered", "info", "get_metadata", "get_next_stream_item", "close_stream"):
    getattr(DaemonObject, _name)._pyroExposed = True


class Daemon:
    """Serves registered objects to clients.

    >>> with ember.Daemon() as daemon:           # 127.0.0.1, port chosen by the OS
    ...     uri = daemon.register(Calc, "calc")  # PYRO:calc@127.0.0.1:<port>
    ...     daemon.request_loop()

    ``servertype`` is ``"thread"`` (a worker thread per connection, pooled, the default),
    ``"multiplex"`` (one thread serves every connection) or ``"asyncio"`` (one event loop;
    ``async def`` methods are awaited on it, plain ones run in worker threads). ``connected_socket`` serves one
    already-connected socket (e.g. from ``socket.socketpair()``) without a handshake.

    ``port_range`` > 1 tries ``port``, ``port+1``, ... when the port is taken.
    ``nathost``/``natport`` publish an external address in URIs (``natport=0``: the
    internal port); ``publish_hostname=True`` puts the host name in URIs instead of the
    IP address (the name the daemon was given, or this machine's name when it was given an
    IP address). ``ssl_context`` (or config ``SSL``) serves TLS; ``max_connections`` caps
    the open connections (more are denied as too busy); ``transient_max_age`` unregisters
    objects registered without an id once unused that many seconds (calling their
    ``_reaped()`` if they have one).

    ``ns`` publishes names in a name server: a proxy to it, its URI, or True to find it
    with :func:`~ember.locate_ns`. Then ``register(obj, "name")`` also registers ``name``
    there (``ns_name=`` picks another name, ``metadata=`` adds tags), ``unregister``
    removes it, and :meth:`shutdown` removes every published name unless
    ``ns_unregister=False``.
    """

    def __init__(
        self,
        host: str | None = None,
        port: int = 0,
        unixsocket: str | None = None,
        servertype: str | None = None,
        nathost: str | None = None,
        natport: int | None = None,
        connected_socket: Any = None,
        config: Config | None = None,
        ns: Any = None,
        ns_unregister: bool = True,
        ssl_context: Any = None,
        max_connections: int | None = None,
        transient_max_age: float | None = None,
        port_range: int = 1,
        publish_hostname: bool = False,
        mobile_code: Callable[[str, str, Any], bool] | None = None,
    ) -> None:
        from . import multiplex, threadpool

        self.config = config or global_config
        cfg = self.config
        self.objects_by_id: dict[str, Any] = {}
        self._single_instances: dict[type, Any] = {}
        self._single_lock = threading.Lock()
        self.streams = StreamRegistry(cfg.ITER_STREAM_LIFETIME, cfg.ITER_STREAM_LINGER)
        self.methodcall_error_handler: Callable[[Any, str, BaseException], None] | None = None
        self._oneway_pool: ThreadPoolExecutor | None = None
        self._resolved: dict[tuple[str, str], tuple[Any, Callable]] = {}  # (object id, method) -> (obj, func)
        self._resolved_gen = metamod.generation
        self._connectok_cache: dict[tuple, bytes] = {}
        self._aio_loop: asyncio.AbstractEventLoop | None = None  # set by the asyncio server
        self._aio_thread: threading.Thread | None = None
        self._oneway_lock = threading.Lock()
        self._last_housekeeping = time.monotonic()
        self._closed = False
        if ssl_context is None and cfg.SSL and connected_socket is None:
            from ..tls import server_context

            ssl_context = server_context(cfg)
        self.ssl_context = ssl_context
        self.max_connections = max_connections
        self._active_connections = 0
        self._count_lock = threading.Lock()
        self.transient_max_age = transient_max_age
        # generated object id -> last use (monotonic); only kept when transient reaping is on
        self._transient_use: dict[str, float] | None = {} if transient_max_age else None
        self.servertype = servertype or cfg.SERVERTYPE
        if self.servertype not in ("thread", "multiplex", "asyncio"):
            raise ValueError(f"unknown servertype {self.servertype!r}; use 'thread', 'multiplex' or 'asyncio'")
        self.nathost = nathost if nathost is not None else cfg.NATHOST
        self.natport = natport if natport is not None else cfg.NATPORT
        if connected_socket is not None:
            self.server: Any = multiplex.MultiplexServer(self, connected_socket=connected_socket)
            self.host, self.port, self.unixsocket = None, None, None
            self.servertype = "connected-socket"
        else:
            from .. import net

            listener = net.create_server(host or cfg.HOST, port, unixsocket, reuse=cfg.SOCK_REUSE, port_range=port_range)
            if self.servertype == "asyncio":
                from .aio import AsyncioServer

                loop_class: Any = AsyncioServer
            else:
                loop_class = multiplex.MultiplexServer if self.servertype == "multiplex" else threadpool.ThreadPoolServer
            try:
                self.server = loop_class(self, listener)
            except BaseException:
                net.close_quietly(listener)
                raise
            self.host, self.port, self.unixsocket = self.server.location
        self._published_host = self.host
        if publish_hostname and self.host is not None:
            given = host or cfg.HOST
            self._published_host = given if not _is_ip_literal(given) else socket.getfqdn()
        if self.natport == 0 and self.nathost is not None:
            self.natport = self.port
        self._loop_thread: threading.Thread | None = None
        self._has_annotations_hook = type(self).annotations is not Daemon.annotations
        self._ns: Any = None
        self._ns_spec: Any = None
        self._ns_unregister = ns_unregister
        self._ns_names: dict[str, str] = {}  # object id -> name published in the name server
        self.register(DaemonObject(self), DAEMON_NAME)
        if mobile_code is not None or cfg.MOBILE_CODE:
            self._enable_mobile_code(mobile_code)
        if ns is not None and ns is not False:
            self.use_name_server(ns, ns_unregister)

    # ---- locations -------------------------------------------------------------------

    @property
    def location(self) -> str:
        """Where the daemon listens: ``host:port`` or ``./u:path``."""
        if self.unixsocket is not None:
            return "./u:" + self.unixsocket
        if self.host is None:
            return "./u:connected-socket"  # placeholder: this daemon has no address
        host = self._published_host or self.host
        host = f"[{host}]" if ":" in host else host
        return f"{host}:{self.port}"

    @property
    def nat_location(self) -> str | None:
        """The published external location, or None without NAT."""
        if self.nathost is None:
            return None
        host = f"[{self.nathost}]" if ":" in self.nathost else self.nathost
        return f"{host}:{self.natport}"

    @property
    def server_description(self) -> str:
        return self.server.description

    @property
    def sockets(self) -> list:
        """The daemon's listening socket(s), for a foreign ``select`` loop (see :meth:`events`)."""
        return self.server.sockets

    # ---- registry ------------------------------------------------------------------------

    def _enable_mobile_code(self, validator: Callable[[str, str, Any], bool] | None) -> None:
        from ..mobile import MOBILE_CODE_NAME, MobileCodeReceiver

        if not callable(validator):
            self.shutdown()
            raise SecurityError("mobile code needs a validator: Daemon(mobile_code=validator) where "
                                "validator(module_name, source, client_address) returns True to accept")
        self.register(MobileCodeReceiver(validator), MOBILE_CODE_NAME)
        log.warning("mobile code is enabled on %s: clients may run validated code in this process", self.location)

    def use_name_server(self, ns: Any = True, unregister: bool = True) -> None:
        """Publish registered names in a name server (see the class docstring for ``ns``)."""
        self._ns_spec = ns
        self._ns_unregister = unregister

    @property
    def ns(self) -> Any:
        """The proxy to the name server this daemon publishes in (connected on first use), or None."""
        if self._ns is None and self._ns_spec is not None:
            from ..client import Proxy
            from ..naming import locate_ns

            spec = self._ns_spec
            self._ns = locate_ns() if spec is True else spec if isinstance(spec, Proxy) else Proxy(spec)
        return self._ns

    def register(self, obj_or_class: Any, object_id: str | None = None, force: bool = False, *,
                 ns_name: str | None = None, metadata: Any = None) -> URI:
        """Register an object (or a class, instantiated per its ``@behavior``) and return its URI.

        A fixed ``object_id`` keeps the URI stable across restarts; without one a random
        ``obj_<hex>`` id is generated. On a daemon with a name server (``ns=``) the
        object id, or ``ns_name`` if given, is also registered there with ``metadata``;
        if that fails the object is unregistered again and the error raised.
        """
        explicit_id = object_id
        uri = self._register(obj_or_class, object_id, force)
        name = ns_name if ns_name is not None else explicit_id
        if name is not None and (ns_name is not None or self._ns_spec is not None):
            if self._ns_spec is None:
                self.unregister(uri.object)
                raise DaemonError(f"cannot publish {name!r}: this daemon has no name server (pass Daemon(ns=...))")
            try:
                self.ns.register(name, uri, metadata=metadata)
            except BaseException:
                self.unregister(uri.object)
                raise
            self._ns_names[uri.object] = name
        return uri

    def _register(self, obj_or_class: Any, object_id: str | None, force: bool) -> URI:
        # the registration marks live in the object's (or class's) own __dict__: an
        # instance of a registered class is not itself registered
        own = getattr(obj_or_class, "__dict__", {})
        generated = object_id is None
        if object_id is None:
            object_id = own.get("_pyroId") if not force else None
            if not object_id or object_id in self.objects_by_id:
                object_id = "obj_" + uuid.uuid4().hex
        if not isinstance(object_id, str) or not object_id or any(c.isspace() for c in object_id):
            raise DaemonError(f"invalid object id {object_id!r}: must be a non-empty string without whitespace")
        if not force:
            if object_id in self.objects_by_id:
                raise DaemonError(f"object id {object_id!r} is already registered")
            if own.get("_pyroDaemon") is self and self.objects_by_id.get(own.get("_pyroId")) is obj_or_class:
                raise DaemonError(f"object already registered as {own['_pyroId']!r}")
        try:
            obj_or_class._pyroId = object_id
            obj_or_class._pyroDaemon = self
        except (AttributeError, TypeError):
            pass  # objects with __slots__: no auto-proxying, otherwise fine
        self.objects_by_id[object_id] = obj_or_class
        self._resolved.clear()
        if self._transient_use is not None and generated:
            self._transient_use[object_id] = time.monotonic()
        return self.uri_for(object_id)

    def unregister(self, obj_or_id: Any) -> None:
        """Remove an object (by object, class or id). ``Pyro.Daemon`` cannot be removed."""
        object_id = obj_or_id if isinstance(obj_or_id, str) else getattr(obj_or_id, "_pyroId", None)
        if object_id is None or object_id == DAEMON_NAME:
            return
        name = self._ns_names.pop(object_id, None)
        if name is not None:
            self._unpublish([name])
        if self._transient_use is not None:
            self._transient_use.pop(object_id, None)
        obj = self.objects_by_id.pop(object_id, None)
        self._resolved.clear()
        if obj is not None and getattr(obj, "_pyroDaemon", None) is self:
            try:
                del obj._pyroDaemon
                del obj._pyroId
            except AttributeError:
                pass

    def _unpublish(self, names: list[str]) -> None:
        try:
            for name in names:
                self.ns.remove(name)
        except PyroError as exc:
            log.warning("could not remove %s from the name server: %s", ", ".join(names), exc)

    def uri_for(self, obj_or_id: Any, nat: bool = True) -> URI:
        """The ``PYRO:`` URI of a registered object (with the NAT address unless ``nat=False``)."""
        object_id = obj_or_id if isinstance(obj_or_id, str) else getattr(obj_or_id, "_pyroId", None)
        if object_id is None or object_id not in self.objects_by_id:
            raise DaemonError(f"object not registered: {obj_or_id!r}")
        loc = self.nat_location if (nat and self.nathost is not None) else self.location
        return URI(f"PYRO:{object_id}@{loc}")

    def proxy_for(self, obj_or_id: Any, nat: bool = True) -> Any:
        """A :class:`~ember.Proxy` for a registered object."""
        from ..client import Proxy

        return Proxy(self.uri_for(obj_or_id, nat))

    def metadata_for(self, object_id: str) -> metamod.ClassMeta:
        try:
            obj = self.objects_by_id[object_id]
        except (KeyError, TypeError):
            raise DaemonError("unknown object") from None
        return metamod.class_meta(obj if isinstance(obj, type) else type(obj))

    def _instance(self, object_id: str, conn: Connection) -> Any:
        try:
            obj = self.objects_by_id[object_id]
        except (KeyError, TypeError):
            raise DaemonError("unknown object") from None
        transient = self._transient_use
        if transient is not None and object_id in transient:
            transient[object_id] = time.monotonic()
        if not isinstance(obj, type):
            return obj
        mode, creator = getattr(obj, "_pyroInstancing", ("session", None))
        if mode == "session":
            inst = conn.instances.get(obj)
            if inst is None:
                inst = conn.instances[obj] = self._create(obj, creator, object_id)
            return inst
        if mode == "single":
            inst = self._single_instances.get(obj)
            if inst is None:
                with self._single_lock:
                    inst = self._single_instances.get(obj)
                    if inst is None:
                        inst = self._single_instances[obj] = self._create(obj, creator, object_id)
            return inst
        return self._create(obj, creator, object_id)

    def _create(self, cls: type, creator: Callable | None, object_id: str) -> Any:
        inst = creator(cls) if creator is not None else cls()
        try:
            inst._pyroId = object_id
            inst._pyroDaemon = self
        except (AttributeError, TypeError):
            pass
        return inst

    # ---- overridable hooks -------------------------------------------------------------

    def validate_handshake(self, conn: Connection, data: Any) -> Any:
        """Accept a connection (return the value sent back to the proxy) or refuse it by raising.

        The default accepts everyone and answers ``"hello"``. Override it to authenticate
        clients with the proxy's ``_handshake`` data.
        """
        return "hello"

    def accept(self, client_address: Any) -> tuple[int, str] | None:
        """Admission hook, asked once per new connection: None admits it; a pair
        ``(deny_code, reason)`` refuses it (codes ``errors.DENY_*``), and the client gets a
        :class:`~ember.errors.ConnectionDeniedError` with that code and reason.

        Override it, or assign a function to ``daemon.accept``.
        """
        return None

    def init_connection(self, conn: Connection) -> None:
        """Called once per connection, after the handshake succeeded and before the first
        call: set up per-connection state in ``conn.storage`` (reachable in methods as
        ``current_context.storage``). Raising refuses the connection."""

    def client_disconnect(self, conn: Connection) -> None:
        """Called after a client connection has closed."""

    def annotations(self) -> dict[str, bytes]:
        """Annotations added to every reply (override to add your own)."""
        return {}

    def housekeeping(self) -> None:
        """Called periodically from the server loop (override to add periodic work)."""

    # ---- dispatch (I/O-free) -----------------------------------------------------------

    def dispatch(self, conn: Connection, msg: Message) -> Message | None:
        """Handle one received message and return the reply, or None when there is none.

        Sets ``conn.must_close`` when the connection has to be closed after the reply.
        """
        mtype = msg.type
        if mtype == T_INVOKE:
            return self._invoke(conn, msg)
        if mtype == MsgType.PING:
            return Message(MsgType.PING, msg.serializer_id, 0, msg.seq, b"pong", correlation_id=msg.correlation_id)
        if mtype == MsgType.CONNECT:
            return self._handshake(conn, msg)
        conn.must_close = True
        return None

    def encode(self, reply: Message) -> Any:
        """Encode a reply with this daemon's compression and size settings (bytes, or
        ``[header, payload]`` for a large payload: see :func:`ember.protocol.encode`)."""
        return encode(reply, self.config.COMPRESSION, self.config.MAX_MESSAGE_SIZE, parts=True)

    def connection_failed(self, conn: Connection, exc: Exception) -> Message | None:
        """The peer sent bytes that are not a valid message: log, and during the handshake
        return a CONNECTFAIL (marshal-encoded, as Pyro5) to tell it why."""
        log.warning("closing connection from %s: %s", conn.addr, exc)
        conn.must_close = True
        if conn.established:
            return None
        reason = str(exc)
        return Message(MsgType.CONNECTFAIL, _MARSHAL_ID, 0, 0, serializers.by_id(_MARSHAL_ID).dumps(reason))

    def _handshake(self, conn: Connection, msg: Message) -> Message | None:
        try:
            ser = serializers.by_id(msg.serializer_id)
        except SerializeError:
            log.warning("closing connection from %s: unknown serializer id %d", conn.addr, msg.serializer_id)
            conn.must_close = True
            return None
        ctx = context.get()
        self._set_context(ctx, conn, msg)
        extended = msg.annotations.get(EMBER_CAPS) == _CAPS_VALUE
        denial = self._admission(conn)
        if denial is not None:
            return self._deny(conn, msg, ser, *denial)
        try:
            data = ser.loads(msg.data)
            if not isinstance(data, dict):
                raise DaemonError("invalid handshake: expected a mapping")
            handshake = data.get("handshake")
            object_id = data["object"]
            conn.handshake = handshake
            class_meta = self.metadata_for(object_id)
        except Exception as exc:
            return self._refuse(conn, msg, ser, str(exc))
        try:
            answer = self.validate_handshake(conn, handshake)
            self.init_connection(conn)
        except Exception as exc:
            code = DENY_SECURITY if isinstance(exc, SecurityError) else DENY_UNSPECIFIED
            return self._deny(conn, msg, ser, code, str(exc) or type(exc).__name__)
        # the CONNECTOK payload is the same for every client of a class when the answer is a plain string
        key = (class_meta, msg.serializer_id, extended, answer) if answer is None or type(answer) is str else None
        payload = self._connectok_cache.get(key) if key is not None else None
        if payload is None:
            try:
                payload = serializers.by_id(msg.serializer_id, extended).dumps(
                    {"handshake": answer, "meta": class_meta.as_dict()})
            except Exception as exc:
                return self._refuse(conn, msg, ser, f"handshake answer cannot be serialized: {exc}")
            if key is not None:
                if len(self._connectok_cache) > 256:
                    self._connectok_cache.clear()
                self._connectok_cache[key] = payload
        conn.establish(extended)
        ann = self.annotations()
        if extended:
            ann = dict(ann)
            ann[EMBER_CAPS] = _CAPS_VALUE
            if self.servertype == "asyncio" and msg.annotations.get(MULTIPLEX_CAPS) == _CAPS_VALUE:
                ann[MULTIPLEX_CAPS] = _CAPS_VALUE  # calls on this connection may overlap
        return Message(MsgType.CONNECTOK, msg.serializer_id, 0, msg.seq, payload, ann, msg.correlation_id)

    def _admission(self, conn: Connection) -> tuple[int, str] | None:
        limit = self.max_connections
        if limit is not None and self._active_connections > limit:
            return DENY_BUSY, f"too many connections (this daemon allows {limit})"
        try:
            verdict = self.accept(conn.addr)
        except Exception as exc:
            log.exception("admission hook failed for %s", conn.addr)
            return DENY_UNSPECIFIED, f"admission check failed: {exc}"
        if verdict is None:
            return None
        try:
            code, reason = verdict
            return int(code), str(reason)
        except (TypeError, ValueError):
            return DENY_UNSPECIFIED, str(verdict)

    def _refuse(self, conn: Connection, msg: Message, ser: Any, reason: str,
                extra: dict[str, bytes] | None = None) -> Message:
        """A CONNECTFAIL carrying ``reason``; the connection closes after it."""
        log.info("refused connection from %s: %s", conn.addr, reason)
        conn.must_close = True
        try:
            payload = ser.dumps(reason)
        except SerializeError:
            payload = ser.dumps("connection refused")
        ann = self.annotations()
        if extra:
            ann = dict(ann, **extra)
        return Message(MsgType.CONNECTFAIL, msg.serializer_id, 0, msg.seq, payload, ann, msg.correlation_id)

    def _deny(self, conn: Connection, msg: Message, ser: Any, code: int, reason: str) -> Message:
        log.warning("denied connection from %s (%s): %s", conn.addr, DENY_NAMES.get(code, code), reason)
        text = f"connection denied ({DENY_NAMES.get(code, 'unspecified')}): {reason}"
        return self._refuse(conn, msg, ser, text, {DENY_ANNOTATION: str(code).encode()})

    @staticmethod
    def _set_context(ctx: context.CallContext, conn: Connection, msg: Message) -> None:
        ctx.client = conn
        ctx.client_sock_addr = conn.addr
        ctx.seq = msg.seq
        ctx.msg_flags = msg.flags
        ctx.serializer_id = msg.serializer_id
        ctx.annotations = msg.annotations
        ctx.response_annotations = {}
        ctx.correlation_id = msg.correlation_id

    def _invoke(self, conn: Connection, msg: Message) -> Message | None:
        prepared = self._prepare(conn, msg, None)
        if type(prepared) is not tuple:
            return prepared
        ser, ctx, obj, method, func, args, kwargs = prepared
        oneway = msg.flags & F_ONEWAY
        if func is None:
            return self._batch(conn, msg, ser, obj, args, oneway)
        if oneway:
            self._run_oneway(func, args, kwargs, method, conn, ctx)
            return None
        try:
            result = func(*args, **kwargs) if kwargs is not None else func(*args)
            if type(result) is types.CoroutineType:
                result = self.await_coroutine(result)
        except Exception as exc:
            return self._call_failed(conn, msg, ser, obj, method, exc)
        return self._complete(conn, msg, ser, ctx, result)

    def _prepare(self, conn: Connection, msg: Message, ctx: context.CallContext | None) -> Any:
        """Decode an INVOKE and find what to call.

        Returns ``(serializer, ctx, obj, method, func, args, kwargs)`` — ``func`` is None
        for a batch, whose calls are in ``args`` — or, when there is nothing to call, the
        reply to send (None for none). ``ctx`` None means this thread's/task's context;
        the asyncio server passes a fresh one per call.
        """
        try:
            ser = serializers.by_id(msg.serializer_id, conn.extended)
        except SerializeError as exc:
            log.warning("closing connection from %s: %s", conn.addr, exc)
            conn.must_close = True
            return None
        if ctx is None:
            ctx = context.get()
        self._set_context(ctx, conn, msg)
        flags = msg.flags
        method = "?"
        obj = None
        try:
            if flags & F_KEEPSERIALIZED:
                info, object_id, method = parse_blob_annotation(msg.annotations.get(BLOB_ANNOTATION))
                args, kwargs = (SerializedBlob(info, msg.data, True, msg.serializer_id),), None
            else:
                object_id, method, args, kwargs = ser.loads_call(msg.data)
                if not flags & F_BATCH:
                    # registered instances: the exposure checks were done once for this (object, method)
                    cached = self._resolved.get((object_id, method))
                    if cached is not None and self._resolved_gen == metamod.generation:
                        transient = self._transient_use
                        if transient is not None and object_id in transient:
                            transient[object_id] = time.monotonic()
                        return ser, ctx, cached[0], method, cached[1], args, kwargs
            obj = self._instance(object_id, conn)
            if flags & F_BATCH:
                return ser, ctx, obj, method, None, args, None
            func = self._resolve(obj, method)
            if not isinstance(self.objects_by_id.get(object_id), type):
                if self._resolved_gen != metamod.generation:
                    self._resolved.clear()
                    self._resolved_gen = metamod.generation
                self._resolved[(object_id, method)] = (obj, func)
            return ser, ctx, obj, method, func, args, kwargs
        except Exception as exc:
            if flags & F_ONEWAY:
                self._report_error(conn, method, exc)
                return None
            return self._call_failed(conn, msg, ser, obj, method, exc)

    def _call_failed(self, conn: Connection, msg: Message, ser: Any, obj: Any, method: str,
                     exc: BaseException) -> Message:
        if obj is not None:
            self._maybe_callback_error(obj, method, conn, exc)
        return self._exception_reply(msg, ser, exc)

    def _complete(self, conn: Connection, msg: Message, ser: Any, ctx: context.CallContext, result: Any) -> Message:
        """The RESULT for a method's return value (a stream for iterators and async generators)."""
        if type(result) not in _PLAIN:
            if _is_iterator(result):
                return self._stream_reply(conn, msg, ser, result)
            if type(result) is types.AsyncGeneratorType:
                return self._stream_reply(conn, msg, ser, _SyncIterator(result, self))
        try:
            data = ser.dumps(result)
        except Exception as exc:
            return self._exception_reply(msg, ser, exc)
        ann = ctx.response_annotations
        if self._has_annotations_hook:
            hook = self.annotations()
            if hook:
                ann = dict(hook, **ann)
        return Message(T_RESULT, msg.serializer_id, 0, msg.seq, data, ann, msg.correlation_id)

    def await_coroutine(self, coro: Any) -> Any:
        """Run a coroutine a method returned, from a worker thread: on the daemon's event
        loop for the asyncio server, else on a private loop."""
        loop = self._aio_loop
        if loop is not None and loop.is_running():
            if threading.current_thread() is self._aio_thread:
                coro.close()
                raise DaemonError("cannot wait for a coroutine on the daemon's own event loop thread")
            return asyncio.run_coroutine_threadsafe(coro, loop).result()
        return asyncio.run(coro)

    def _resolve(self, obj: Any, method: str) -> Callable:
        """The callable for ``method`` on ``obj``, after the exposure checks."""
        meta = metamod.class_meta(obj if isinstance(obj, type) else type(obj))
        if method in meta.methods:
            if meta.synchronized:
                return _synchronized(obj, getattr(obj, method))
            return getattr(obj, method)
        if method == "__getattr__" or method == "__setattr__":
            access = self._attribute_access(obj, meta, method)
            return _synchronized(obj, access) if meta.synchronized else access
        if metamod.is_private(method):
            raise AttributeError(f"attempt to access private attribute {method!r}")
        if hasattr(obj, method):
            raise AttributeError(f"attempt to access unexposed attribute {method!r}")
        raise AttributeError(f"remote object has no attribute {method!r}")

    @staticmethod
    def _attribute_access(obj: Any, meta: metamod.ClassMeta, method: str) -> Callable:
        if method == "__getattr__":

            def get(name: str) -> Any:
                if name not in meta.attrs:
                    raise AttributeError(f"attempt to access unexposed or unknown attribute {name!r}")
                return getattr(obj, name)

            return get

        def set_(name: str, value: Any) -> None:
            if name not in meta.attrs:
                raise AttributeError(f"attempt to access unexposed or unknown attribute {name!r}")
            setattr(obj, name, value)

        return set_

    def _batch(self, conn: Connection, msg: Message, ser: Any, obj: Any, calls: Any, oneway: int) -> Message | None:
        results: list[Any] = []
        append = results.append
        funcs: dict[str, Callable] = {}
        for call in calls:
            try:
                if len(call) == 2:  # Ember clients leave out empty kwargs
                    name, args = call
                    kwargs = None
                else:
                    name, args, kwargs = call
                func = funcs.get(name)
                if func is None:
                    func = funcs[name] = self._resolve(obj, name)
                result = func(*args, **kwargs) if kwargs else func(*args)
                if type(result) not in _PLAIN:
                    if type(result) is types.CoroutineType:
                        result = self.await_coroutine(result)
                    if _is_iterator(result):
                        result = list(result)  # generators inside a batch are not streamed
                append(result)
            except Exception as exc:
                if oneway:
                    self._report_error(conn, str(call[0]) if call else "?", exc)
                    return None
                exc._pyroTraceback = format_traceback(type(exc), exc, exc.__traceback__, self.config.DETAILED_TRACEBACK)
                append(_classes.ExceptionWrapper(exc))
                break
        if oneway:
            return None
        try:
            data = ser.dumps(results)
        except Exception as exc:
            return self._exception_reply(msg, ser, exc)
        return Message(MsgType.RESULT, msg.serializer_id, F_BATCH, msg.seq, data, self.annotations(), msg.correlation_id)

    def _stream_reply(self, conn: Connection, msg: Message, ser: Any, iterator: Any) -> Message:
        ann = dict(self.annotations())
        if self.config.ITER_STREAMING:
            ann["STRM"] = self.streams.add(iterator, conn).encode("ascii")
        else:
            close_iterator(iterator)
        # the marker exception Pyro5 sends so that clients without streaming fail loudly
        data = ser.dumps({"__class__": "Pyro5.errors.ProtocolError", "__exception__": True,
                          "args": ("result of call is an iterator",), "attributes": {"_pyroTraceback": None}})
        return Message(MsgType.RESULT, msg.serializer_id, F_EXCEPTION | F_ITEMSTREAM, msg.seq, data, ann,
                       msg.correlation_id)

    def _exception_reply(self, msg: Message, ser: Any, exc: BaseException) -> Message:
        if not isinstance(exc, StopIteration):
            log.debug("call failed with %s: %s", type(exc).__name__, exc)
        exc._pyroTraceback = format_traceback(type(exc), exc, exc.__traceback__, self.config.DETAILED_TRACEBACK)
        try:
            data = ser.dumps(exc)
        except Exception as ser_exc:
            fallback = PyroError(
                f"Error serializing exception: {ser_exc}. Original exception: {type(exc).__name__}: {exc}"
            )
            fallback._pyroTraceback = exc._pyroTraceback  # type: ignore[attr-defined]
            data = ser.dumps(fallback)
        return Message(MsgType.RESULT, msg.serializer_id, F_EXCEPTION, msg.seq, data, self.annotations(),
                       msg.correlation_id)

    def _run_oneway(self, func: Callable, args: Any, kwargs: Any, method: str, conn: Connection,
                    ctx: context.CallContext) -> None:
        def call() -> None:
            try:
                result = func(*args, **(kwargs or {}))
                if type(result) is types.CoroutineType:
                    self.await_coroutine(result)
            except Exception as exc:
                self._report_error(conn, method, exc)

        if not self.config.ONEWAY_THREADED:
            call()
            return
        call_ctx = ctx.copy()

        def run() -> None:
            context.set_context(call_ctx)
            call()

        pool = self._oneway_pool
        if pool is None:
            with self._oneway_lock:
                if self._oneway_pool is None:
                    self._oneway_pool = ThreadPoolExecutor(
                        max_workers=max(4, self.config.THREADPOOL_SIZE), thread_name_prefix="ember-oneway"
                    )
                pool = self._oneway_pool
        pool.submit(run)

    def _report_error(self, conn: Connection, method: str, exc: BaseException, what: str = "oneway call") -> None:
        """Hand an exception no caller will see to ``methodcall_error_handler`` (or the log)."""
        handler = self.methodcall_error_handler
        if handler is not None:
            try:
                handler(conn, method, exc)
            except Exception:
                log.exception("methodcall_error_handler failed")
        else:
            log.warning("exception in %s %s: %s: %s", what, method, type(exc).__name__, exc)

    def _maybe_callback_error(self, obj: Any, method: str, conn: Connection, exc: BaseException) -> None:
        if obj is None:
            return
        meta = metamod.class_meta(obj if isinstance(obj, type) else type(obj))
        if method in meta.callbacks:
            self._report_error(conn, method, exc, "callback")

    # ---- connection lifecycle (called by the server loops) ------------------------------

    def new_connection(self, sock: Any, addr: Any, established: bool = False, owns_socket: bool = True,
                       blocking: bool = True) -> Connection:
        cfg = self.config
        timeout = cfg.COMMTIMEOUT or None
        if self.ssl_context is not None and not established:
            sock = self.ssl_context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        sock.settimeout(timeout if blocking else 0.0)
        conn = Connection(sock, addr, cfg.MAX_MESSAGE_SIZE, cfg.MAX_ANNOTATIONS_SIZE, established, owns_socket)
        conn._timeout = timeout
        self.connection_opened(conn)
        return conn

    def connection_opened(self, conn: Connection) -> None:
        """Count a new connection (server loops call it for every accepted client)."""
        with self._count_lock:
            self._active_connections += 1

    def connection_closed(self, conn: Connection) -> None:
        """Release everything tied to a connection that went away (once per connection)."""
        with self._count_lock:
            if conn.released:
                return
            conn.released = True
            self._active_connections -= 1
        conn.close()
        self.streams.connection_closed(conn)
        for resource in list(conn.tracked_resources):
            try:
                resource.close()
            except Exception:
                log.exception("error closing tracked resource %r", resource)
        conn.tracked_resources.clear()
        conn.instances.clear()
        try:
            self.client_disconnect(conn)
        except Exception:
            log.exception("client_disconnect hook failed")

    def periodic(self) -> None:
        """Housekeeping the loops call about every ``POLLTIMEOUT`` seconds."""
        now = time.monotonic()
        if now - self._last_housekeeping < min(self.config.POLLTIMEOUT, 2.0):
            return
        self._last_housekeeping = now
        self.streams.expire()
        if self._transient_use:
            self._reap_transients(now)
        try:
            self.housekeeping()
        except Exception:
            log.exception("housekeeping hook failed")

    def _reap_transients(self, now: float) -> None:
        """Unregister objects with generated ids unused for ``transient_max_age`` seconds."""
        age = self.transient_max_age or 0.0
        assert self._transient_use is not None
        idle = [oid for oid, used in list(self._transient_use.items()) if now - used > age]
        for object_id in idle:
            obj = self.objects_by_id.get(object_id)
            self.unregister(object_id)
            hook = getattr(obj, "_reaped", None)
            if callable(hook):
                try:
                    hook()
                except Exception:
                    log.exception("_reaped hook of %r failed", obj)
        if idle:
            log.debug("reaped %d idle transient object(s)", len(idle))

    # ---- running -----------------------------------------------------------------------

    async def serve_async(self) -> None:
        """Serve on the running event loop until :meth:`shutdown` (``servertype="asyncio"`` only)."""
        if self.servertype != "asyncio":
            raise DaemonError("serve_async() needs Daemon(servertype='asyncio')")
        await self.server.serve()

    def request_loop(self, loop_condition: Callable[[], bool] = lambda: True) -> None:
        """Serve until :meth:`shutdown` is called or ``loop_condition()`` returns False.

        The condition is checked at least every ``POLLTIMEOUT`` seconds.
        """
        self.server.loop(loop_condition)

    def handle_requests(self, timeout: float = 0.0) -> None:
        """One pass of the server loop (for a foreign event loop): waits at most ``timeout``."""
        self.server.poll_once(timeout)

    def events(self, ready_sockets: list) -> None:
        """Handle the daemon sockets that a foreign ``select`` reported readable."""
        self.server.events(ready_sockets)

    def start(self) -> threading.Thread:
        """Run :meth:`request_loop` in a background thread (stopped by :meth:`shutdown`)."""
        if self._loop_thread is None or not self._loop_thread.is_alive():
            self._loop_thread = threading.Thread(target=self.request_loop, name=f"ember-daemon-{self.location}",
                                                 daemon=True)
            self._loop_thread.start()
        return self._loop_thread

    def shutdown(self) -> None:
        """Stop serving and close every connection and the listening socket. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._ns_names and self._ns_unregister:
            names, self._ns_names = list(self._ns_names.values()), {}
            self._unpublish(names)
        if self._ns is not None and self._ns is not self._ns_spec:
            self._ns._release()
        self.server.shutdown()
        thread = self._loop_thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)
        self.streams.clear()
        if self._oneway_pool is not None:
            self._oneway_pool.shutdown(wait=False)

    close = shutdown

    def __enter__(self) -> Daemon:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    def __repr__(self) -> str:
        return f"<ember.Daemon {self.location} {self.servertype} {len(self.objects_by_id)} objects>"


class _SyncIterator:
    """A plain iterator over an async generator, so it can be streamed like any other."""

    def __init__(self, agen: Any, daemon: Daemon) -> None:
        self.agen = agen
        self.daemon = daemon

    def __iter__(self) -> _SyncIterator:
        return self

    def __next__(self) -> Any:
        try:
            return self.daemon.await_coroutine(self.agen.__anext__())
        except StopAsyncIteration:
            raise StopIteration from None

    def close(self) -> None:
        self.daemon.await_coroutine(self.agen.aclose())


_sync_locks_guard = threading.Lock()


def _synchronized(obj: Any, func: Callable) -> Callable:
    """``func`` run under the object's own lock (``@behavior(synchronized=True)``)."""
    lock = getattr(obj, "__dict__", {}).get("_pyroLock")
    if lock is None:
        with _sync_locks_guard:
            lock = obj.__dict__.get("_pyroLock")
            if lock is None:
                lock = obj.__dict__["_pyroLock"] = threading.RLock()

    def call(*args: Any, **kwargs: Any) -> Any:
        with lock:
            return func(*args, **kwargs)

    return call


def _autoproxy(obj: Any) -> dict | None:
    """Objects registered in a daemon travel as proxies to themselves."""
    daemon = getattr(obj, "_pyroDaemon", None)
    if not isinstance(daemon, Daemon) or isinstance(obj, (type, types.FunctionType)):
        return None
    object_id = getattr(obj, "_pyroId", None)
    if daemon.objects_by_id.get(object_id) is not obj:
        return None
    meta = metamod.class_meta(type(obj))
    uri = daemon.uri_for(object_id)
    return {
        "__class__": "Pyro5.client.Proxy",
        "state": (str(uri), tuple(meta.oneway), tuple(meta.methods), tuple(meta.attrs), "hello", None),
    }


_classes.autoproxy_hook = _autoproxy
