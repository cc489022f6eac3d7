"""Ember: remote Python objects, speaking the Pyro5 wire protocol.

>>> import ember
>>> @ember.expose
... class Calc:
...     def add(self, a, b):
...         return a + b
"""

from __future__ import annotations

from . import errors
from .config import config
from .serializers import (
    register_class_to_dict,
    register_dict_to_class,
    register_type,
    tobytes,
    unregister_class_to_dict,
    unregister_dict_to_class,
)
from .uri import URI

__version__ = "0.1.0"

__all__ = [
    "URI",
    "__version__",
    "config",
    "errors",
    "register_class_to_dict",
    "register_dict_to_class",
    "register_type",
    "tobytes",
    "unregister_class_to_dict",
    "unregister_dict_to_class",
]
