"""Finding the name server, and turning ``PYRONAME:``/``PYROMETA:``/``PYROLOC:`` into ``PYRO:``.

One plan, two drivers. The plan (:func:`_locate_plan`, :func:`_resolve_plan`) decides
everything: what to try in which order, the 3 s connect timeout for name servers and
daemons asked during resolution, ``NS_LOOKUP_DELAY`` retrying, and the errors (the one
from a failed search lists every attempt). It does no I/O: it is a generator that yields
*steps* (connect a proxy, call a method, release a proxy, broadcast, read a file, sleep)
and gets each step's result (or exception) sent back. The blocking driver (:func:`_run`)
performs the steps with a :class:`~ember.Proxy`, the asyncio driver (:func:`_arun`) awaits
them with an :class:`~ember.aio.AsyncProxy`; so :func:`resolve` and :func:`aresolve`,
:func:`find_ns` and :func:`afind_ns` cannot drift apart.

The proxy class is a parameter (this module sits below ``client.proxy``/``client.aproxy``,
which use it to resolve their own URIs); :mod:`ember.naming.locate` supplies it for the
public ``ember.locate_ns``/``ember.resolve``/``ember.aio.locate_ns``/``ember.aio.resolve``.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import config
from ..errors import CommunicationError, DaemonError, NamingError, PyroError
from ..transport import udp
from ..uri import URI

__all__ = [
    "abroadcast_for_ns",
    "acandidates",
    "afind_ns",
    "afind_ns_uri",
    "aresolve",
    "candidates",
    "clear_cache",
    "forget",
    "mark_failed",
    "ReplicaRounds",
    "broadcast_for_ns",
    "find_ns",
    "find_ns_uri",
    "ns_uri",
    "resolve",
]

_NAMESERVER_NAME = "Pyro.NameServer"  # the name server's object id (a Pyro5 constant; ember.naming.NAMESERVER_NAME)
_DAEMON_NAME = "Pyro.Daemon"
_LOCATE_TIMEOUT = 3.0  # seconds for connecting to a name server (or a PYROLOC daemon) when COMMTIMEOUT is unset
_BROADCAST_ROUNDS = 3
_BROADCAST_WAIT = 0.7


# ---- steps: what the plan asks a driver to do -----------------------------------------------

@dataclass(frozen=True)
class _Connect:
    """A proxy of the driver's class to ``uri``, bound (handshake done) within the locate
    timeout; the timeout stays set on the proxy when ``keep_timeout``."""

    uri: URI
    keep_timeout: bool = False


@dataclass(frozen=True)
class _Call:
    proxy: Any
    method: str
    args: tuple


@dataclass(frozen=True)
class _Release:
    proxy: Any


@dataclass(frozen=True)
class _Broadcast:
    port: int
    addresses: list[str]


@dataclass(frozen=True)
class _ReadFile:
    path: str | Path


@dataclass(frozen=True)
class _Sleep:
    seconds: float


_Step = _Connect | _Call | _Release | _Broadcast | _ReadFile | _Sleep
_Plan = Generator[_Step, Any, Any]


# ---- the plan -------------------------------------------------------------------------------

def ns_uri(host: str, port: int | None = None) -> URI:
    """The name server's URI at ``host`` (a host name, an IP address, or ``./u:PATH``) and
    ``port`` (default ``NS_PORT``)."""
    if host.startswith("./u:"):
        return URI(f"PYRO:{_NAMESERVER_NAME}@{host}")
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return URI(f"PYRO:{_NAMESERVER_NAME}@{host}:{port or config.NS_PORT}")


def _ns_item(item: str) -> URI:
    """The name server URI for one ``NS_HOSTS`` item: ``host:port``, ``[v6]:port``, ``host`` or ``./u:PATH``."""
    text = item.strip()
    if text.startswith("./u:"):
        return ns_uri(text)
    host, sep, port = text.rpartition(":")
    if sep and port.isdigit() and (":" not in host or host.startswith("[")):
        return ns_uri(host.strip("[]"), int(port))
    return ns_uri(text)


def _locate_plan(host: str | None, port: int | None, broadcast: bool, bcport: int | None,
                 broadcast_addrs: list[str] | None, uri_file: str | Path | None) -> _Plan:
    """A bound proxy to the name server: ``host`` only; else an explicit URI file (the
    ``uri_file`` argument or ``NS_URI_FILE``) first, then NS_HOST, broadcast."""
    if host:
        uri = ns_uri(host, port)
        try:
            return (yield _Connect(uri))
        except CommunicationError as exc:
            raise NamingError(f"cannot locate the name server at {uri.location}: {exc}") from None
    tried: list[str] = []
    path = uri_file or config.NS_URI_FILE
    if path:
        # an explicit location wins over the NS_HOST default (which may be anything listening on 9090)
        try:
            text = yield _ReadFile(path)
            return (yield _Connect(URI(text.strip())))
        except OSError as exc:
            tried.append(f"URI file {str(path)!r} ({exc.strerror or exc})")
        except PyroError as exc:  # CommunicationError, or an invalid URI in the file
            tried.append(f"URI file {str(path)!r} ({exc})")
    hosts = list(config.NS_HOSTS)
    random.shuffle(hosts)  # several name servers sharing one registry: spread the clients over them
    for item in hosts:
        uri = _ns_item(item)
        try:
            return (yield _Connect(uri))
        except CommunicationError as exc:
            tried.append(f"{uri.location} from NS_HOSTS ({exc})")
    uri = ns_uri(config.NS_HOST, port)
    try:
        return (yield _Connect(uri))
    except CommunicationError as exc:
        tried.append(f"{uri.location} ({exc})")
    if broadcast and config.PREFER_IP_VERSION != 6:
        addrs = broadcast_addrs or config.BROADCAST_ADDRS
        bcport = bcport or config.NS_BCPORT
        found = yield _Broadcast(bcport, addrs)
        where = f"broadcast to {', '.join(addrs)} on udp port {bcport}"
        if found is None:
            tried.append(f"{where} (no answer)")
        else:
            try:
                return (yield _Connect(found))
            except CommunicationError as exc:
                tried.append(f"{where}: answer {found} ({exc})")
    else:
        tried.append("no broadcast (disabled)")
    if not path:
        tried.append("no URI file (set NS_URI_FILE)")
    raise NamingError("cannot locate the name server; tried: " + "; ".join(tried))


def _retrying(step: Callable[[], _Step], done: Callable[[Any], bool]) -> _Plan:
    """The result of ``step()``, tried again while it raises NamingError or is not ``done``,
    for up to ``NS_LOOKUP_DELAY`` seconds."""
    delay = config.NS_LOOKUP_DELAY
    deadline = time.monotonic() + delay
    while True:
        try:
            result = yield step()
        except NamingError:
            if time.monotonic() >= deadline:
                raise
        else:
            if done(result) or time.monotonic() >= deadline:
                return result
        yield _Sleep(max(0.2, delay / 5))


_MAX_INDIRECTIONS = 8  # a name may map to another PYRONAME:/PYROMETA: URI; a loop stops here


def _resolve_plan(uri: str | URI) -> _Plan:
    """Follow ``uri`` to a ``PYRO:`` URI: a name may map to another magic URI, up to
    ``_MAX_INDIRECTIONS`` steps."""
    start = current = URI(uri)
    for _ in range(_MAX_INDIRECTIONS):
        if current.protocol == "PYRO":
            return current
        current = yield from _resolve_once(current)
    if current.protocol == "PYRO":
        return current
    raise NamingError(f"cannot resolve {start}: more than {_MAX_INDIRECTIONS} names lead to one another (a loop?)")


def _resolve_once(uri: URI) -> _Plan:
    """One step: the URI a magic URI stands for (which may itself be magic)."""
    if uri.protocol == "PYROLOC":
        return (yield from _pyroloc_plan(uri))
    if uri.sockname is not None:
        ns = yield from _locate_plan("./u:" + uri.sockname, None, True, None, None, None)
    else:
        ns = yield from _locate_plan(uri.host, uri.port, True, None, None, None)
    try:
        if uri.protocol == "PYRONAME":
            return URI((yield from _retrying(lambda: _Call(ns, "lookup", (uri.object,)), lambda _: True)))
        tags = sorted(uri.metadata)
        # sent positionally, as Pyro5's own resolution does
        found = yield from _retrying(lambda: _Call(ns, "yplookup", (tags, None, False)), bool)
        if not found:
            raise NamingError(f"no registrations available with desired metadata properties {tags}")
        return URI(random.choice(list(found.values())))
    finally:
        yield _Release(ns)


# ---- replicas and the lookup cache ----------------------------------------------------------

_LOOKUP_ATTEMPTS = 3  # name servers asked in turn when one dies during a lookup
_cache: dict[str, tuple[float, tuple[URI, ...]]] = {}  # PYRONAME text -> (expiry, direct URIs)
_turns: dict[str, itertools.count] = {}  # PYRONAME text -> round-robin counter
_cache_lock = threading.Lock()


def clear_cache() -> None:
    """Forget every cached lookup."""
    with _cache_lock:
        _cache.clear()


def forget(uri: str | URI) -> None:
    """Drop the cached lookup of ``uri`` (a ``PYRONAME:`` URI): the next connect asks again."""
    with _cache_lock:
        _cache.pop(str(uri), None)


def mark_failed(uri: str | URI, direct: URI) -> None:
    """``direct``, one replica of ``uri``, failed: leave it out of the cached lookup until it expires."""
    key = str(uri)
    with _cache_lock:
        entry = _cache.get(key)
        if entry is None:
            return
        rest = tuple(u for u in entry[1] if u != direct)
        if rest:
            _cache[key] = (entry[0], rest)
        else:
            del _cache[key]


class ReplicaRounds:
    """How both proxies connect to a name's replicas: each in turn, a failed one left out of
    the lookup cache, and one more round with a fresh lookup when the list came from the cache.

    >>> rounds = ReplicaRounds(name)
    >>> while True:
    ...     uris, cached = candidates(name, Proxy, rounds.use_cache)
    ...     for uri in uris:
    ...         try: return connect(uri)
    ...         except CommunicationError as exc: rounds.failed(uri, exc)
    ...     rounds.end_of_round(cached)          # raises when there is no round left
    """

    def __init__(self, name: URI) -> None:
        self.name = name
        self.use_cache = True
        self.error: CommunicationError | None = None

    def failed(self, uri: URI, exc: CommunicationError) -> None:
        self.error = exc
        mark_failed(self.name, uri)

    def end_of_round(self, cached: bool) -> None:
        """Every replica of this round failed: raise the last error, unless the list came from the
        cache (then the next round asks the name server)."""
        forget(self.name)
        if not cached or self.error is None:
            raise self.error or CommunicationError(f"no replica of {self.name} to connect to")
        self.use_cache = False
        self.error = None


def _rotated(key: str, uris: tuple[URI, ...]) -> list[URI]:
    """The URIs starting at the next one in turn (round robin over new connections, per process)."""
    if len(uris) < 2:
        return list(uris)
    with _cache_lock:
        counter = _turns.get(key)
        if counter is None:
            if len(_turns) > 10_000:
                _turns.clear()
            counter = _turns[key] = itertools.count(random.randrange(len(uris)))
        start = next(counter) % len(uris)
    return list(uris[start:] + uris[:start])


def _cached(key: str) -> tuple[URI, ...] | None:
    with _cache_lock:
        entry = _cache.get(key)
        if entry is None:
            return None
        if entry[0] <= time.monotonic():
            del _cache[key]
            return None
        return entry[1]


def _remember(key: str, uris: tuple[URI, ...]) -> None:
    ttl = config.NS_LOOKUP_CACHE
    if ttl > 0 and uris:
        with _cache_lock:
            if len(_cache) > 10_000:
                _cache.clear()
            _cache[key] = (time.monotonic() + ttl, uris)


def _candidates_plan(uri: str | URI, use_cache: bool) -> _Plan:
    """``(direct URIs to try in order, from_cache)``: every replica of a ``PYRONAME:`` name,
    starting with the next in turn, from the lookup cache when allowed; one URI otherwise."""
    start = URI(uri)
    if start.protocol != "PYRONAME":
        return [(yield from _resolve_plan(start))], False
    key = str(start)
    if use_cache and config.NS_LOOKUP_CACHE > 0:
        cached = _cached(key)
        if cached:
            return _rotated(key, cached), True
    found = yield from _replicas_plan(start)
    direct: list[URI] = []
    for each in found:  # a replica may itself be a name (or a PYROMETA:)
        direct.append(each if each.protocol == "PYRO" else (yield from _resolve_plan(each)))
    uris = tuple(dict.fromkeys(direct))
    _remember(key, uris)
    return _rotated(key, uris), False


def _asking(ns: Any, method: str, name: str) -> Callable[[], _Step]:
    return lambda: _Call(ns, method, (name,))


def _replicas_plan(uri: URI) -> _Plan:
    """Every URI registered under a ``PYRONAME:`` name; a name server that dies during the
    lookup is replaced by another one (``NS_HOSTS``)."""
    for attempt in range(_LOOKUP_ATTEMPTS):
        if uri.sockname is not None:
            ns = yield from _locate_plan("./u:" + uri.sockname, None, True, None, None, None)
        else:
            ns = yield from _locate_plan(uri.host, uri.port, True, None, None, None)
        try:
            try:
                found = yield from _retrying(_asking(ns, "replicas", uri.object), lambda _: True)
                return [URI(u) for u in found]
            except AttributeError:  # a Pyro5 name server: one URI per name
                return [URI((yield from _retrying(_asking(ns, "lookup", uri.object), lambda _: True)))]
        except CommunicationError:
            if attempt == _LOOKUP_ATTEMPTS - 1:
                raise
        finally:
            yield _Release(ns)
    raise AssertionError("unreachable")  # pragma: no cover


def _pyroloc_plan(uri: URI) -> _Plan:
    """Legacy ``PYROLOC:name@host:port``: ask the daemon there whether it serves ``name``.

    It asks for that one object's metadata, not for the list of every object (which Ember
    daemons refuse unless DAEMON_LIST_OBJECTS is set); an unknown object is a DaemonError."""
    try:
        daemon = yield _Connect(URI(f"PYRO:{_DAEMON_NAME}@{uri.location}"), keep_timeout=True)
        try:
            yield _Call(daemon, "get_metadata", (uri.object,))
        finally:
            yield _Release(daemon)
    except CommunicationError as exc:
        raise NamingError(f"cannot resolve {uri}: no daemon reachable at {uri.location} ({exc})") from None
    except DaemonError:
        raise NamingError(f"cannot resolve {uri}: the daemon at {uri.location} has no object named "
                          f"{uri.object!r}") from None
    return URI(f"PYRO:{uri.object}@{uri.location}")


# ---- the blocking driver --------------------------------------------------------------------

def _perform(step: _Step, proxy_class: type) -> Any:
    if isinstance(step, _Call):
        return getattr(step.proxy, step.method)(*step.args)
    if isinstance(step, _Connect):
        proxy = proxy_class(step.uri)
        if not config.COMMTIMEOUT:
            proxy._timeout = _LOCATE_TIMEOUT
        try:
            proxy._bind()
        except BaseException:
            proxy._release()
            raise
        if not step.keep_timeout:
            proxy._timeout = None
        return proxy
    if isinstance(step, _Release):
        return step.proxy._release()
    if isinstance(step, _Broadcast):
        return udp.broadcast_request(step.port, step.addresses, _BROADCAST_ROUNDS, _BROADCAST_WAIT)
    if isinstance(step, _ReadFile):
        return Path(step.path).read_text(encoding="utf-8")
    if isinstance(step, _Sleep):
        return time.sleep(step.seconds)
    raise TypeError(f"unknown resolution step {step!r}")


def _run(plan: _Plan, proxy_class: type) -> Any:
    """Drive ``plan`` to its end, performing each step blocking."""
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            step = plan.send(value) if error is None else plan.throw(error)
        except StopIteration as stop:
            return stop.value
        finally:
            error = None  # no reference cycle through the traceback
        value = None
        try:
            value = _perform(step, proxy_class)
        except BaseException as exc:  # into the plan, which decides (its finally blocks release proxies)
            error = exc


# ---- the asyncio driver ---------------------------------------------------------------------

async def _aperform(step: _Step, proxy_class: type) -> Any:
    if isinstance(step, _Call):
        return await getattr(step.proxy, step.method)(*step.args)
    if isinstance(step, _Connect):
        proxy = proxy_class(step.uri)
        if not config.COMMTIMEOUT:
            proxy._timeout = _LOCATE_TIMEOUT
        try:
            await proxy._bind()
        except BaseException:
            await proxy._release()
            raise
        if not step.keep_timeout:
            proxy._timeout = None
        return proxy
    if isinstance(step, _Release):
        return await step.proxy._release()
    if isinstance(step, _Broadcast):
        return await udp.abroadcast_request(step.port, step.addresses, _BROADCAST_ROUNDS, _BROADCAST_WAIT)
    if isinstance(step, _ReadFile):
        return Path(step.path).read_text(encoding="utf-8")  # one small local file
    if isinstance(step, _Sleep):
        return await asyncio.sleep(step.seconds)
    raise TypeError(f"unknown resolution step {step!r}")


async def _arun(plan: _Plan, proxy_class: type) -> Any:
    """Drive ``plan`` to its end, awaiting each step."""
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            step = plan.send(value) if error is None else plan.throw(error)
        except StopIteration as stop:
            return stop.value
        finally:
            error = None
        value = None
        try:
            value = await _aperform(step, proxy_class)
        except BaseException as exc:  # including cancellation: the plan still releases its proxies
            error = exc


# ---- the public entry points ----------------------------------------------------------------

def resolve(uri: str | URI, proxy_class: type) -> URI:
    """The direct ``PYRO:`` URI for any URI, asking with ``proxy_class`` (a blocking proxy).

    ``PYRONAME:name`` is looked up in the name server (found as by :func:`find_ns`, or at
    the URI's ``@host:port``); ``PYROMETA:tags`` picks at random one registration carrying
    all the tags; legacy ``PYROLOC:name@host:port`` asks the daemon at that address whether
    it serves ``name``. ``NS_LOOKUP_DELAY`` > 0 keeps retrying a name that is not
    registered yet for that many seconds.
    """
    return _run(_resolve_plan(uri), proxy_class)


async def aresolve(uri: str | URI, proxy_class: type) -> URI:
    """:func:`resolve` with an async proxy class (:class:`~ember.aio.AsyncProxy`)."""
    return await _arun(_resolve_plan(uri), proxy_class)


def candidates(uri: str | URI, proxy_class: type, use_cache: bool = True) -> tuple[list[URI], bool]:
    """What a proxy connects to: ``(direct URIs in the order to try, whether they came from the
    lookup cache)``. A ``PYRONAME:`` name gives all its replicas (the name server's
    ``replicas``; one URI from a Pyro5 name server), starting with the next one in turn, so
    new connections go round robin over them; it is cached for ``NS_LOOKUP_CACHE`` seconds."""
    return _run(_candidates_plan(uri, use_cache), proxy_class)


async def acandidates(uri: str | URI, proxy_class: type, use_cache: bool = True) -> tuple[list[URI], bool]:
    """:func:`candidates` with an async proxy class."""
    return await _arun(_candidates_plan(uri, use_cache), proxy_class)


def find_ns(host: str | None = None, port: int | None = None, broadcast: bool = True, *, proxy_class: type,
            bcport: int | None = None, broadcast_addrs: list[str] | None = None,
            uri_file: str | Path | None = None) -> Any:
    """A bound ``proxy_class`` proxy to a running name server, found the first way that works
    (the plan :func:`ember.naming.locate_ns` documents)."""
    return _run(_locate_plan(host, port, broadcast, bcport, broadcast_addrs, uri_file), proxy_class)


async def afind_ns(host: str | None = None, port: int | None = None, broadcast: bool = True, *,
                   proxy_class: type, bcport: int | None = None, broadcast_addrs: list[str] | None = None,
                   uri_file: str | Path | None = None) -> Any:
    """:func:`find_ns` with an async proxy class, on the running event loop."""
    return await _arun(_locate_plan(host, port, broadcast, bcport, broadcast_addrs, uri_file), proxy_class)


def find_ns_uri(host: str | None = None, port: int | None = None, broadcast: bool = True, *, proxy_class: type,
                bcport: int | None = None, broadcast_addrs: list[str] | None = None,
                uri_file: str | Path | None = None) -> URI:
    """The URI of a running name server that answered, found as by :func:`find_ns`."""
    proxy = find_ns(host, port, broadcast, proxy_class=proxy_class, bcport=bcport,
                    broadcast_addrs=broadcast_addrs, uri_file=uri_file)
    try:
        return proxy._pyroUri
    finally:
        proxy._release()


async def afind_ns_uri(host: str | None = None, port: int | None = None, broadcast: bool = True, *,
                       proxy_class: type, bcport: int | None = None, broadcast_addrs: list[str] | None = None,
                       uri_file: str | Path | None = None) -> URI:
    """:func:`find_ns_uri` with an async proxy class, on the running event loop."""
    proxy = await afind_ns(host, port, broadcast, proxy_class=proxy_class, bcport=bcport,
                           broadcast_addrs=broadcast_addrs, uri_file=uri_file)
    try:
        return proxy._pyroUri
    finally:
        await proxy._release()


def broadcast_for_ns(port: int | None = None, addresses: list[str] | None = None,
                     rounds: int = _BROADCAST_ROUNDS, wait: float = _BROADCAST_WAIT) -> URI | None:
    """Ask by UDP broadcast for a name server; its URI, or None when nobody answered.

    Sends ``GET_NSURI`` to every address in ``addresses`` (default ``BROADCAST_ADDRS``;
    ``<broadcast>`` means 255.255.255.255) on ``port`` (default ``NS_BCPORT``).
    """
    return udp.broadcast_request(port or config.NS_BCPORT, addresses or config.BROADCAST_ADDRS, rounds, wait)


async def abroadcast_for_ns(port: int | None = None, addresses: list[str] | None = None,
                            rounds: int = _BROADCAST_ROUNDS, wait: float = _BROADCAST_WAIT) -> URI | None:
    """:func:`broadcast_for_ns` on the running event loop."""
    return await udp.abroadcast_request(port or config.NS_BCPORT, addresses or config.BROADCAST_ADDRS, rounds, wait)
