"""Publishing a daemon's names in a name server.

A :class:`NamePublisher` is what ``Daemon(ns=...)`` talks to: ``publish`` when an object is
registered with a name, ``unpublish`` when it is unregistered or the daemon shuts down.
The default, :class:`ProxyPublisher`, calls a name server through a :class:`~ember.Proxy`;
another registry plugs in by passing an object with these methods as ``Daemon(ns=publisher)``.

Leases: with an Ember name server and ``NS_LEASE_TIME`` > 0 (the default), the publisher
takes a lease of that length, registers its names under it and renews it every third of
the lease time from a background thread. When the daemon's process dies, even by SIGKILL,
nobody renews the lease and the name server's storage drops its names once it runs out.
When a renewal fails (the name server is gone) the publisher finds a name server again
(``NS_HOSTS`` lists several sharing one registry) and carries on; a lease found expired is
replaced by a new one and every name registered again. A Pyro5 name server has no leases:
names are registered plainly, as before.

A name server started with a write key (config ``NS_KEY``) accepts registrations only from
connections that present it: the proxies this module makes present ``NS_KEY`` (or the
daemon's own config's) in their handshake data, ``{"ns_key": KEY}``.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Protocol, runtime_checkable

from ..client import Proxy
from ..client.resolve import find_ns
from ..config import config
from ..errors import NamingError, PyroError
from ..uri import URI

__all__ = ["NS_KEY_FIELD", "NamePublisher", "ProxyPublisher", "present_ns_key", "publisher_for"]

log = logging.getLogger("ember.server.daemon")

NS_KEY_FIELD = "ns_key"  # the handshake data field carrying a name server's write key


def present_ns_key(proxy: Any, key: str | None) -> Any:
    """Make ``proxy`` (a blocking name server proxy) present the write ``key`` from its next
    connection on; returns the proxy. ``key`` None changes nothing.

    The key is in the proxy's handshake data, so it travels with the proxy if the proxy is
    pickled or passed to another program: keep such proxies to yourself.
    """
    if key is not None:
        proxy._handshake = {NS_KEY_FIELD: key}
        proxy._release()  # a connection made before had no key
    return proxy


@runtime_checkable
class NamePublisher(Protocol):
    """Where a daemon publishes its names (``publish`` may also take ``replicated=True``)."""

    def publish(self, name: str, uri: URI, metadata: Any) -> None: ...

    def unpublish(self, names: list[str]) -> None: ...

    def close(self) -> None: ...


class ProxyPublisher:
    """Publishes through a proxy to a name server: given, found by URI, or located
    (``True``: :func:`ember.locate_ns`) on first use; keeps its names alive with a lease."""

    def __init__(self, spec: Any, key: str | None = None) -> None:
        self.spec = spec
        self.key = key  # presented by a proxy this publisher makes; a proxy handed in is used as it is
        self._proxy: Any = spec if isinstance(spec, Proxy) else None
        self.lease_time = float(config.NS_LEASE_TIME)
        self.lease: str | None = None
        self._leases_supported: bool | None = None if self.lease_time > 0 else False
        self._names: dict[str, tuple[URI, Any, bool]] = {}  # name -> (uri, metadata, replicated)
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def proxy(self) -> Any:
        """The name server proxy (connected on first use)."""
        if self._proxy is None:
            proxy = find_ns(proxy_class=Proxy) if self.spec is True else Proxy(self.spec)
            if self.lease_time > 0:
                proxy._timeout = max(1.0, self.lease_time / 3)  # a hung name server must not outlast the lease
            self._proxy = present_ns_key(proxy, self.key)
        return self._proxy

    def _forget_proxy(self) -> None:
        """After a failure: the next use connects again (and, with ``ns=True``, locates again)."""
        proxy = self._proxy
        if proxy is None:
            return
        proxy._release()
        if proxy is not self.spec:
            self._proxy = None

    def _current_lease(self) -> str | None:
        if self._leases_supported is False:
            return None
        if self.lease is None:
            try:
                self.lease = self.proxy.grant_lease(self.lease_time)
            except (AttributeError, NamingError) as exc:  # a Pyro5 name server, or a storage without leases
                log.info("publishing without a lease: %s", exc)
                self._leases_supported = False
                return None
            self._leases_supported = True
        return self.lease

    def _register(self, name: str, uri: URI, metadata: Any, replicated: bool, lease: str | None) -> None:
        if lease is not None:
            self.proxy.register(name, uri, metadata=metadata, replicated=replicated, lease=lease)
        elif replicated:
            self.proxy.register(name, uri, metadata=metadata, replicated=True)
        else:
            self.proxy.register(name, uri, metadata=metadata)

    def publish(self, name: str, uri: URI, metadata: Any, replicated: bool = False) -> None:
        with self._lock:
            self._register(name, uri, metadata, replicated, self._current_lease())
            self._names[name] = (uri, metadata, replicated)
            if self.lease is not None and self._thread is None:
                self._thread = threading.Thread(target=self._renew_loop, name="ember-ns-lease", daemon=True)
                self._thread.start()

    def unpublish(self, names: list[str]) -> None:
        with self._lock:
            try:
                for name in names:
                    entry = self._names.pop(name, None)
                    if entry is not None and self._leases_supported:
                        self.proxy.remove(name, uri=str(entry[0]))  # only this daemon's URI (replicas stay)
                    else:
                        self.proxy.remove(name)
            except PyroError as exc:
                log.warning("could not remove %s from the name server: %s", ", ".join(names), exc)

    def _renew_loop(self) -> None:
        interval = self.lease_time / 3
        wait = interval
        while not self._stop.wait(wait):
            wait = interval
            with self._lock:
                if self._stop.is_set():
                    return
                try:
                    self._renew()
                except PyroError as exc:
                    log.warning("cannot renew the name server lease (retrying): %s", exc)
                    self._forget_proxy()
                    wait = min(interval, 0.5)

    def _renew(self) -> None:
        """Renew the lease; when it expired meanwhile, take a new one and register every name again."""
        if self.lease is None or self.proxy.renew_lease(self.lease):
            return
        log.warning("the name server lease expired; registering %d name(s) again", len(self._names))
        self.lease = None
        lease = self._current_lease()
        for name, (uri, metadata, replicated) in list(self._names.items()):
            self._register(name, uri, metadata, replicated, lease)

    def close(self) -> None:
        """Stop renewing (names left published live until the lease ends); release a proxy
        this publisher made (a proxy handed in stays the caller's)."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10)
        with self._lock:
            if self.lease is not None and not self._names:
                try:
                    self.proxy.revoke_lease(self.lease)
                except PyroError as exc:
                    log.debug("could not revoke the name server lease: %s", exc)
                self.lease = None
            if self._proxy is not None and self._proxy is not self.spec:
                self._proxy._release()
                self._proxy = None


def publisher_for(spec: Any, key: str | None = None) -> Any:
    """A publisher for ``Daemon(ns=spec)``: a ready :class:`NamePublisher`, or a proxy/URI/True
    (the proxies it makes present the name server write ``key``, if any)."""
    if not isinstance(spec, Proxy) and isinstance(spec, NamePublisher):
        return spec
    return ProxyPublisher(spec, key)
