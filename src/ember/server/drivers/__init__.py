"""Server drivers by name: ``Daemon(servertype=NAME)`` looks the name up here.

Built in: ``"thread"`` (:class:`.threadpool.ThreadPoolServer`), ``"multiplex"``
(:class:`.multiplex.MultiplexServer`) and ``"asyncio"`` (:class:`.asyncio.AsyncioServer`).
Another server type (trio, a uvloop-tuned loop, ...) implements :class:`.base.Driver` —
usually by subclassing :class:`.base.BaseDriver` — and registers a factory
``factory(daemon, listening_socket) -> driver`` with :func:`register_driver`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .asyncio import AsyncioServer
from .base import BaseDriver, Driver, SelectorDriver
from .multiplex import MultiplexServer
from .threadpool import ThreadPoolServer

__all__ = ["AsyncioServer", "BaseDriver", "Driver", "MultiplexServer", "SelectorDriver", "ThreadPoolServer",
           "driver_factory", "driver_names", "register_driver"]

_DRIVERS: dict[str, Callable[[Any, Any], Any]] = {
    "thread": ThreadPoolServer,
    "multiplex": MultiplexServer,
    "asyncio": AsyncioServer,
}


def register_driver(name: str, factory: Callable[[Any, Any], Driver]) -> None:
    """Make ``Daemon(servertype=name)`` serve with ``factory(daemon, listening_socket)``."""
    if not name or not isinstance(name, str):
        raise ValueError("a driver needs a non-empty name")
    _DRIVERS[name] = factory


def driver_names() -> list[str]:
    return list(_DRIVERS)


def driver_factory(name: str) -> Callable[[Any, Any], Driver]:
    """The factory registered as ``name``; ValueError naming the known ones otherwise."""
    try:
        return _DRIVERS[name]
    except KeyError:
        known = ", ".join(repr(n) for n in _DRIVERS)
        raise ValueError(f"unknown servertype {name!r}; use {known}") from None
