"""Mobile code, client side: ship a module's source to a daemon (see :mod:`ember.mobile`)."""

from __future__ import annotations

import inspect
import sys
import types
from typing import Any

from ..errors import CommunicationError
from ..uri import URI
from .proxy import Proxy

__all__ = ["ship", "MOBILE_CODE_NAME"]

MOBILE_CODE_NAME = "Ember.MobileCode"  # the daemon's receiver object (ember.server.mobile)


def ship(target: Any, module: types.ModuleType | str, source: str | None = None) -> bool:
    """Send a module's source to the daemon serving ``target`` (a proxy or a URI).

    Returns True when the daemon installed it, False when it already had it. Raises
    :class:`~ember.errors.SecurityError` when the daemon refuses it, and
    :class:`~ember.errors.CommunicationError` when the daemon has no mobile code enabled.
    """
    name = module if isinstance(module, str) else module.__name__
    if source is None:
        if isinstance(module, str):
            module = sys.modules[module]
        source = inspect.getsource(module)
    if isinstance(target, Proxy):
        target._bind()
        uri = target._bound_uri or target._pyroUri
    else:
        uri = Proxy(URI(target))._resolve()
    try:
        with Proxy[Any](f"PYRO:{MOBILE_CODE_NAME}@{uri.location}") as receiver:
            return receiver.install(name, source)
    except CommunicationError as exc:
        if "unknown object" in str(exc):
            raise CommunicationError(f"the daemon at {uri.location} does not accept mobile code "
                                     "(it needs Daemon(mobile_code=validator))") from None
        raise
