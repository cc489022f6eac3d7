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

    Each name becomes the object id. Prints each object's URI when ``verbose``.
    ``use_ns=True`` (register the names in a name server) arrives with the name server;
    until then it raises :class:`~ember.errors.NamingError`.
    """
    if use_ns:
        from ..errors import NamingError

        raise NamingError("use_ns=True needs the name server, which is not available in this version yet")
    daemon = daemon or Daemon(host=host, port=port, servertype=servertype)
    with daemon:
        for obj, name in objects.items():
            uri = daemon.register(obj, name)
            if verbose:
                print(f"Object {obj!r}:\n    uri = {uri}")
        if verbose:
            print("Ember daemon running.")
        daemon.request_loop()
