"""``Pyro5.nameserver``: ``start_ns`` (returning Pyro5's triple), ``start_ns_loop``, the
``lookup``/``yplookup`` helpers, ``NameServer`` and the storage classes, on Ember's name server."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ...config import config as _ember_config
from ...errors import NamingError, ProtocolError, PyroError
from ...naming import NameServer, NameServerService
from ...naming.nameserver import NAMESERVER_NAME, AutoCleaner
from ...naming.responder import BroadcastResponder
from ...naming.storage import open_storage
from ._unsupported import module_getattr
from .config import config

__all__ = ["AutoCleaner", "BroadcastServer", "MemoryStorage", "NameServer", "NameServerDaemon", "NamingError",
           "ProtocolError", "PyroError", "SqlStorage", "config", "lookup", "start_ns", "start_ns_loop", "yplookup"]


def MemoryStorage() -> Any:  # noqa: N802 - Pyro5's class name
    """The in-memory registry storage (``ember.naming.storage.MemoryStorage``)."""
    return open_storage("memory")


def SqlStorage(dbfile: str) -> Any:  # noqa: N802
    """SQLite registry storage (``ember.naming.storage.SqlStorage``)."""
    return open_storage(f"sqlite:{dbfile}")


class NameServerDaemon:
    """The daemon serving ``Pyro.NameServer`` that :func:`start_ns` returns (Pyro5's
    ``NameServerDaemon``): ``requestLoop``, ``close``/``shutdown``, ``uriFor``, ``nameserver``;
    everything else is the underlying :class:`ember.Daemon`'s."""

    def __init__(self, service: NameServerService) -> None:
        self._service = service
        self.nameserver: NameServer | None = service.nameserver
        self.daemon = service.daemon

    def requestLoop(self, loopCondition: Callable[[], bool] = lambda: True) -> None:  # noqa: N802, N803
        if self._service.autocleaner is not None and not self._service.autocleaner._thread.is_alive():
            self._service.autocleaner.start()
        self.daemon.request_loop(loopCondition)

    def uriFor(self, objectOrId: Any, nat: bool = True) -> Any:  # noqa: N802, N803
        return self.daemon.uri_for(objectOrId, nat)

    def shutdown(self) -> None:
        self.daemon.shutdown()

    def close(self) -> None:
        """Stop serving and close the storage; the broadcast server has its own ``close()``."""
        self._service.broadcast = None
        self._service.shutdown()
        self.nameserver = None

    def __enter__(self) -> NameServerDaemon:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.daemon, name)


class BroadcastServer:
    """The UDP responder :func:`start_ns` returns (Pyro5's ``BroadcastServer``)."""

    def __init__(self, responder: Any, ns_uri: Any) -> None:
        self._responder = responder
        self.nsUri = ns_uri
        self.sock = responder.sock

    def runInThread(self) -> Any:  # noqa: N802
        self._responder.start()
        return self._responder._thread

    def getPort(self) -> int:  # noqa: N802
        return self._responder.port

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self._responder.close()


def _service(host: Any, port: int | None, enableBroadcast: bool, bchost: str | None, bcport: int | None,  # noqa: N803
             unixsocket: str | None, nathost: str | None, natport: int | None, storage: Any) -> NameServerService:
    service = NameServerService(str(host) if host else config.HOST, port, unixsocket=unixsocket, storage=storage,
                                enable_broadcast=False, nathost=nathost, natport=natport)
    bound = service.daemon.host or ""
    # as Pyro5: no broadcast responder for a name server on loopback (Ember's own start_ns
    # answers loopback broadcasts there)
    if enableBroadcast and unixsocket is None and not (bound.startswith("127.") or bound in ("localhost", "::1")):
        try:
            service.broadcast = BroadcastResponder(service.daemon.uri_for(NAMESERVER_NAME, nat=False),
                                                   "" if bchost is None else bchost,
                                                   _ember_config.NS_BCPORT if bcport is None else bcport)
        except BaseException:
            service.shutdown()
            raise
    return service


def start_ns(host: Any = None, port: int | None = None, enableBroadcast: bool = True,  # noqa: N803
             bchost: str | None = None, bcport: int | None = None, unixsocket: str | None = None,
             nathost: str | None = None, natport: int | None = None,
             storage: Any = None) -> tuple[Any, NameServerDaemon, BroadcastServer | None]:
    """Create (but do not run) a name server: ``(uri, daemon, broadcast_server)``, as Pyro5.

    Run it with ``daemon.requestLoop()`` (and ``broadcast_server.runInThread()``); stop it
    with ``daemon.close()`` and ``broadcast_server.close()``.
    """
    service = _service(host, port, enableBroadcast, bchost, bcport, unixsocket, nathost, natport, storage)
    bc = BroadcastServer(service.broadcast, service.uri) if service.broadcast is not None else None
    return service.uri, NameServerDaemon(service), bc


def start_ns_loop(host: Any = None, port: int | None = None, enableBroadcast: bool = True,  # noqa: N803
                  bchost: str | None = None, bcport: int | None = None, unixsocket: str | None = None,
                  nathost: str | None = None, natport: int | None = None, storage: Any = None,
                  loopCondition: Callable[[], bool] = lambda: True) -> None:  # noqa: N803
    """Run a name server (with its broadcast responder) in this thread until ``loopCondition()``
    is false or it is shut down."""
    service = _service(host, port, enableBroadcast, bchost, bcport, unixsocket, nathost, natport, storage)
    print(f"NS running on {service.daemon.location}")
    print(f"URI = {service.uri}")
    service.request_loop(loopCondition)


def lookup(nameserver: Any, name: str, return_metadata: bool = False, delay_time: float = 0) -> Any:
    """``nameserver.lookup(name)``, retrying for up to ``delay_time`` seconds while it is unknown."""
    return _retry(lambda: nameserver.lookup(name, return_metadata), delay_time, bool)


def yplookup(nameserver: Any, meta_all: Any = None, meta_any: Any = None, return_metadata: bool = True,
             delay_time: float = 0) -> Any:
    """``nameserver.yplookup(...)``, retrying for up to ``delay_time`` seconds while nothing matches."""
    return _retry(lambda: nameserver.yplookup(meta_all, meta_any, return_metadata), delay_time, bool)


def _retry(call: Callable[[], Any], delay: float, done: Callable[[Any], bool]) -> Any:
    deadline = time.monotonic() + delay
    while True:
        try:
            result = call()
            if done(result) or time.monotonic() >= deadline:
                return result
        except NamingError:
            if time.monotonic() >= deadline:
                raise
        time.sleep(min(0.2, max(delay / 5, 0.01)))


__getattr__ = module_getattr(__name__, {
    "main": "run the name server with `ember ns` (same options) or ember.naming.start_ns_loop()",
})
