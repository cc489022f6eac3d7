"""The name server and discovery: ``Pyro.NameServer``, storage, broadcast, ``locate_ns``, ``resolve``.

>>> ns = ember.locate_ns()
>>> ns.register("shop.cart", daemon.register(Cart), metadata={"v2"})
>>> ember.Proxy("PYRONAME:shop.cart").add("apple")
"""

from __future__ import annotations

from .locate import abroadcast_for_ns, alocate_ns, aresolve, broadcast_for_ns, locate_ns, resolve
from .nameserver import NAMESERVER_NAME, AutoCleaner, NameServer
from .responder import BroadcastResponder
from .service import NameServerService, start_ns, start_ns_loop
from .storage import Leases, Storage, Watch, open_storage
from .storage.memory import MemoryStorage
from .storage.sqlite import SqlStorage

__all__ = [
    "AutoCleaner",
    "BroadcastResponder",
    "Leases",
    "MemoryStorage",
    "NAMESERVER_NAME",
    "NameServer",
    "NameServerService",
    "SqlStorage",
    "Storage",
    "Watch",
    "abroadcast_for_ns",
    "alocate_ns",
    "aresolve",
    "broadcast_for_ns",
    "locate_ns",
    "open_storage",
    "resolve",
    "start_ns",
    "start_ns_loop",
]
