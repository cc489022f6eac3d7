"""``Pyro5.api``: the names a Pyro5 program imports, on Ember.

>>> from ember.compat.Pyro5 import api      # was: import Pyro5.api as api
>>> @api.expose
... class Greeter:
...     def hello(self, name):
...         return f"hello, {name}"
"""

from __future__ import annotations

from .callcontext import current_context
from .client import BatchProxy, Proxy, SerializedBlob
from .config import config
from .core import URI, locate_ns, resolve, type_meta
from .nameserver import start_ns, start_ns_loop
from .serializers import SerializerBase
from .server import Daemon, DaemonObject, behavior, callback, expose, oneway, serve

__all__ = [
    "BatchProxy", "Daemon", "DaemonObject", "Proxy", "SerializedBlob", "SerializerBase", "URI", "behavior",
    "callback", "config", "current_context", "expose", "locate_ns", "oneway", "register_class_to_dict",
    "register_dict_to_class", "resolve", "serve", "start_ns", "start_ns_loop", "type_meta",
    "unregister_class_to_dict", "unregister_dict_to_class",
]

register_class_to_dict = SerializerBase.register_class_to_dict
unregister_class_to_dict = SerializerBase.unregister_class_to_dict
register_dict_to_class = SerializerBase.register_dict_to_class
unregister_dict_to_class = SerializerBase.unregister_dict_to_class
