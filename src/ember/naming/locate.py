"""Finding a name server (``locate_ns``) and turning magic URIs into ``PYRO:`` ones (``resolve``)."""

from __future__ import annotations

import contextlib
import random
import socket
import time
from pathlib import Path
from typing import Any

from ..config import config
from ..errors import CommunicationError, NamingError, PyroError
from ..uri import URI
from .broadcast import REQUEST
from .nameserver import NAMESERVER_NAME

__all__ = ["locate_ns", "resolve", "broadcast_for_ns"]

_LOCATE_TIMEOUT = 3.0
_BROADCAST_ROUNDS = 3
_BROADCAST_WAIT = 0.7


def _ns_uri(host: str, port: int | None) -> URI:
    if host.startswith("./u:"):
        return URI(f"PYRO:{NAMESERVER_NAME}@{host}")
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return URI(f"PYRO:{NAMESERVER_NAME}@{host}:{port or config.NS_PORT}")


def _connect_ns(uri: URI | str) -> Any:
    """A bound proxy to the name server at ``uri`` (the handshake done), or CommunicationError."""
    from ..client import Proxy

    proxy = Proxy(uri)
    if not config.COMMTIMEOUT:
        proxy._timeout = _LOCATE_TIMEOUT
    try:
        proxy._bind()
    except BaseException:
        proxy._release()
        raise
    proxy._timeout = None
    return proxy


def broadcast_for_ns(port: int | None = None, addresses: list[str] | None = None,
                     rounds: int = _BROADCAST_ROUNDS, wait: float = _BROADCAST_WAIT) -> URI | None:
    """Ask by UDP broadcast for a name server; its URI, or None when nobody answered.

    Sends ``GET_NSURI`` to every address in ``addresses`` (default ``BROADCAST_ADDRS``;
    ``<broadcast>`` means 255.255.255.255) on ``port`` (default ``NS_BCPORT``).
    """
    port = port or config.NS_BCPORT
    targets = ["255.255.255.255" if a == "<broadcast>" else a for a in (addresses or config.BROADCAST_ADDRS)]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sock.settimeout(wait)
        for _ in range(rounds):
            for target in targets:
                with contextlib.suppress(OSError):
                    sock.sendto(REQUEST, (target, port))
            deadline = time.monotonic() + wait
            while (left := deadline - time.monotonic()) > 0:
                sock.settimeout(left)
                try:
                    data, _addr = sock.recvfrom(100)
                except OSError:  # includes the timeout
                    break
                with contextlib.suppress(UnicodeDecodeError, PyroError):
                    return URI(data.decode("iso-8859-1"))
    return None


def locate_ns(host: str | None = None, port: int | None = None, broadcast: bool = True, *,
              bcport: int | None = None, broadcast_addrs: list[str] | None = None,
              uri_file: str | Path | None = None) -> Any:
    """A proxy to a running name server, found the first way that works.

    With ``host`` (a host name, an IP address, or ``./u:path`` for a unix socket) only
    that address (port ``port`` or ``NS_PORT``) is tried. Without it, in order:

    1. the configured ``NS_HOST`` : ``port`` or ``NS_PORT``;
    2. UDP broadcast (unless ``broadcast=False`` or ``PREFER_IP_VERSION`` is 6) to
       ``broadcast_addrs`` or ``BROADCAST_ADDRS`` on ``bcport`` or ``NS_BCPORT``;
    3. the URI written in ``uri_file`` or ``NS_URI_FILE`` (see ``ember ns --uri-file``).

    Raises :class:`NamingError` listing everything it tried and why each failed.
    """
    if host:
        uri = _ns_uri(host, port)
        try:
            return _connect_ns(uri)
        except CommunicationError as exc:
            raise NamingError(f"cannot locate the name server at {uri.location}: {exc}") from None
    tried: list[str] = []
    uri = _ns_uri(config.NS_HOST, port)
    try:
        return _connect_ns(uri)
    except CommunicationError as exc:
        tried.append(f"{uri.location} ({exc})")
    if broadcast and config.PREFER_IP_VERSION != 6:
        addrs = broadcast_addrs or config.BROADCAST_ADDRS
        found = broadcast_for_ns(bcport, addrs)
        where = f"broadcast to {', '.join(addrs)} on udp port {bcport or config.NS_BCPORT}"
        if found is None:
            tried.append(f"{where} (no answer)")
        else:
            try:
                return _connect_ns(found)
            except CommunicationError as exc:
                tried.append(f"{where}: answer {found} ({exc})")
    else:
        tried.append("no broadcast (disabled)")
    path = uri_file or config.NS_URI_FILE
    if path:
        try:
            text = Path(path).read_text(encoding="utf-8").strip()
            return _connect_ns(URI(text))
        except OSError as exc:
            tried.append(f"URI file {str(path)!r} ({exc.strerror or exc})")
        except (CommunicationError, PyroError) as exc:
            tried.append(f"URI file {str(path)!r} ({exc})")
    else:
        tried.append("no URI file (set NS_URI_FILE)")
    raise NamingError("cannot locate the name server; tried: " + "; ".join(tried))


