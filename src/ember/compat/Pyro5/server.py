"""``Pyro5.server``: :class:`Daemon` with Pyro5's camelCase API, ``serve`` and the decorators.

The compat :class:`Daemon` is an :class:`ember.Daemon`: ``requestLoop`` is
``request_loop``, ``uriFor`` is ``uri_for``... and Pyro5's overridable hooks
(``validateHandshake``, ``clientDisconnect``, ``housekeeping``, ``annotations``) and
``methodcall_error_handler(daemon, client_sock, method, vargs, kwargs, exception)`` are
called as Pyro5 calls them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

from ...context import current_context
from ...errors import DaemonError
from ...server import Daemon as _EmberDaemon
from ...server import DaemonObject, behavior, callback, expose, oneway
from ...server import meta as _meta
from ...server.meta import is_private as is_private_attribute
from .client import Proxy
from .config import config
from .core import locate_ns

__all__ = ["Daemon", "DaemonObject", "behavior", "callback", "config", "current_context", "expose",
           "is_private_attribute", "oneway", "serve"]

MethodcallErrorHandler = Callable[[Any, Any, Any, tuple, dict, BaseException], None]


class _ErrorHandlerHook:
    """A server hook handing every failed method call to the Pyro5-style handler."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon

    def call_failed(self, call: Any, exc: BaseException) -> None:
        daemon = self.daemon
        handler = daemon.__dict__.get("_pyro5_error_handler")
        if handler is None:
            return
        obj = daemon.registry.get(call.object_id)
        method = getattr(obj, call.method, call.method) if obj is not None and not call.batch else call.method
        handler(daemon, getattr(call.conn, "addr", None), method, tuple(call.args or ()), dict(call.kwargs or {}), exc)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


class _HandlerAdapter:
    """The Pyro5-style handler as Ember's dispatcher sees it (its 3-argument calls are dropped)."""

    def __init__(self, handler: MethodcallErrorHandler) -> None:
        self.handler = handler

    def __call__(self, *args: Any) -> None:
        if len(args) == 6:
            self.handler(*args)


