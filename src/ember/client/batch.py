"""``BatchProxy``: many calls to one object in a single message and a single reply."""

from __future__ import annotations

from typing import Any

from ..protocol import F_BATCH, F_ONEWAY
from .proxy import Proxy

__all__ = ["BatchProxy"]


class _BatchMethod:
    __slots__ = ("_batch", "_name")

    def __init__(self, batch: BatchProxy, name: str) -> None:
        self._batch = batch
        self._name = name

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        # already the wire form of one call; Ember daemons also take (name, args) without kwargs
        self._batch._calls.append((self._name, args, kwargs) if kwargs or not self._batch._short else (self._name, args))


class BatchProxy:
    """Record calls, then send them all at once.

    >>> batch = ember.BatchProxy(proxy)
    >>> batch.add(1, 2); batch.add(3, 4)
    >>> list(batch())          # results in order
    [3, 7]

    Calling the batch returns a generator of the results; if a call raised, the generator
    raises that exception when it reaches it, and later calls were not executed.
    ``batch(oneway=True)`` sends without waiting and returns None.
    """

    def __init__(self, proxy: Proxy) -> None:
        self._proxy = proxy
        self._calls: list[tuple] = []
        self._short = False  # record calls without empty kwargs (the daemon is Ember's)

    def __getattr__(self, name: str) -> _BatchMethod:
        if name.startswith("_"):
            raise AttributeError(name)
        proxy = self._proxy
        if not proxy._metadata_known:
            proxy._bind()
        self._short = proxy._extended
        if name not in proxy._methods:
            raise AttributeError(f"remote object '{proxy._pyroUri}' has no exposed method '{name}'")
        method = _BatchMethod(self, name)
        self.__dict__[name] = method  # later lookups skip __getattr__
        return method

    def __len__(self) -> int:
        return len(self._calls)

    def __enter__(self) -> BatchProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self._calls.clear()

    def __call__(self, oneway: bool = False) -> Any:
        calls, self._calls = self._calls, []
        if not calls:
            return None if oneway else iter(())
        flags = F_BATCH | (F_ONEWAY if oneway else 0)
        proxy = self._proxy
        with proxy._lock:
            if proxy._sock is None:
                proxy._connect()
            # (name, args, kwargs) tuples: every serializer sends them as Pyro5 expects
            payload = calls
            if self._short and not proxy._extended:  # (re)connected to a non-Ember daemon since recording
                payload = [c if len(c) == 3 else (c[0], c[1], {}) for c in calls]
            object_id = (proxy._bound_uri or proxy._pyroUri).object
            return proxy._invoke_locked(object_id, "<batch>", payload, None, flags)
