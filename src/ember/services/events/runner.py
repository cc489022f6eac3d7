"""Running the event service: a daemon serving ``Pyro.EventService``, registered in the name server."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from ...config import Config
from ...config import config as global_config
from ...naming.locate import locate_ns
from ...server import Daemon
from ...uri import URI
from .service import EVENTSERVICE_NAME, EventService
from .storage import EventStorage

__all__ = ["EventServer", "start_event_server"]


class EventServer:
    """An :class:`EventService` in a daemon of its own, registered as ``Pyro.EventService``.

    ``port`` 0 lets the OS choose. ``ns`` is where to register: True (default) finds the
    name server with :func:`~ember.naming.locate_ns` (at ``ns_host``/``ns_port`` if given),
    a proxy or URI uses that one, False registers nowhere. The daemon runs oneway calls
    in arrival order, so the oneway publishes of one publisher keep their order. The name
    is removed from the name server at shutdown.
    """

    def __init__(self, host: str | None = None, port: int = 0, *, unixsocket: str | None = None,
                 storage: str | EventStorage | None = None, ns: Any = True, ns_host: str | None = None,
                 ns_port: int | None = None, nathost: str | None = None, natport: int | None = None,
                 ssl_context: Any = None, config: Config | None = None) -> None:
        cfg = (config or global_config).copy()
        cfg.ONEWAY_THREADED = False
        self.service = EventService(storage, config=config)
        self._closed = False
        self._lock = threading.Lock()
        self.registered = ns is not False and ns is not None
        try:
            if ns is True:
                ns = locate_ns(ns_host, ns_port)
            self.daemon = Daemon(host=host, port=port, unixsocket=unixsocket, nathost=nathost, natport=natport,
                                 ssl_context=ssl_context, config=cfg,
                                 ns=None if ns is False else ns)
            # event services sharing a store (redis://) all serve the one name: clients spread over them
            self.uri: URI = self.daemon.register(self.service, EVENTSERVICE_NAME,
                                                 replicated=self.service.storage.shared and self.registered)
        except BaseException:
            self.shutdown()
            raise

    def start(self) -> EventServer:
        """Serve in a background thread; returns self."""
        self.daemon.start()
        return self

    def request_loop(self, loop_condition: Callable[[], bool] = lambda: True) -> None:
        """Serve in this thread until :meth:`shutdown`, then clean up."""
        try:
            self.daemon.request_loop(loop_condition)
        finally:
            self.shutdown()

    def shutdown(self) -> None:
        """Unregister, stop serving and delivering, close the storage. Idempotent, any thread."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        daemon = getattr(self, "daemon", None)
        if daemon is not None:
            daemon.shutdown()
        self.service.close()

    close = shutdown

    def __enter__(self) -> EventServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    def describe(self) -> str:
        """A few lines saying where the service listens and how it is set up."""
        cfg = self.service.config
        lines = [f"Event service running on {self.daemon.location} ({self.daemon.servertype} server)",
                 f"URI = {self.uri}",
                 f"storage: {self.service.storage.description}, last seq {self.service.storage.last_seq()}",
                 f"queues: {cfg.EVENTS_QUEUE_SIZE} events per subscriber, when full: {cfg.EVENTS_QUEUE_POLICY}",
                 f"registered in the name server as {EVENTSERVICE_NAME}" if self.registered
                 else "not registered in a name server"]
        return "\n".join(lines)


def start_event_server(host: str | None = None, port: int = 0, **options: Any) -> EventServer:
    """Start an event server in a background thread and return it (stop it with ``shutdown()``)."""
    return EventServer(host, port, **options).start()
