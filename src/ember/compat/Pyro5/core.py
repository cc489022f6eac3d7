"""``Pyro5.core``: ``URI``, ``resolve``, ``locate_ns``, ``type_meta`` and the two well-known ids."""

from __future__ import annotations

from typing import Any

from ...client import resolve as _resolve
from ...config import config as _ember_config
from ...server.publish import present_ns_key
from ...uri import URI
from ._unsupported import module_getattr
from .client import Proxy
from .config import config

__all__ = ["DAEMON_NAME", "NAMESERVER_NAME", "URI", "config", "locate_ns", "resolve", "type_meta"]

DAEMON_NAME = "Pyro.Daemon"
NAMESERVER_NAME = "Pyro.NameServer"


def locate_ns(host: Any = "", port: int | None = None, broadcast: bool = True) -> Proxy:
    """A compat proxy to the name server: at ``host`` (and ``port``) when given, else found
    via ``NS_HOST``, then UDP broadcast (as Pyro5; Ember then also tries ``NS_URI_FILE``).
    With Ember's ``NS_KEY`` set (``PYRO_NS_KEY``) the proxy presents that name server write key."""
    proxy = _resolve.find_ns(str(host) if host else None, port, broadcast, proxy_class=Proxy)
    return present_ns_key(proxy, _ember_config.NS_KEY)


def resolve(uri: str | URI, delay_time: float = 0.0) -> URI:
    """The direct ``PYRO:`` URI of a ``PYRONAME:``/``PYROMETA:`` URI (a ``PYRO:`` one as is);
    ``delay_time`` seconds of waiting for the name to appear."""
    if isinstance(uri, str):
        uri = URI(uri)
    elif not isinstance(uri, URI):
        raise TypeError("can only resolve Pyro URIs")
    if uri.protocol == "PYRO":
        return uri
    with _ember_config.override(NS_LOOKUP_DELAY=delay_time):
        return _resolve.resolve(uri, Proxy)


def type_meta(class_or_object: Any, prefix: str = "class:") -> frozenset[str]:
    """Metadata tags for a class (or an object's class) and its bases, as Pyro5 writes
    them: ``class:module.Name`` for every class in the MRO that is not a builtin."""
    cls = class_or_object if isinstance(class_or_object, type) else type(class_or_object)
    return frozenset(prefix + c.__module__ + "." + c.__name__ for c in cls.__mro__ if c.__module__ != "builtins")


__getattr__ = module_getattr(__name__, {
    "_ExceptionWrapper": "internal to Pyro5; batch failures arrive as ember.serializers.ExceptionWrapper",
})
