"""What ``async def`` methods need from a daemon that also serves plain ones: proxies in
their arguments in the asyncio flavour, and their async generators streamed like any other
iterator (item by item, each ``__anext__`` run through the driver)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..client import AsyncProxy, Proxy

__all__ = ["async_flavour", "SyncIterator"]


def async_flavour(args: Any, kwargs: Any) -> tuple[Any, Any]:
    """Proxies passed to an ``async def`` method arrive as :class:`~ember.AsyncProxy`."""
    for a in args:  # a plain loop: the common case (no proxy) costs a few type checks
        if isinstance(a, Proxy):
            args = [x._as(AsyncProxy) if isinstance(x, Proxy) else x for x in args]
            break
    if kwargs:
        for v in kwargs.values():
            if isinstance(v, Proxy):
                kwargs = {k: x._as(AsyncProxy) if isinstance(x, Proxy) else x for k, x in kwargs.items()}
                break
    return args, kwargs


class SyncIterator:
    """A plain iterator over an async generator, so it can be streamed like any other."""

    def __init__(self, agen: Any, await_coroutine: Callable[[Any], Any]) -> None:
        self.agen = agen
        self.await_coroutine = await_coroutine  # the driver's: runs a coroutine to its end from a thread

    def __iter__(self) -> SyncIterator:
        return self

    def __next__(self) -> Any:
        try:
            return self.await_coroutine(self.agen.__anext__())
        except StopAsyncIteration:
            raise StopIteration from None

    def close(self) -> None:
        self.await_coroutine(self.agen.aclose())
