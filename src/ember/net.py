"""Sockets: creating, binding and connecting them, and turning OS errors into Ember errors.

This is the one boundary where ``OSError`` becomes :mod:`ember.errors`; nothing above it
handles raw socket exceptions.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import os
import socket
from typing import Any

from .errors import CommunicationError, ConnectionClosedError, TimeoutError
from .uri import URI

_WAITALL = getattr(socket, "MSG_WAITALL", 0)

__all__ = ["connect", "create_server", "set_nodelay", "bound_location", "close_quietly"]


def set_nodelay(sock: socket.socket) -> None:
    """Disable Nagle's algorithm on TCP sockets (a no-op on unix sockets)."""
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _family_for(host: str) -> int:
    from .config import config

    if ":" in host:
        return socket.AF_INET6
    if config.PREFER_IP_VERSION == 6:
        return socket.AF_INET6
    if config.PREFER_IP_VERSION == 4:
        return socket.AF_INET
    return socket.AF_UNSPEC


def connect(uri: URI, timeout: float | None = None, nodelay: bool = True) -> socket.socket:
    """Open a connection to the location of a ``PYRO:`` URI.

    Raises :class:`CommunicationError` naming the location when it cannot connect.
    """
    try:
        if uri.sockname is not None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            try:
                sock.connect(uri.sockname)
            except BaseException:
                sock.close()
                raise
        else:
            assert uri.host is not None and uri.port is not None
            family = _family_for(uri.host)
            infos = socket.getaddrinfo(uri.host, uri.port, family, socket.SOCK_STREAM)
            last: OSError | None = None
            sock = None  # type: ignore[assignment]
            for fam, stype, proto, _canon, addr in infos:
                s = socket.socket(fam, stype, proto)
                s.settimeout(timeout)
                try:
                    s.connect(addr)
                    sock = s
                    break
                except OSError as exc:
                    s.close()
                    last = exc
            if sock is None:
                raise last or OSError(f"no address for {uri.host}")
            if nodelay:
                set_nodelay(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    except builtins.TimeoutError:
        raise TimeoutError(f"connecting to {uri.location} timed out") from None
    except OSError as exc:
        raise CommunicationError(f"cannot connect to {uri.location}: {exc.strerror or exc}") from None
    return sock


def create_server(
    host: str | None = None,
    port: int = 0,
    unixsocket: str | None = None,
    reuse: bool = True,
    backlog: int = 200,
    port_range: int = 1,
) -> socket.socket:
    """Create a listening socket (TCP v4/v6 or unix). Port 0 lets the OS choose.

    With ``port_range`` > 1 and a fixed port, the ports ``port .. port+port_range-1`` are
    tried in turn until one is free.
    """
    if port and port_range > 1:
        for candidate in range(port, min(port + port_range, 65536)):
            try:
                return create_server(host, candidate, unixsocket, reuse, backlog)
            except CommunicationError as exc:
                if "address already in use" not in str(exc):
                    raise
        raise CommunicationError(f"cannot bind to {host}: every port in {port}-{port + port_range - 1} is in use")
    if unixsocket is not None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        if not unixsocket.startswith("\0") and os.path.exists(unixsocket):
            os.remove(unixsocket)
        try:
            sock.bind(unixsocket)
        except OSError as exc:
            sock.close()
            raise CommunicationError(f"cannot bind unix socket {unixsocket!r}: {exc.strerror or exc}") from None
    else:
        host = host or "127.0.0.1"
        family = _family_for(host)
        try:
            infos = socket.getaddrinfo(host, port, family, socket.SOCK_STREAM, 0, socket.AI_PASSIVE)
        except OSError as exc:
            raise CommunicationError(f"cannot resolve bind address {host!r}: {exc}") from None
        fam, stype, proto, _canon, addr = infos[0]
        sock = socket.socket(fam, stype, proto)
        if reuse:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(addr)
        except OSError as exc:
            sock.close()
            msg = "address already in use" if exc.errno == errno.EADDRINUSE else (exc.strerror or str(exc))
            raise CommunicationError(f"cannot bind to {host}:{port}: {msg}") from None
    sock.listen(backlog)
    return sock


def bound_location(sock: socket.socket) -> tuple[str | None, int | None, str | None]:
    """(host, port, unix socket path) of a listening socket."""
    if sock.family == socket.AF_UNIX:
        name = sock.getsockname()
        if isinstance(name, bytes):
            name = name.decode("utf-8", "surrogateescape")
        return None, None, name
    addr: Any = sock.getsockname()
    return addr[0], addr[1], None


def close_quietly(sock: socket.socket | None) -> None:
    """Shut down and close a socket, ignoring errors (it may already be dead)."""
    if sock is None:
        return
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


def recv_message(sock: socket.socket, decoder: Any, bufsize: int = 65536) -> Any:
    """Block until the decoder yields a whole message; None when the peer closed cleanly
    before sending any byte of it."""
    msg = decoder.next_message()
    while msg is None:
        target = decoder.recv_target()
        try:
            if target is not None:  # a large payload: straight into its own buffer, in as few wake-ups as possible
                n = sock.recv_into(target, 0, _WAITALL if type(sock) is socket.socket and sock.gettimeout() is None
                                   else 0)
                if n:
                    decoder.received(n)
                    msg = decoder.next_message()
                    continue
                chunk = b""
            else:
                chunk = sock.recv(bufsize)
        except builtins.TimeoutError:
            raise TimeoutError("receiving timed out") from None
        except OSError as exc:
            raise ConnectionClosedError(f"connection lost: {exc.strerror or exc}") from None
        if not chunk:
            if decoder.buffered:
                raise ConnectionClosedError("connection closed in the middle of a message")
            return None
        decoder.feed(chunk)
        msg = decoder.next_message()
    return msg


def send(sock: socket.socket, frame: Any) -> None:
    """Send one whole frame with a single sendall (or, for a frame in parts, sendmsg)."""
    if type(frame) is list:
        _send_parts(sock, frame)
        return
    try:
        sock.sendall(frame)
    except builtins.TimeoutError:
        raise TimeoutError("sending timed out") from None
    except OSError as exc:
        raise ConnectionClosedError(f"connection lost while sending: {exc.strerror or exc}") from None


def _send_parts(sock: socket.socket, parts: list) -> None:
    """Send a frame given as [header, payload] without joining them (large payloads)."""
    if type(sock) is not socket.socket:  # TLS sockets have no sendmsg
        send(sock, b"".join(parts))
        return
    views = [memoryview(p).cast("B") for p in parts]
    try:
        while views:
            sent = sock.sendmsg(views)
            while views and sent >= len(views[0]):
                sent -= len(views[0])
                views.pop(0)
            if views and sent:
                views[0] = views[0][sent:]
    except builtins.TimeoutError:
        raise TimeoutError("sending timed out") from None
    except OSError as exc:
        raise ConnectionClosedError(f"connection lost while sending: {exc.strerror or exc}") from None
