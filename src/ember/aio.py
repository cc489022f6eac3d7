"""asyncio: ``AsyncProxy``, the async name server client, and serving from an event loop.

>>> async with ember.aio.AsyncProxy("PYRONAME:calc") as calc:
...     print(await calc.add(1, 2))

>>> daemon = ember.Daemon(servertype="asyncio")
>>> daemon.register(Service, "service")
>>> await daemon.serve_async()                 # or: await ember.aio.serve({Service: "service"})
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path
from typing import Any

from .client.aproxy import AsyncBatchProxy, AsyncProxy, AsyncRemoteIterator
from .config import config
from .errors import CommunicationError, NamingError
from .server import Daemon
from .transport.aio import new_event_loop
from .uri import URI

__all__ = ["AsyncProxy", "AsyncBatchProxy", "AsyncRemoteIterator", "locate_ns", "resolve", "serve",
           "new_event_loop"]


async def locate_ns(host: str | None = None, port: int | None = None, broadcast: bool = True, *,
                    bcport: int | None = None, broadcast_addrs: list[str] | None = None,
                    uri_file: str | Path | None = None) -> AsyncProxy:
    """An :class:`AsyncProxy` to a running name server, found as :func:`ember.locate_ns` does.

    The search (direct connection, broadcast, URI file) runs in a worker thread, so the
    event loop never blocks; the returned proxy is connected.
    """
    from .naming import locate_ns as locate_blocking

    def find() -> URI:
        proxy = locate_blocking(host, port, broadcast, bcport=bcport, broadcast_addrs=broadcast_addrs,
                                uri_file=uri_file)
        try:
            return proxy._bound_uri or proxy._pyroUri
        finally:
            proxy._release()

    uri = await asyncio.get_running_loop().run_in_executor(None, find)
    ns = AsyncProxy(uri)
    await ns._bind()
    return ns


async def _retrying(call: Any, empty: Any) -> Any:
    delay = config.NS_LOOKUP_DELAY
    deadline = time.monotonic() + delay
    while True:
        try:
            result = await call()
        except NamingError:
            if time.monotonic() >= deadline:
                raise
        else:
            if result != empty or time.monotonic() >= deadline:
                return result
        await asyncio.sleep(max(0.2, delay / 5))


_NEVER = object()


async def resolve(uri: str | URI) -> URI:
    """The direct ``PYRO:`` URI for any URI, with async name server calls (see :func:`ember.resolve`)."""
    uri = URI(uri)
    if uri.protocol == "PYRO":
        return uri
    if uri.protocol == "PYROLOC":
        async with AsyncProxy(f"PYRO:Pyro.Daemon@{uri.location}") as daemon:
            try:
                registered = await daemon.registered()
            except CommunicationError as exc:
                raise NamingError(f"cannot resolve {uri}: no daemon reachable at {uri.location} ({exc})") from None
        if uri.object not in registered:
            raise NamingError(f"cannot resolve {uri}: the daemon at {uri.location} has no object named {uri.object!r}")
        return URI(f"PYRO:{uri.object}@{uri.location}")
    if uri.sockname is not None:
        ns = await locate_ns("./u:" + uri.sockname)
    else:
        ns = await locate_ns(uri.host, uri.port)
    try:
        if uri.protocol == "PYRONAME":
            return URI(await _retrying(lambda: ns.lookup(uri.object), _NEVER))
        tags = sorted(uri.metadata)
        found = await _retrying(lambda: ns.yplookup(tags, None, False), {})
        if not found:
            raise NamingError(f"no registrations available with desired metadata properties {tags}")
        return URI(random.choice(list(found.values())))
    finally:
        await ns._release()


async def serve(objects: dict[Any, str | None], host: str | None = None, port: int = 0, use_ns: bool = False,
                verbose: bool = True) -> None:
    """Like :func:`ember.serve`, on the running event loop with an asyncio daemon."""
    daemon = Daemon(host=host, port=port, servertype="asyncio")
    if use_ns:
        daemon.use_name_server(True)
    try:
        for obj, name in objects.items():
            uri = await asyncio.get_running_loop().run_in_executor(None, daemon.register, obj, name)
            if verbose:
                print(f"Object {obj!r}:\n    uri = {uri}")
        if verbose:
            print("Ember asyncio daemon running.")
        await daemon.serve_async()
    finally:
        await asyncio.get_running_loop().run_in_executor(None, daemon.shutdown)
