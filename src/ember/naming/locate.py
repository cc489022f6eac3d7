"""Finding a name server (``locate_ns``) and turning magic URIs into ``PYRO:`` ones (``resolve``).

Thin: the search and the resolution are :mod:`ember.client.resolve`'s (one plan, a blocking
and an asyncio driver); this module picks the proxy class for each flavour.
"""

from __future__ import annotations

from pathlib import Path

from ..client.aproxy import AsyncProxy
from ..client.proxy import Proxy
from ..client.resolve import abroadcast_for_ns, afind_ns, broadcast_for_ns, find_ns
from ..client.resolve import aresolve as _aresolve
from ..client.resolve import resolve as _resolve
from ..config import config
from ..server.publish import NS_KEY_FIELD, present_ns_key
from ..uri import URI

__all__ = ["alocate_ns", "aresolve", "abroadcast_for_ns", "broadcast_for_ns", "locate_ns", "resolve"]


def locate_ns(host: str | None = None, port: int | None = None, broadcast: bool = True, *,
              bcport: int | None = None, broadcast_addrs: list[str] | None = None,
              uri_file: str | Path | None = None, key: str | None = None) -> Proxy:
    """A proxy to a running name server, found the first way that works.

    With ``host`` (a host name, an IP address, or ``./u:path`` for a unix socket) only
    that address (port ``port`` or ``NS_PORT``) is tried. Without it, in order:

    1. the URI written in ``uri_file`` or ``NS_URI_FILE`` (see ``ember ns --uri-file``),
       when one is given: an explicit location wins over the defaults;
    2. the configured ``NS_HOST`` : ``port`` or ``NS_PORT``;
    3. UDP broadcast (unless ``broadcast=False`` or ``PREFER_IP_VERSION`` is 6) to
       ``broadcast_addrs`` or ``BROADCAST_ADDRS`` on ``bcport`` or ``NS_BCPORT``.

    Each connection must succeed within 3 s (or ``COMMTIMEOUT``). Raises
    :class:`~ember.errors.NamingError` listing everything it tried and why each failed.

    ``key`` (default config ``NS_KEY``) is the write key of a name server that protects
    ``register``/``remove``/``set_metadata``; the proxy presents it on every connection.
    Reading needs no key.
    """
    proxy = find_ns(host, port, broadcast, proxy_class=Proxy, bcport=bcport,
                    broadcast_addrs=broadcast_addrs, uri_file=uri_file)
    return present_ns_key(proxy, key if key is not None else config.NS_KEY)


async def alocate_ns(host: str | None = None, port: int | None = None, broadcast: bool = True, *,
                     bcport: int | None = None, broadcast_addrs: list[str] | None = None,
                     uri_file: str | Path | None = None, key: str | None = None) -> AsyncProxy:
    """A connected :class:`~ember.aio.AsyncProxy` to a running name server, found as
    :func:`locate_ns` does (same order, timeouts, error and ``key``), without blocking the event loop."""
    proxy = await afind_ns(host, port, broadcast, proxy_class=AsyncProxy, bcport=bcport,
                           broadcast_addrs=broadcast_addrs, uri_file=uri_file)
    key = key if key is not None else config.NS_KEY
    if key is not None:
        proxy._handshake = {NS_KEY_FIELD: key}
        await proxy._release()  # reconnects with the key on next use
    return proxy


def resolve(uri: str | URI) -> URI:
    """The direct ``PYRO:`` URI for any URI.

    ``PYRONAME:name`` is looked up in the name server (located as in :func:`locate_ns`,
    or at the URI's ``@host:port``); ``PYROMETA:tags`` picks at random one registration
    carrying all the tags; legacy ``PYROLOC:name@host:port`` asks the daemon at that
    address whether it serves ``name``. ``NS_LOOKUP_DELAY`` > 0 keeps retrying a name
    that is not registered yet for that many seconds.
    """
    return _resolve(uri, Proxy)


async def aresolve(uri: str | URI) -> URI:
    """:func:`resolve` with async name server calls: the same plan, timeouts and retries."""
    return await _aresolve(uri, AsyncProxy)
