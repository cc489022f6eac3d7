"""asyncio: ``AsyncProxy``, the async name server client, and serving from an event loop.

>>> async with ember.aio.AsyncProxy("PYRONAME:calc") as calc:
...     print(await calc.add(1, 2))

>>> daemon = ember.Daemon(servertype="asyncio")
>>> daemon.register(Service, "service")
>>> await daemon.serve_async()                 # or: await ember.aio.serve({Service: "service"})
"""

from __future__ import annotations

import asyncio
from typing import Any

from .client.aproxy import AsyncBatchProxy, AsyncProxy, AsyncRemoteIterator
from .naming.locate import alocate_ns as locate_ns
from .naming.locate import aresolve as resolve
from .server import Daemon
from .transport.aio import new_event_loop

__all__ = ["AsyncProxy", "AsyncBatchProxy", "AsyncRemoteIterator", "locate_ns", "resolve", "serve",
           "new_event_loop"]

# ``await ember.aio.locate_ns(...)``: an AsyncProxy to a name server, found as ember.locate_ns does;
# ``await ember.aio.resolve(uri)``: the direct PYRO: URI, as ember.resolve. One plan for both
# flavours: ember.client.resolve.


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
