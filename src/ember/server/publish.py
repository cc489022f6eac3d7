"""Publishing a daemon's names in a name server.

A :class:`NamePublisher` is what ``Daemon(ns=...)`` talks to: ``publish`` when an object is
registered with a name, ``unpublish`` when it is unregistered or the daemon shuts down.
The default, :class:`ProxyPublisher`, calls a name server through a :class:`~ember.Proxy`;
another registry (one with leases, say) plugs in by passing an object with these methods
as ``Daemon(ns=publisher)``.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol, runtime_checkable

from ..client import Proxy
from ..client.resolve import find_ns
from ..errors import PyroError
from ..uri import URI

__all__ = ["NamePublisher", "ProxyPublisher", "publisher_for"]

log = logging.getLogger("ember.server.daemon")


@runtime_checkable
class NamePublisher(Protocol):
    """Where a daemon publishes its names."""

    def publish(self, name: str, uri: URI, metadata: Any) -> None: ...

    def unpublish(self, names: list[str]) -> None: ...

    def close(self) -> None: ...


class ProxyPublisher:
    """Publishes through a proxy to a name server: given, found by URI, or located
    (``True``: :func:`ember.locate_ns`) on first use."""

    def __init__(self, spec: Any) -> None:
        self.spec = spec
        self._proxy: Any = spec if isinstance(spec, Proxy) else None

    @property
    def proxy(self) -> Any:
        """The name server proxy (connected on first use)."""
        if self._proxy is None:
            self._proxy = find_ns(proxy_class=Proxy) if self.spec is True else Proxy(self.spec)
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


def publisher_for(spec: Any) -> Any:
    """A publisher for ``Daemon(ns=spec)``: a ready :class:`NamePublisher`, or a proxy/URI/True."""
    if not isinstance(spec, Proxy) and isinstance(spec, NamePublisher):
        return spec
    return ProxyPublisher(spec)
