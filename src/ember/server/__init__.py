"""The server side: exposing objects through a daemon."""

from __future__ import annotations

from typing import Any

from .daemon import Daemon, DaemonObject
from .decorators import behavior, callback, expose, oneway

__all__ = ["Daemon", "DaemonObject", "behavior", "callback", "expose", "oneway", "serve"]


def serve(
    objects: dict[Any, str | None],
    host: str | None = None,
    port: int = 0,
    daemon: Daemon | None = None,
    use_ns: bool = False,
    verbose: bool = True,
    servertype: str | None = None,
) -> None:
    """Register ``{object_or_class: name}`` in a daemon and serve until shut down.

    With ``use_ns=True`` each name is also registered in the name server (found with
    :func:`ember.locate_ns`). Prints each object's URI when ``verbose``.
    """
    if use_ns:
        from ..errors import NamingError

        raise NamingError("use_ns=True needs the name server, which is not available in this version yet")
    daemon = daemon or Daemon(host=host, port=port, servertype=servertype)
    ns: Any = None
    with daemon:
        for obj, name in objects.items():
            if ns is not None and name:
                uri = daemon.register(obj)
                ns.register(name, uri)
            else:
                uri = daemon.register(obj, name)
            if verbose:
                print(f"Object {obj!r}:\n    uri = {uri}" + (f"\n    name = {name}" if ns is not None else ""))
        if verbose:
            print("Ember daemon running.")
        daemon.request_loop()
