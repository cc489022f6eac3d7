"""Ember: remote Python objects, speaking the Pyro5 wire protocol.

>>> import ember
>>> @ember.expose
... class Calc:
...     def add(self, a, b):
...         return a + b

``import ember`` is the one import users need; the names below are loaded on first use
(PEP 562), so importing a lower layer such as ``ember.protocol`` loads nothing above it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .config import config  # eager: the submodule ``ember.config`` must not shadow the object

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "AsyncBatchProxy": "ember.client",
    "AsyncProxy": "ember.client",
    "BatchProxy": "ember.client",
    "ChunkReader": "ember.client.streaming",
    "Daemon": "ember.server",
    "Proxy": "ember.client",
    "SerializedBlob": "ember.serializers",
    "URI": "ember.uri",
    "add_client_hook": "ember.client",
    "awrite_stream": "ember.client.streaming",
    "behavior": "ember.server",
    "callback": "ember.server",
    "current_context": "ember.context",
    "expose": "ember.server",
    "idempotent": "ember.server",
    "locate_ns": "ember.naming",
    "oneway": "ember.server",
    "register_class_to_dict": "ember.serializers",
    "register_dict_to_class": "ember.serializers",
    "register_type": "ember.serializers",
    "remove_client_hook": "ember.client",
    "resolve": "ember.naming",
    "serve": "ember.server",
    "stream_file": "ember.client.streaming",
    "tobytes": "ember.serializers",
    "typed": "ember.client",
    "unregister_class_to_dict": "ember.serializers",
    "unregister_dict_to_class": "ember.serializers",
    "upload": "ember.server.uploads",
    "write_stream": "ember.client.streaming",
}
_SUBMODULES = {"errors", "aio", "events", "mobile", "naming", "serializers", "protocol", "config", "uri", "context", "client",
               "server", "transport", "tools", "services", "web"}

__all__ = [
    "AsyncBatchProxy",
    "AsyncProxy",
    "BatchProxy",
    "ChunkReader",
    "Daemon",
    "Proxy",
    "SerializedBlob",
    "URI",
    "__version__",
    "add_client_hook",
    "awrite_stream",
    "behavior",
    "callback",
    "config",
    "current_context",
    "errors",
    "expose",
    "idempotent",
    "locate_ns",
    "oneway",
    "register_class_to_dict",
    "register_dict_to_class",
    "register_type",
    "remove_client_hook",
    "resolve",
    "serve",
    "stream_file",
    "tobytes",
    "typed",
    "unregister_class_to_dict",
    "unregister_dict_to_class",
    "upload",
    "write_stream",
]

if TYPE_CHECKING:
    from . import errors
    from .client import AsyncBatchProxy, AsyncProxy, BatchProxy, Proxy, add_client_hook, remove_client_hook, typed
    from .client.streaming import ChunkReader, awrite_stream, stream_file, write_stream
    from .context import current_context
    from .naming import locate_ns, resolve
    from .serializers import (
        SerializedBlob,
        register_class_to_dict,
        register_dict_to_class,
        register_type,
        tobytes,
        unregister_class_to_dict,
        unregister_dict_to_class,
    )
    from .server import Daemon, behavior, callback, expose, idempotent, oneway, serve
    from .server.uploads import upload
    from .uri import URI


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is not None:
        value = getattr(importlib.import_module(module), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"ember.{name}")
    else:
        raise AttributeError(f"module 'ember' has no attribute {name!r}")
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS) | _SUBMODULES)
