"""The Daemon: the facade users serve objects with.

It puts the parts together: a :class:`~.registry.Registry` of objects, a
:class:`~.dispatch.Dispatcher` that owns every call rule, a server driver (looked up by
name in :mod:`.drivers`) that moves the bytes, a name publisher, and the daemon's own
``Pyro.Daemon`` object. Its overridable methods (``validate_handshake``, ``accept``,
``init_connection``, ``client_disconnect``, ``annotations``, ``housekeeping``) are the
hooks of earlier releases; :meth:`Daemon.add_hook` adds call hooks on top.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import ssl
import threading
import time
import types
from collections.abc import Callable
from typing import Any

from .. import context, serializers
from ..client import Proxy
from ..config import Config
from ..config import config as global_config
from ..errors import DaemonError, SecurityError
from ..protocol import Message, ServerSession, encode
from ..transport import sync as net
from ..transport.tls import refuse_renegotiation, server_context
from ..uri import URI
from . import meta as metamod
from .dispatch import Dispatcher
from .drivers import driver_factory
from .drivers.multiplex import MultiplexServer
from .hooks import default_hooks
from .mobile import MOBILE_CODE_NAME, MobileCodeReceiver
from .publish import publisher_for
from .registry import Registry
from .session_state import Connection
from .statistics import Statistics
from .streams import StreamRegistry

__all__ = ["Daemon", "DaemonObject", "DAEMON_NAME"]

log = logging.getLogger("ember.server.daemon")
DAEMON_NAME = "Pyro.Daemon"


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


class DaemonObject:
    """The daemon's own remote object, registered as ``Pyro.Daemon``."""

    def __init__(self, daemon: Daemon) -> None:
        self._daemon = daemon

    def ping(self) -> None:
        """Answer, to show the daemon is alive."""

    def registered(self) -> list[str]:
        """All object ids registered in this daemon, when config ``DAEMON_LIST_OBJECTS`` allows
        it (off by default: an object id is the only thing a client needs to call an object)."""
        if not self._daemon.config.DAEMON_LIST_OBJECTS:
            raise SecurityError("this daemon does not list its objects: set the config item DAEMON_LIST_OBJECTS "
                                "(PYRO_DAEMON_LIST_OBJECTS=1) on the daemon to allow registered()")
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
        statistics: bool | None = None,
    ) -> None:
        self.config = cfg = config or global_config
        serializers.register_object_converter(_autoproxy)
        self.registry = Registry(self, transient_max_age)
        self.objects_by_id: dict[str, Any] = self.registry.objects_by_id
        self.streams = StreamRegistry(cfg.ITER_STREAM_LIFETIME, cfg.ITER_STREAM_LINGER, cfg.ITER_STREAM_MAX)
        self.methodcall_error_handler: Callable[[Any, str, BaseException], None] | None = None
        # extended value types with Ember clients: None = config EXTENDED_TYPES (the Pyro5
        # compatibility layer sets False, so ported programs see exactly what Pyro5 gives)
        self.extended_types: bool | None = None
        self._last_housekeeping = time.monotonic()
        self._closed = False
        if ssl_context is None and cfg.SSL and connected_socket is None:
            ssl_context = server_context(cfg)
        elif isinstance(ssl_context, ssl.SSLContext):
            refuse_renegotiation(ssl_context)  # also on a context the application made
        self.ssl_context = ssl_context
        self.max_connections = max_connections
        self.transient_max_age = transient_max_age
        self.servertype = servertype or cfg.SERVERTYPE
        factory = driver_factory(self.servertype)
        self.nathost = nathost if nathost is not None else cfg.NATHOST
        self.natport = natport if natport is not None else cfg.NATPORT
        net.check_port(self.natport, "natport")
        self.dispatcher = Dispatcher(self, type(self).annotations is not Daemon.annotations)
        if connected_socket is not None:
            self.server: Any = MultiplexServer(self, connected_socket=connected_socket)
            self.host, self.port, self.unixsocket = None, None, None
            self.servertype = "connected-socket"
        else:
            listener = net.create_server(host or cfg.HOST, port, unixsocket, reuse=cfg.SOCK_REUSE, port_range=port_range)
            try:
                self.server = factory(self, listener)
            except BaseException:
                net.close_quietly(listener)
                raise
            self.host, self.port, self.unixsocket = self.server.location
        self.dispatcher.driver = self.server
        for hook in default_hooks:
            self.add_hook(hook)
        self._statistics: Statistics | None = None
        if statistics or (statistics is None and cfg.STATISTICS):
            self._statistics = Statistics()
            self.dispatcher.stats = self._statistics
        self._published_host = self.host
        if publish_hostname and self.host is not None:
            given = host or cfg.HOST
            self._published_host = given if not _is_ip_literal(given) else socket.getfqdn()
        if self.natport == 0 and self.nathost is not None:
            self.natport = self.port
        self._loop_thread: threading.Thread | None = None
        self._publisher: Any = None
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
    def active_connections(self) -> int:
        """How many client connections are open now."""
        return self.dispatcher.admission.active

    _active_connections = active_connections

    @property
    def sockets(self) -> list:
        """The daemon's listening socket(s), for a foreign ``select`` loop (see :meth:`events`)."""
        return self.server.sockets

    # ---- registry ------------------------------------------------------------------------

    def _enable_mobile_code(self, validator: Callable[[str, str, Any], bool] | None) -> None:
        if not callable(validator):
            self.shutdown()
            raise SecurityError("mobile code needs a validator: Daemon(mobile_code=validator) where "
                                "validator(module_name, source, client_address) returns True to accept")
        self.register(MobileCodeReceiver(validator), MOBILE_CODE_NAME)
        log.warning("mobile code is enabled on %s: clients may run validated code in this process", self.location)

    def use_name_server(self, ns: Any = True, unregister: bool = True) -> None:
        """Publish registered names in a name server (see the class docstring for ``ns``)."""
        self._publisher = publisher_for(ns, self.config.NS_KEY)
        self._ns_unregister = unregister

    @property
    def ns(self) -> Any:
        """The proxy to the name server this daemon publishes in (connected on first use), or None."""
        publisher = self._publisher
        return getattr(publisher, "proxy", publisher) if publisher is not None else None

    def register(self, obj_or_class: Any, object_id: str | None = None, force: bool = False, *,
                 ns_name: str | None = None, metadata: Any = None, weak: bool = False,
                 replicated: bool = False) -> URI:
        """Register an object (or a class, instantiated per its ``@behavior``) and return its URI.

        A fixed ``object_id`` keeps the URI stable across restarts; without one a random
        ``obj_<hex>`` id is generated. On a daemon with a name server (``ns=``) the
        object id, or ``ns_name`` if given, is also registered there with ``metadata``;
        if that fails the object is unregistered again and the error raised. ``weak=True``
        keeps only a weak reference: the registration ends by itself when the object is
        garbage-collected (names published for it stay in the name server).
        ``replicated=True`` adds this object to the name's URIs in the name server instead of
        replacing them: several daemons then serve one name (see docs/scale-out.md).
        """
        explicit_id = object_id
        uri = self.uri_for(self.registry.add(obj_or_class, object_id, force, weak))
        name = ns_name if ns_name is not None else explicit_id
        if name is not None and (ns_name is not None or self._publisher is not None):
            if self._publisher is None:
                self.unregister(uri.object)
                raise DaemonError(f"cannot publish {name!r}: this daemon has no name server (pass Daemon(ns=...))")
            try:
                if replicated:
                    self._publisher.publish(name, uri, metadata, replicated=True)
                else:
                    self._publisher.publish(name, uri, metadata)
            except BaseException:
                self.unregister(uri.object)
                raise
            self._ns_names[uri.object] = name
        return uri

    def unregister(self, obj_or_id: Any) -> None:
        """Remove an object (by object, class or id). ``Pyro.Daemon`` cannot be removed."""
        object_id = obj_or_id if isinstance(obj_or_id, str) else getattr(obj_or_id, "_pyroId", None)
        if object_id is None or object_id == DAEMON_NAME:
            return
        name = self._ns_names.pop(object_id, None)
        if name is not None:
            self._publisher.unpublish([name])
        self.registry.remove(object_id)

    def uri_for(self, obj_or_id: Any, nat: bool = True) -> URI:
        """The ``PYRO:`` URI of a registered object (with the NAT address unless ``nat=False``)."""
        object_id = obj_or_id if isinstance(obj_or_id, str) else getattr(obj_or_id, "_pyroId", None)
        if object_id is None or object_id not in self.objects_by_id:
            raise DaemonError(f"object not registered: {obj_or_id!r}")
        loc = self.nat_location if (nat and self.nathost is not None) else self.location
        return URI(f"PYRO:{object_id}@{loc}")

    def proxy_for(self, obj_or_id: Any, nat: bool = True) -> Any:
        """A :class:`~ember.Proxy` for a registered object."""
        return Proxy(self.uri_for(obj_or_id, nat))

    def metadata_for(self, object_id: str) -> metamod.ClassMeta:
        """The exposure metadata of a registered object."""
        return self.registry.metadata_for(object_id)

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
        """Called when a client connection ends, before its socket and the resources it
        tracks (``current_context.track_resource``) are closed, as Pyro5 does."""

    def annotations(self) -> dict[str, bytes]:
        """Annotations added to every reply (override to add your own)."""
        return {}

    def housekeeping(self) -> None:
        """Called periodically from the server loop (override to add periodic work)."""

    def add_hook(self, hook: Any) -> None:
        """Install a server call hook (see :mod:`ember.server.hooks`): an object with any of
        ``connection_opened(conn)``, ``connection_closed(conn)``, ``call_started(call)``,
        ``call_finished(call, result)``, ``call_failed(call, exc)``."""
        self.dispatcher.add_hook(hook)

    def remove_hook(self, hook: Any) -> None:
        """Remove a hook installed with :meth:`add_hook`."""
        self.dispatcher.remove_hook(hook)

    def statistics(self) -> dict[str, Any]:
        """What this daemon did: ``calls``, ``errors``, ``in_flight``, ``bytes_in``/``bytes_out``
        (whole messages: header, annotations, payload), ``connections`` (open, total), and
        per ``object.method`` the calls, errors and latency percentiles in milliseconds (of
        the last 1,000 calls of each). Needs ``Daemon(statistics=True)`` or config ``STATISTICS``.
        """
        if self._statistics is None:
            raise DaemonError("statistics are off: create the daemon with Daemon(statistics=True) "
                              "or set the config item STATISTICS (PYRO_STATISTICS=1)")
        return self._statistics.snapshot()

    # ---- messages (I/O-free) -------------------------------------------------------------

    def dispatch(self, conn: Connection, msg: Message) -> Message | None:
        """Handle one received message and return the reply, or None when there is none."""
        return self.dispatcher.handle(conn, msg)

    def encode(self, reply: Message, session: ServerSession | None = None) -> Any:
        """Encode a reply with this daemon's compression and size settings (bytes, or
        ``[header, payload]`` for a large payload: see :func:`ember.protocol.encode`),
        through the connection's ``session`` when given (which logs it when ``LOGWIRE``)."""
        cfg = self.config
        if session is not None and session.wirelog is not None:
            frame = session.encode(reply, cfg.COMPRESSION, cfg.MAX_MESSAGE_SIZE)
        else:  # the session would only encode it: save the call
            frame = encode(reply, cfg.COMPRESSION, cfg.MAX_MESSAGE_SIZE, parts=True)
        if session is not None and session.shm is not None:  # issue 16: large payloads via shared memory
            frame = session.shm.outgoing(frame)
        stats = self._statistics
        if stats is not None:
            stats.bytes_out += len(frame) if type(frame) is not list else len(frame[0]) + len(frame[1])
        return frame

    def await_coroutine(self, coro: Any) -> Any:
        """Run a coroutine a method returned, from a worker thread: on the daemon's event
        loop for the asyncio server, else on a private loop."""
        return self.server.await_coroutine(coro)

    def periodic(self) -> None:
        """Housekeeping the drivers call about every ``POLLTIMEOUT`` seconds."""
        now = time.monotonic()
        if now - self._last_housekeeping < min(self.config.POLLTIMEOUT, 2.0):
            return
        self._last_housekeeping = now
        self.streams.expire()
        if self.registry.reaps:
            self._reap_transients(now)
        try:
            self.housekeeping()
        except Exception:
            log.exception("housekeeping hook failed")

    def _reap_transients(self, now: float) -> None:
        """Unregister objects with generated ids unused for ``transient_max_age`` seconds."""
        idle = self.registry.idle_transients(now)
        for object_id in idle:
            obj = self.registry.get(object_id)
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
            self._publisher.unpublish(names)
        if self._publisher is not None:
            self._publisher.close()
        self.server.shutdown()
        thread = self._loop_thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)
        self.streams.clear()

    close = shutdown

    def __enter__(self) -> Daemon:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    def __repr__(self) -> str:
        return f"<ember.Daemon {self.location} {self.servertype} {len(self.objects_by_id)} objects>"


def _autoproxy(obj: Any) -> dict | None:
    """Objects registered in a daemon travel as proxies to themselves: registered instances,
    registered classes, and the instances a daemon made of a class registered by class
    (session/single/percall; their proxy reaches the class's object id, whose instancing
    mode picks the instance)."""
    if isinstance(obj, types.FunctionType):
        return None
    own: Any
    if isinstance(obj, type):
        own = obj.__dict__
    else:
        own = getattr(obj, "__dict__", None)
        if own is None:
            return None
    daemon = own.get("_pyroDaemon")  # the object's own marks, not those inherited from a registered class
    if not isinstance(daemon, Daemon):
        return None
    object_id = own.get("_pyroId", "")
    registered = daemon.registry.get(object_id)
    if registered is not obj and (registered is None or registered is not type(obj)):
        return None
    meta = metamod.class_meta(obj if isinstance(obj, type) else type(obj))
    uri = daemon.uri_for(object_id)
    return {
        "__class__": "Pyro5.client.Proxy",
        "state": (str(uri), tuple(meta.oneway), tuple(meta.methods), tuple(meta.attrs), "hello", None),
    }
