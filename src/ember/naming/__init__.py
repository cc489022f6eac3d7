"""The name server and discovery: ``Pyro.NameServer``, storage, broadcast, ``locate_ns``, ``resolve``.

>>> ns = ember.locate_ns()
>>> ns.register("shop.cart", daemon.register(Cart), metadata={"v2"})
>>> ember.Proxy("PYRONAME:shop.cart").add("apple")
"""

from __future__ import annotations

from .broadcast import BroadcastResponder
from .locate import broadcast_for_ns, locate_ns, resolve
from .nameserver import NAMESERVER_NAME, AutoCleaner, NameServer
from .service import NameServerService, start_ns, start_ns_loop
from .storage import MemoryStorage, SqlStorage, Storage, open_storage

__all__ = [
    "AutoCleaner",
    "BroadcastResponder",
    "MemoryStorage",
    "NAMESERVER_NAME",
    "NameServer",
    "NameServerService",
    "SqlStorage",
    "Storage",
    "broadcast_for_ns",
    "locate_ns",
    "open_storage",
    "resolve",
    "start_ns",
    "start_ns_loop",
]
