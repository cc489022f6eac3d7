"""Ember: remote Python objects, speaking the Pyro5 wire protocol.

>>> import ember
>>> @ember.expose
... class Calc:
...     def add(self, a, b):
...         return a + b
"""

from __future__ import annotations

from . import errors
from .blob import SerializedBlob
from .client import BatchProxy, Proxy
from .client.aproxy import AsyncBatchProxy, AsyncProxy
from .config import config
from .context import current_context
from .naming import locate_ns, resolve
from .serializers import (
    register_class_to_dict,
    register_dict_to_class,
    register_type,
    tobytes,
    unregister_class_to_dict,
    unregister_dict_to_class,
)
from .server import Daemon, behavior, callback, expose, oneway, serve
from .uri import URI

__version__ = "0.1.0"

__all__ = [
    "AsyncBatchProxy",
    "AsyncProxy",
    "BatchProxy",
    "Daemon",
    "Proxy",
    "SerializedBlob",
    "URI",
    "__version__",
    "behavior",
    "callback",
    "config",
    "current_context",
    "errors",
    "expose",
    "locate_ns",
    "oneway",
    "register_class_to_dict",
    "register_dict_to_class",
    "register_type",
    "resolve",
    "serve",
    "tobytes",
    "unregister_class_to_dict",
    "unregister_dict_to_class",
]
