"""The client side: proxies to remote objects, blocking and asyncio.

Both proxy classes travel over the wire in Pyro5's ``Pyro5.client.Proxy`` form; a proxy
that arrives in a result is built in the flavour of the proxy that received it.
"""

from __future__ import annotations

from .. import serializers
from ._base import ProxyCore, dict_to_proxy, proxy_to_dict
from .aproxy import AsyncBatchProxy, AsyncProxy, AsyncRemoteIterator
from .batch import BatchProxy
from .hooks import ClientHook, add_client_hook, remove_client_hook
from .proxy import Proxy, RemoteIterator
from .typedproxy import typed

__all__ = ["AsyncBatchProxy", "AsyncProxy", "AsyncRemoteIterator", "BatchProxy", "ClientHook", "Proxy",
           "ProxyCore", "RemoteIterator", "add_client_hook", "remove_client_hook", "typed"]

# the client package's one piece of wiring: proxies of both flavours have a wire form
serializers.register_class_to_dict(ProxyCore, proxy_to_dict)
serializers.register_dict_to_class("Pyro5.client.Proxy", lambda _name, d: dict_to_proxy(Proxy, d))
