"""Publishing a daemon's names in a name server.

A :class:`NamePublisher` is what ``Daemon(ns=...)`` talks to: ``publish`` when an object is
registered with a name, ``unpublish`` when it is unregistered or the daemon shuts down.
The default, :class:`ProxyPublisher`, calls a name server through a :class:`~ember.Proxy`;
another registry (one with leases, say) plugs in by passing an object with these methods
as ``Daemon(ns=publisher)``.

A name server started with a write key (config ``NS_KEY``) accepts registrations only from
connections that present it: the proxies this module makes present ``NS_KEY`` (or the
daemon's own config's) in their handshake data, ``{"ns_key": KEY}``.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol, runtime_checkable

from ..client import Proxy
from ..client.resolve import find_ns
from ..errors import PyroError
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
    """Where a daemon publishes its names."""

    def publish(self, name: str, uri: URI, metadata: Any) -> None: ...

    def unpublish(self, names: list[str]) -> None: ...

    def close(self) -> None: ...


class ProxyPublisher:
    """Publishes through a proxy to a name server: given, found by URI, or located
    (``True``: :func:`ember.locate_ns`) on first use."""

    def __init__(self, spec: Any, key: str | None = None) -> None:
        self.spec = spec
        self.key = key  # presented by a proxy this publisher makes; a proxy handed in is used as it is
        self._proxy: Any = spec if isinstance(spec, Proxy) else None

    @property
    def proxy(self) -> Any:
        """The name server proxy (connected on first use)."""
        if self._proxy is None:
            proxy = find_ns(proxy_class=Proxy) if self.spec is True else Proxy(self.spec)
            self._proxy = present_ns_key(proxy, self.key)
        return self._proxy

    def publish(self, name: str, uri: URI, metadata: Any) -> None:
        self.proxy.register(name, uri, metadata=metadata)

    def unpublish(self, names: list[str]) -> None:
        try:
            for name in names:
                self.proxy.remove(name)
        except PyroError as exc:
            log.warning("could not remove %s from the name server: %s", ", ".join(names), exc)

    def close(self) -> None:
        """Release a proxy this publisher made (a proxy handed in stays the caller's)."""
        if self._proxy is not None and self._proxy is not self.spec:
            self._proxy._release()


def publisher_for(spec: Any, key: str | None = None) -> Any:
    """A publisher for ``Daemon(ns=spec)``: a ready :class:`NamePublisher`, or a proxy/URI/True
    (the proxies it makes present the name server write ``key``, if any)."""
    if not isinstance(spec, Proxy) and isinstance(spec, NamePublisher):
        return spec
    return ProxyPublisher(spec, key)