def _ns_for(uri: URI) -> Any:
    if uri.sockname is not None:
        return locate_ns("./u:" + uri.sockname)
    return locate_ns(uri.host, uri.port)


def _retrying(call: Any, empty: Any) -> Any:
    """``call()``, retried while it raises NamingError or returns ``empty``, for up to NS_LOOKUP_DELAY s."""
    delay = config.NS_LOOKUP_DELAY
    deadline = time.monotonic() + delay
    while True:
        try:
            result = call()
        except NamingError:
            if time.monotonic() >= deadline:
                raise
        else:
            if result != empty or time.monotonic() >= deadline:
                return result
        time.sleep(max(0.2, delay / 5))


_NEVER = object()


def resolve(uri: str | URI) -> URI:
    """The direct ``PYRO:`` URI for any URI.

    ``PYRONAME:name`` is looked up in the name server (located as in :func:`locate_ns`,
    or at the URI's ``@host:port``); ``PYROMETA:tags`` picks at random one registration
    carrying all the tags; legacy ``PYROLOC:name@host:port`` asks the daemon at that
    address whether it serves ``name``. ``NS_LOOKUP_DELAY`` > 0 keeps retrying a name
    that is not registered yet for that many seconds.
    """
    uri = URI(uri)
    if uri.protocol == "PYRO":
        return uri
    if uri.protocol == "PYROLOC":
        return _resolve_pyroloc(uri)
    ns = _ns_for(uri)
    try:
        if uri.protocol == "PYRONAME":
            result = _retrying(lambda: ns.lookup(uri.object), _NEVER)
            return URI(result)
        tags = sorted(uri.metadata)
        # sent positionally, as Pyro5's own resolution does
        found = _retrying(lambda: ns.yplookup(tags, None, False), {})
        if not found:
            raise NamingError(f"no registrations available with desired metadata properties {tags}")
        return URI(random.choice(list(found.values())))
    finally:
        ns._release()


def _resolve_pyroloc(uri: URI) -> URI:
    from ..client import Proxy

    direct = URI(f"PYRO:{uri.object}@{uri.location}")
    with Proxy(f"PYRO:Pyro.Daemon@{uri.location}") as daemon:
        if not config.COMMTIMEOUT:
            daemon._timeout = _LOCATE_TIMEOUT
        try:
            registered = daemon.registered()
        except CommunicationError as exc:
            raise NamingError(f"cannot resolve {uri}: no daemon reachable at {uri.location} ({exc})") from None
    if uri.object not in registered:
        raise NamingError(f"cannot resolve {uri}: the daemon at {uri.location} has no object named {uri.object!r}")
    return direct
