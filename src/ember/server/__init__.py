"""The server side: exposing objects through a daemon."""

from __future__ import annotations

from typing import Any

from .daemon import Daemon, DaemonObject
from .decorators import behavior, callback, expose, idempotent, oneway

__all__ = ["Daemon", "DaemonObject", "behavior", "callback", "expose", "idempotent", "oneway", "serve"]


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

    Each name becomes the object id (None = a generated id). With ``use_ns`` the names
    are also registered in the name server found by :func:`~ember.locate_ns`, and
    removed again when the daemon shuts down. Prints each object's URI when ``verbose``.
    """
    daemon = daemon or Daemon(host=host, port=port, servertype=servertype)
    if use_ns and daemon.ns is None:
        daemon.use_name_server(True)
    with daemon:
        for obj, name in objects.items():
            uri = daemon.register(obj, name)
            if verbose:
                published = f"\n    name = {name} (in the name server)" if use_ns and name else ""
                print(f"Object {obj!r}:\n    uri = {uri}{published}")
        if verbose:
            print("Ember daemon running.")
        daemon.request_loop()
