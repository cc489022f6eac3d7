"""The client side: proxies to remote objects."""

from .batch import BatchProxy
from .proxy import Proxy, RemoteIterator

__all__ = ["BatchProxy", "Proxy", "RemoteIterator"]
