"""Typed proxies: let type checkers see a proxy as the class it stands for.

>>> with ember.Proxy(uri) as proxy:
...     greeter = ember.typed(Greeter, proxy)   # the same proxy, typed as Greeter
...     greeter.greet("x")                      # mypy checks the arguments, knows it returns str

Plain mypy (no plugin) then checks every call against the class's signatures. At run time
nothing changes: the object is the proxy (``typed`` returns it, or makes one from a URI), so
keep the ``Proxy`` (or ``AsyncProxy``) variable for the underscore controls such as
``_release()``. For an ``AsyncProxy`` give a class whose methods are ``async def``
(a Protocol written for the client, for instance), since its calls must be awaited.
"""

from __future__ import annotations

from typing import Any, TypeVar, cast

from ..uri import URI
from ._base import ProxyCore
from .proxy import Proxy

__all__ = ["typed"]

T = TypeVar("T")


def typed(interface: type[T], proxy_or_uri: ProxyCore | str | URI, **options: Any) -> T:
    """``proxy_or_uri`` (a proxy, or a URI to make a :class:`Proxy` for) typed as ``interface``."""
    if not isinstance(interface, type):
        raise TypeError(f"typed() needs a class to type the proxy as, not {interface!r}")
    proxy = proxy_or_uri if isinstance(proxy_or_uri, ProxyCore) else Proxy(proxy_or_uri, **options)
    return cast(T, proxy)
