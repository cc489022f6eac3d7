"""``Pyro5.socketutil``: address lookup and plain socket helpers (standard library only)."""

from __future__ import annotations

import builtins
import contextlib
import ipaddress
import socket
from typing import Any

from ...errors import CommunicationError, ConnectionClosedError, TimeoutError
from ._unsupported import module_getattr
from .config import config

__all__ = ["config", "bind_unused_port", "create_bc_socket", "create_socket", "find_probably_unused_port", "get_interface",
           "get_ip_address", "receive_data", "send_data"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def get_ip_address(hostname: str, workaround127: bool = False, version: int | None = None) -> IPAddress:
    """The IP address of ``hostname`` ("" = this machine's outward address); with
    ``workaround127`` a 127.x answer is replaced by the address of the outgoing interface."""
    family = {4: socket.AF_INET, 6: socket.AF_INET6}.get(version or 0, socket.AF_UNSPEC)
    if hostname and ":" in hostname and version is None:
        family = socket.AF_INET6
    try:
        if not hostname:
            address = _outgoing_address(family)
        else:
            address = str(socket.getaddrinfo(hostname, 80, family, socket.SOCK_STREAM)[0][4][0])
    except (OSError, IndexError) as exc:
        raise CommunicationError(f"cannot determine the ip address of {hostname!r}: {exc}") from None
    ip = ipaddress.ip_address(address)
    if workaround127 and ip.is_loopback and ip.version == 4:
        ip = ipaddress.ip_address(_outgoing_address(socket.AF_INET))
    return ip


def _outgoing_address(family: int) -> str:
    """The local address the OS would use to reach the outside (no packet is sent)."""
    ipv6 = family == socket.AF_INET6
    with socket.socket(socket.AF_INET6 if ipv6 else socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("2001:db8::1", 53) if ipv6 else ("192.0.2.1", 53))  # documentation ranges: UDP connect sends nothing
            return s.getsockname()[0]
        except OSError:
            return "::1" if ipv6 else "127.0.0.1"


def get_interface(ip_address: Any) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
    """The interface (address with prefix) for an IP address, as ``ipaddress`` sees it."""
    return ipaddress.ip_interface(str(ip_address))


def create_socket(bind: Any = None, connect: Any = None, reuseaddr: bool = False, keepalive: bool = True,
                  timeout: float | None = -1, noinherit: bool = False, ipv6: bool = False, nodelay: bool = True,
                  sslContext: Any = None) -> socket.socket:  # noqa: N803
    """A TCP (or unix, when ``bind``/``connect`` is a path string) socket, bound and
    listening, or connected. ``timeout`` -1 leaves the default; None blocks."""
    if bind and connect:
        raise ValueError("bind and connect cannot both be specified at the same time")
    target = bind or connect
    if isinstance(target, str):
        family = socket.AF_UNIX
    else:
        family = socket.AF_INET6 if ipv6 or (target and ":" in str(target[0])) else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if reuseaddr:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if nodelay and family != socket.AF_UNIX:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if keepalive and family != socket.AF_UNIX:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        if noinherit:
            sock.set_inheritable(False)
        if timeout != -1:
            sock.settimeout(timeout)
        if bind is not None:
            sock.bind(bind if isinstance(bind, str) else tuple(bind))
            sock.listen(100)
        if connect is not None:
            sock.connect(connect if isinstance(connect, str) else tuple(connect))
        if sslContext is not None:
            if bind is not None:
                sock = sslContext.wrap_socket(sock, server_side=True)
            else:
                host = None if isinstance(connect, str) or connect is None else connect[0]
                sock = sslContext.wrap_socket(sock, server_side=False, server_hostname=host)
    except OSError as exc:
        sock.close()
        raise CommunicationError(f"cannot {'bind' if bind is not None else 'connect'} to {target}: {exc}") from None
    return sock


def create_bc_socket(bind: Any = None, reuseaddr: bool = False, timeout: float | None = -1,
                     ipv6: bool = False) -> socket.socket:
    """A UDP socket that may send broadcasts, optionally bound."""
    sock = socket.socket(socket.AF_INET6 if ipv6 else socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    if reuseaddr:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if timeout != -1:
        sock.settimeout(timeout)
    if bind is not None:
        sock.bind(tuple(bind))
    return sock


def receive_data(sock: socket.socket, size: int) -> bytes:
    """Exactly ``size`` bytes; ``ConnectionClosedError`` if the peer closes first,
    ``TimeoutError`` on a socket timeout."""
    chunks = []
    remaining = size
    try:
        while remaining:
            chunk = sock.recv(remaining)
            if not chunk:
                raise ConnectionClosedError("receiving: connection lost")
            chunks.append(chunk)
            remaining -= len(chunk)
    except builtins.TimeoutError:
        raise TimeoutError("receiving: timeout") from None
    except OSError as exc:
        raise ConnectionClosedError(f"receiving: connection lost: {exc}") from None
    return b"".join(chunks)


def send_data(sock: socket.socket, data: bytes) -> None:
    """Send all of ``data``; ``TimeoutError`` / ``ConnectionClosedError`` on failure."""
    try:
        sock.sendall(data)
    except builtins.TimeoutError:
        raise TimeoutError("sending: timeout") from None
    except OSError as exc:
        raise ConnectionClosedError(f"sending: connection lost: {exc}") from None


def find_probably_unused_port(family: int = socket.AF_INET, socktype: int = socket.SOCK_STREAM) -> int:
    """A port that was free a moment ago (binding port 0 is better: no race)."""
    with socket.socket(family, socktype) as s:
        return bind_unused_port(s)


def bind_unused_port(sock: socket.socket, host: Any = "localhost") -> int:
    """Bind ``sock`` to a free port on ``host``; returns the port."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((str(host) if sock.family != socket.AF_INET6 else "::1", 0) if host else ("", 0))
    return sock.getsockname()[1]


__getattr__ = module_getattr(__name__, {
    "SocketConnection": "Ember's connections are ember.transport.sync.SocketStream",
    "get_ssl_context": "build an ssl.SSLContext (ember.transport.tls.client_context/server_context from config) "
                       "and pass ssl_context= to ember.Proxy/ember.Daemon",
    "interrupt_socket": "not needed: Ember's loops wake themselves on shutdown",
    "set_keepalive": "call sock.setsockopt(SOL_SOCKET, SO_KEEPALIVE, 1)",
    "set_nodelay": "call sock.setsockopt(IPPROTO_TCP, TCP_NODELAY, 1)",
    "set_noinherit": "call sock.set_inheritable(False)",
    "set_reuseaddr": "call sock.setsockopt(SOL_SOCKET, SO_REUSEADDR, 1)",
    "family_str": "use socket.AddressFamily(sock.family).name",
    "USE_MSG_WAITALL": "Ember's transport decides how it receives (ember.transport.sync)",
    **{name: "use the errno module" for name in ("ERRNO_RETRIES", "ERRNO_BADF", "ERRNO_ENOTSOCK",
                                                 "ERRNO_EADDRNOTAVAIL", "ERRNO_EADDRINUSE")},
})