class Daemon(_EmberDaemon):
    """Pyro5's ``Daemon(host=None, port=0, unixsocket=None, nathost=None, natport=None,
    interface=DaemonObject, connected_socket=None)`` on an :class:`ember.Daemon`.

    ``host`` None binds to the compat config's ``HOST`` (``localhost``, as Pyro5);
    the server type is ``config.SERVERTYPE``.
    """

    def __init__(self, host: Any = None, port: int = 0, unixsocket: str | None = None, nathost: str | None = None,
                 natport: int | None = None, interface: type = DaemonObject, connected_socket: Any = None) -> None:
        if interface is not DaemonObject:
            raise DaemonError("a custom interface class is not supported by ember.compat.Pyro5: subclass Daemon "
                              "and override its methods, or register your own object")
        self.__dict__["_pyro5_error_handler"] = None
        if host is None and unixsocket is None and connected_socket is None:
            host = config.HOST
        # Pyro5 puts the host it was given in URIs (``PYRO:x@localhost:port``), not its address
        super().__init__(host=None if host is None else str(host), port=port, unixsocket=unixsocket,
                         nathost=nathost, natport=natport, connected_socket=connected_socket,
                         publish_hostname=host is not None and not _is_ip(str(host)))
        self._combined: list[_EmberDaemon] = []
        self.extended_types = False  # what Pyro5 would send, also to Ember clients
        self.add_hook(_ErrorHandlerHook(self))

    # Pyro5 calls the handler (daemon, client_sock_addr, method, vargs, kwargs, exception) for
    # every failed call: the call_failed hook above does that. Ember's dispatcher also calls
    # this attribute, as (conn, method, exc), for oneway errors: the adapter ignores those.
    @property
    def methodcall_error_handler(self) -> Any:
        handler = self.__dict__.get("_pyro5_error_handler")
        return _HandlerAdapter(handler) if handler is not None else None

    @methodcall_error_handler.setter
    def methodcall_error_handler(self, handler: Any) -> None:
        self.__dict__["_pyro5_error_handler"] = handler

    # ---- Pyro5's overridable hooks, called from Ember's --------------------------------------

    def validate_handshake(self, conn: Any, data: Any) -> Any:
        return self.validateHandshake(conn, data)

    def validateHandshake(self, conn: Any, data: Any) -> Any:  # noqa: N802
        """Override to check the proxy's handshake data; return the answer or raise to refuse."""
        return "hello"

    def client_disconnect(self, conn: Any) -> None:
        self.clientDisconnect(conn)

    def clientDisconnect(self, conn: Any) -> None:  # noqa: N802
        """Override: called after a client connection closed."""

    # ---- Pyro5's camelCase API ---------------------------------------------------------------

    def register(self, obj_or_class: Any, objectId: str | None = None,  # type: ignore[override]  # noqa: N803
                 force: bool = False, weak: bool = False, **options: Any) -> Any:
        """Register an object or class; returns its URI (``weak=True``: see :meth:`ember.Daemon.register`)."""
        return super().register(obj_or_class, objectId, force, weak=weak, **options)

    def uriFor(self, objectOrId: Any, nat: bool = True) -> Any:  # noqa: N802, N803
        return self.uri_for(objectOrId, nat)

    def proxyFor(self, objectOrId: Any, nat: bool = True) -> Proxy:  # noqa: N802, N803
        return Proxy(self.uri_for(objectOrId, nat))

    def resetMetadataCache(self, objectOrId: Any, nat: bool = True) -> None:  # noqa: N802, N803
        obj = (self.registry.get(objectOrId) or objectOrId) if isinstance(objectOrId, str) else objectOrId
        _meta.reset_cache(obj if isinstance(obj, type) else type(obj))

    def requestLoop(self, loopCondition: Callable[[], bool] = lambda: True) -> None:  # noqa: N802, N803
        self.request_loop(loopCondition)

    def combine(self, daemon: _EmberDaemon) -> None:
        """Serve ``daemon`` too: it runs in a background thread from now on (Pyro5 merges it
        into this daemon's loop) and is shut down with this one."""
        self._combined.append(daemon)
        daemon.start()

    def shutdown(self) -> None:
        for other in self._combined:
            other.shutdown()
        super().shutdown()

    close = shutdown

    @property
    def transportServer(self) -> Any:  # noqa: N802
        """The server driver (Ember's thread pool, multiplex or asyncio loop)."""
        return self.server

    @property
    def sock(self) -> Any:
        """The listening socket."""
        return self.sockets[0] if self.sockets else None

    @property
    def locationStr(self) -> str:  # noqa: N802
        return self.location

    @property
    def natLocationStr(self) -> str | None:  # noqa: N802
        return self.nat_location

    @property
    def selector(self) -> Any:
        raise AttributeError("Pyro5.server.Daemon.selector is not supported by ember.compat.Pyro5: "
                             "use daemon.sockets with your own selector and daemon.events(ready_sockets)")

    @staticmethod
    def serveSimple(objects: dict, host: Any = None, port: int = 0, daemon: Any = None, ns: bool = True,  # noqa: N802
                    verbose: bool = True) -> None:
        serve(objects, host, port, daemon, ns, verbose)

    def __enter__(self) -> Daemon:
        return self


def serve(objects: dict[Any, str | None], host: Any = None, port: int = 0, daemon: Daemon | None = None,
          use_ns: bool = True, verbose: bool = True) -> None:
    """Pyro5's ``serve``: register ``{object_or_class: name}`` in a daemon (with the names in
    the name server unless ``use_ns=False``), print the URIs, and serve until shut down."""
    if daemon is None:
        daemon = Daemon(host, port)
    with daemon:
        ns = locate_ns() if use_ns else None
        try:
            for obj, name in objects.items():
                uri = daemon.register(obj, None if ns is not None else name)
                if verbose:
                    print(f"Object {obj!r}:\n    uri = {uri}")
                if name and ns is not None:
                    ns.register(name, uri)
                    if verbose:
                        print(f"    name = {name}")
        finally:
            if ns is not None:
                ns._pyroRelease()
        if verbose:
            print("Pyro daemon running.")
        daemon.requestLoop()

