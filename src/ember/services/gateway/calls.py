"""Making calls for the gateway: the proxy pool, argument parsing, JSON out, error -> HTTP status.

The pool keeps connections to daemons across requests (Pyro5's gateway looks the name up
and opens a new connection for every request). Per daemon URI it holds up to ``size``
idle :class:`~ember.client.AsyncProxy` objects; a daemon that multiplexes (an Ember
asyncio daemon) needs only one, shared by every request. Name lookups are cached for
``name_ttl`` seconds and dropped at the first connection failure, so a re-registered
name is picked up at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

from ...client import AsyncProxy
from ...errors import CommunicationError, NamingError, PyroError, TimeoutError
from ...serializers import JsonSerializer, exception_to_dict

__all__ = [
    "GatewayRefusal",
    "ProxyPool",
    "deadline",
    "call_arguments",
    "correlation_id",
    "dumps",
    "error_body",
    "is_exposed",
    "query_arguments",
]

_json = JsonSerializer()


class _Deadline:
    """``async with deadline(seconds)``: cancel the block after ``seconds``, raising asyncio.TimeoutError
    (Python 3.10's stand-in for ``asyncio.timeout``: one timer, no extra task per call)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.fired = False
        self.handle: asyncio.TimerHandle | None = None

    async def __aenter__(self) -> _Deadline:
        task = asyncio.current_task()
        assert task is not None
        self.handle = asyncio.get_running_loop().call_later(self.seconds, self._fire, task)
        return self

    def _fire(self, task: asyncio.Task) -> None:
        self.fired = True
        task.cancel()

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        assert self.handle is not None
        self.handle.cancel()
        if self.fired and exc_type is asyncio.CancelledError:
            raise asyncio.TimeoutError


deadline: Callable[[float], Any] = asyncio.timeout if sys.version_info >= (3, 11) else _Deadline  # type: ignore[attr-defined]


class GatewayRefusal(PyroError):
    """A request the gateway answers itself with ``status`` (400, 403, 404, 413, 504 ...)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def dumps(value: Any) -> bytes:
    """JSON for an HTTP body: bytes as base64 dicts, sets and tuples as lists, NaN allowed (as Pyro5)."""
    return _json.dumps(value)


def error_body(exc: BaseException) -> bytes:
    """The Pyro5 exception dict of ``exc`` as JSON: ``__class__``, ``__exception__``, ``args``,
    ``attributes`` (the remote traceback is ``attributes._pyroTraceback``, a list of lines)."""
    try:
        return dumps(exception_to_dict(exc))
    except PyroError:  # arguments or attributes json cannot carry: keep the class and the text
        return dumps({"__class__": exception_to_dict(exc)["__class__"], "__exception__": True,
                      "args": [str(exc)], "attributes": {}})


def is_exposed(name: str, expose: re.Pattern[str] | None) -> bool:
    """May ``name`` be listed and called? It must match ``expose`` at its start (as in Pyro5);
    ``Pyro.*`` names (name server, daemon and services internals) only when the pattern
    itself names them."""
    if expose is None or not expose.match(name):
        return False
    return not name.startswith("Pyro.") or "Pyro" in expose.pattern


def correlation_id(header: str | None) -> uuid.UUID:
    """The request's ``X-Pyro-Correlation-Id`` (a UUID), or a new one."""
    if not header:
        return uuid.uuid4()
    try:
        return uuid.UUID(header.strip())
    except ValueError:
        raise GatewayRefusal(400, f"X-Pyro-Correlation-Id must be a UUID, got {header[:80]!r}") from None


def query_arguments(query: str) -> dict[str, Any]:
    """Keyword arguments from a query string, as Pyro5's gateway takes them: all strings, a
    name given more than once becomes a list; ``$key`` (the gateway key) is removed."""
    kwargs: dict[str, Any] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key == "$key":
            continue
        if key in kwargs:
            old = kwargs[key]
            kwargs[key] = [*old, value] if isinstance(old, list) else [old, value]
        else:
            kwargs[key] = value
    return kwargs


def call_arguments(query: str, body: bytes, content_type: str) -> tuple[list[Any], dict[str, Any]]:
    """``(args, kwargs)`` of a call: the query's string keyword arguments, plus a JSON body
    ``{"args": [...], "kwargs": {...}}`` with typed values, or a form body (strings)."""
    kwargs = query_arguments(query)
    args: list[Any] = []
    if not body.strip():
        return args, kwargs
    ctype = content_type.split(";")[0].strip().lower()
    if ctype == "application/x-www-form-urlencoded":
        extra = query_arguments(body.decode("utf-8", "replace"))
        return args, _merge(kwargs, extra)
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise GatewayRefusal(400, f"the request body is not valid JSON ({exc}); send "
                                  '{"args": [...], "kwargs": {...}} with Content-Type: application/json') from None
    if not isinstance(data, dict) or not set(data) <= {"args", "kwargs"}:
        got = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise GatewayRefusal(400, 'the JSON body must be an object {"args": [...], "kwargs": {...}} '
                                  f"(both optional), got {got}")
    body_args = data.get("args", [])
    body_kwargs = data.get("kwargs", {})
    if not isinstance(body_args, list):
        raise GatewayRefusal(400, f'"args" must be a JSON array, got {type(body_args).__name__}')
    if not isinstance(body_kwargs, dict):
        raise GatewayRefusal(400, f'"kwargs" must be a JSON object, got {type(body_kwargs).__name__}')
    return body_args, _merge(kwargs, body_kwargs)


def _merge(kwargs: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    both = set(kwargs) & set(extra)
    if both:
        raise GatewayRefusal(400, f"argument(s) {', '.join(sorted(both))} given both in the query and in the body")
    kwargs.update(extra)
    return kwargs


class _Target:
    """The connections of one daemon URI: idle proxies, a bound, or one shared proxy."""

    __slots__ = ("uri", "idle", "slots", "shared")

    def __init__(self, uri: str, size: int) -> None:
        self.uri = uri
        self.idle: list[AsyncProxy] = []
        self.slots = asyncio.Semaphore(size)
        self.shared: AsyncProxy | None = None


class ProxyPool:
    """Async proxies to the objects behind the gateway, reused across requests.

    ``locate``: a coroutine function returning a proxy to the name server. ``size``: most
    connections per daemon URI. ``timeout``: seconds for each call (and each connect).
    """

    def __init__(self, locate: Callable[[], Awaitable[AsyncProxy]], size: int = 16, timeout: float = 10.0,
                 name_ttl: float = 5.0) -> None:
        self._locate = locate
        self.size = size
        self.timeout = timeout
        self.name_ttl = name_ttl
        self._ns: AsyncProxy | None = None
        self._ns_lock: asyncio.Lock | None = None
        self._names: dict[str, tuple[float, str]] = {}
        self._targets: dict[str, _Target] = {}
        self.calls = 0
        self.connects = 0

    async def nameserver(self) -> AsyncProxy:
        """The (one, kept) proxy to the name server."""
        if self._ns is None:
            if self._ns_lock is None:
                self._ns_lock = asyncio.Lock()
            async with self._ns_lock:
                if self._ns is None:
                    try:
                        ns = await self._locate()
                    except NamingError as exc:
                        raise GatewayRefusal(503, f"no name server: {exc}") from None
                    ns._timeout = self.timeout
                    self._ns = ns
        return self._ns

    async def ns_call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """A call on the name server; a broken connection is dropped (the next call locates it again)."""
        ns = await self.nameserver()
        try:
            return await getattr(ns, method)(*args, **kwargs)
        except CommunicationError:
            self._ns = None
            with contextlib.suppress(Exception):
                await ns._release()
            raise

    async def lookup(self, name: str) -> str:
        """The URI of ``name`` (cached for ``name_ttl`` seconds); 404 when it is not registered."""
        now = time.monotonic()
        hit = self._names.get(name)
        if hit is not None and hit[0] > now:
            return hit[1]
        try:
            uri = str(await self.ns_call("lookup", name))
        except NamingError as exc:
            raise GatewayRefusal(404, f"unknown name {name!r}: {exc}") from None
        self._names[name] = (now + self.name_ttl, uri)
        return uri

    def forget(self, name: str) -> None:
        """Drop the cached lookup of ``name`` (after it was removed, or its daemon failed)."""
        self._names.pop(name, None)

    async def acquire(self, name: str) -> tuple[AsyncProxy, _Target]:
        """A connected proxy to ``name``'s object; give it back with :meth:`release`."""
        uri = await self.lookup(name)
        target = self._targets.get(uri)
        if target is None:
            target = self._targets[uri] = _Target(uri, self.size)
        shared = target.shared
        if shared is not None:
            return shared, target
        await target.slots.acquire()
        try:
            proxy = target.idle.pop() if target.idle else await self._connect(uri)
        except BaseException:
            target.slots.release()
            self.forget(name)
            raise
        if proxy._multiplex and target.shared is None:
            target.shared = proxy  # one connection carries every call at once: no need for more
            target.slots.release()
        return proxy, target

    async def release(self, name: str, proxy: AsyncProxy, target: _Target, broken: bool = False) -> None:
        """Give back a proxy from :meth:`acquire`; ``broken`` (a communication failure, a timeout,
        a cancelled call) closes its connection and forgets the name's lookup instead."""
        if target.shared is proxy:
            if broken:
                target.shared = None
                self.forget(name)
                await proxy._release()
            return
        target.slots.release()
        if broken:
            self.forget(name)
            await proxy._release()
        else:
            target.idle.append(proxy)

    @contextlib.asynccontextmanager
    async def proxy(self, name: str) -> AsyncIterator[AsyncProxy]:
        """:meth:`acquire` and :meth:`release` around a block (broken on a communication failure)."""
        proxy, target = await self.acquire(name)
        broken = True
        try:
            yield proxy
            broken = False
        except PyroError as exc:
            broken = isinstance(exc, CommunicationError) and getattr(exc, "_pyroTraceback", None) is None
            raise
        finally:
            await self.release(name, proxy, target, broken)

    async def _connect(self, uri: str) -> AsyncProxy:
        proxy = AsyncProxy(uri)
        proxy._serializer = "json"  # what Pyro5's gateway uses: results as any Pyro5 daemon makes them for json
        proxy._timeout = self.timeout
        self.connects += 1
        await proxy._bind()
        return proxy

    async def call(self, proxy: AsyncProxy, method: str, args: list[Any], kwargs: dict[str, Any],
                   oneway: bool = False) -> Any:
        """Call ``method`` (or read an attribute of that name); 404 when the object has neither."""
        self.calls += 1
        if method in proxy._attrs and method not in proxy._methods:
            if args or kwargs:
                raise GatewayRefusal(400, f"{method!r} is an attribute: reading it takes no arguments")
            return await proxy._get(method)
        if method not in proxy._methods:
            raise GatewayRefusal(404, f"remote object {proxy._pyroUri.object!r} has no exposed method or "
                                      f"attribute {method!r}")
        if oneway:
            proxy._oneway.add(method)
            try:
                return await proxy._invoke(method, args, kwargs)
            finally:
                proxy._oneway.discard(method)
        return await proxy._invoke(method, args, kwargs)

    def statistics(self) -> dict[str, Any]:
        """Calls made, connections opened, daemons known, idle connections."""
        return {"calls": self.calls, "connects": self.connects, "daemons": len(self._targets),
                "idle": sum(len(t.idle) for t in self._targets.values()),
                "shared": sum(1 for t in self._targets.values() if t.shared is not None)}

    async def aclose(self) -> None:
        """Close every pooled connection and the name server connection."""
        targets, self._targets = self._targets, {}
        for target in targets.values():
            for proxy in [*target.idle, *([target.shared] if target.shared else [])]:
                with contextlib.suppress(Exception):
                    await proxy._release()
        ns, self._ns = self._ns, None
        if ns is not None:
            with contextlib.suppress(Exception):
                await ns._release()


def timeout_refusal(what: str, timeout: float) -> GatewayRefusal:
    """504 for a daemon that did not answer (or could not be reached) within ``timeout``."""
    return GatewayRefusal(504, f"{what} did not answer within {timeout:g} s")


def communication_refusal(what: str, exc: CommunicationError) -> GatewayRefusal:
    """504 for a daemon that cannot be reached or dropped the connection (the gateway itself is fine)."""
    if isinstance(exc, TimeoutError):
        return GatewayRefusal(504, f"{what} timed out: {exc}")
    return GatewayRefusal(504, f"{what} is unreachable: {type(exc).__name__}: {exc}")
