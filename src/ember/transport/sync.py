"""Blocking sockets: creating, binding and connecting them, receiving whole messages and
sending whole frames. OS errors become :mod:`ember.errors` through :mod:`.errors`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import socket
import ssl
import threading
from typing import Any

from ..config import config
from ..errors import CommunicationError, ConnectionClosedError, TimeoutError
from ..uri import URI
from .errors import connect_error, io_error
from .tls import server_handshake

_WAITALL = getattr(socket, "MSG_WAITALL", 0)

__all__ = ["connect", "create_server", "set_nodelay", "bound_location", "close_quietly", "recv_message", "send",
           "SocketStream", "family_for"]


def set_nodelay(sock: socket.socket) -> None:
    """Disable Nagle's algorithm on TCP sockets (a no-op on unix sockets)."""
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def family_for(host: str) -> int:
    """The address family to resolve ``host`` in (config ``PREFER_IP_VERSION``)."""
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
            family = family_for(uri.host)
            infos = socket.getaddrinfo(uri.host, uri.port, family, socket.SOCK_STREAM)
            last: OSError | None = None
            found: socket.socket | None = None
            for fam, stype, proto, _canon, addr in infos:
                s = socket.socket(fam, stype, proto)
                s.settimeout(timeout)
                try:
                    s.connect(addr)
                    found = s
                    break
                except OSError as exc:
                    s.close()
                    last = exc
            if found is None:
                raise last or OSError(f"no address for {uri.host}")
            sock = found
            if nodelay:
                set_nodelay(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    except OSError as exc:
        raise connect_error(exc, uri.location) from None
    return sock


def check_port(port: Any, what: str = "port") -> None:
    """Refuse a port number outside 0-65535 (the OS would wrap it, or blame the host)."""
    if isinstance(port, bool) or not isinstance(port, int):
        raise CommunicationError(f"invalid {what} {port!r}: must be an int from 0 to 65535 (0 = let the OS choose)")
    if not 0 <= port <= 65535:
        raise CommunicationError(f"invalid {what} {port}: TCP ports are 0-65535 (0 = let the OS choose)")


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
    check_port(port, "port")
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
        family = family_for(host)
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


def recv_message(sock: socket.socket, decoder: Any, bufsize: int = 65536, stall: float | None = None) -> Any:
    """Block until the decoder yields a whole message; None when the peer closed cleanly
    before sending any byte of it.

    ``stall``: once part of a message is in, the peer must send more within this many seconds
    (when the socket's own timeout is longer or None), or :class:`TimeoutError` is raised.
    """
    msg = decoder.next_message()
    restore: Any = _KEEP
    try:
        while msg is None:
            if stall and restore is _KEEP and decoder.buffered:
                current = sock.gettimeout()
                if current is None or current > stall:
                    restore = current
                    sock.settimeout(stall)
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
            except OSError as exc:
                if restore is not _KEEP and isinstance(exc, socket.timeout):
                    raise TimeoutError(f"the peer stopped sending in the middle of a message for {stall} s "
                                       "(STALL_TIMEOUT)") from None
                raise io_error(exc) from None
            if not chunk:
                if decoder.buffered:
                    raise ConnectionClosedError("connection closed in the middle of a message")
                return None
            decoder.feed(chunk)
            msg = decoder.next_message()
    finally:
        if restore is not _KEEP:
            with contextlib.suppress(OSError):
                sock.settimeout(restore)
    return msg


_KEEP = object()  # recv_message: the socket's timeout was not changed


def send(sock: socket.socket, frame: Any) -> None:
    """Send one whole frame with a single sendall (or, for a frame in parts, sendmsg)."""
    if type(frame) is list:
        _send_parts(sock, frame)
        return
    try:
        sock.sendall(frame)
    except OSError as exc:
        raise io_error(exc, sending=True) from None


def _send_parts(sock: socket.socket, parts: list) -> None:
    """Send a frame given as parts (header, payload or out-of-band buffers) without joining them."""
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
    except OSError as exc:
        raise io_error(exc, sending=True) from None


def peer_closed(sock: Any) -> bool:
    """Whether the peer of an idle connection has closed it (or reset it): checked without
    waiting and without consuming application data."""
    try:
        if not select.select([sock], [], [], 0)[0]:
            return False  # nothing to read: still open
        if isinstance(sock, ssl.SSLSocket):
            sock.setblocking(False)
            try:
                return not sock.recv(1)  # EOF or close_notify; data here would be out of turn anyway
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                return False
            finally:
                sock.setblocking(True)
        return not sock.recv(1, socket.MSG_PEEK)
    except OSError:
        return True


class SocketStream:
    """One connected socket with Ember's framing-aware receive and whole-frame send.

    A blocking stream (the thread server, proxies) receives whole messages with
    :meth:`recv_message`; a non-blocking one (the multiplex loop) reads what is there with
    :meth:`recv_available`. Sends are serialized by a lock, so replies from several threads
    (oneway work, streams) never interleave. TLS sockets may still owe their handshake
    (``tls_pending``); :meth:`handshake_tls` advances it.
    """

    __slots__ = ("sock", "peer", "timeout", "owns_socket", "tls", "tls_pending", "peer_certificate", "closed",
                 "_send_lock", "send_timeout")

    def __init__(self, sock: socket.socket, peer: Any, timeout: float | None = None, blocking: bool = True,
                 owns_socket: bool = True) -> None:
        self.sock = sock
        self.peer = peer
        self.timeout = timeout
        self.owns_socket = owns_socket
        self.tls = isinstance(sock, ssl.SSLSocket)
        self.tls_pending = self.tls
        self.peer_certificate: dict | None = None
        self.closed = False
        self._send_lock = threading.Lock()
        # the most a blocking send may wait for the peer to take data when the socket itself has
        # no timeout (STALL_TIMEOUT: a client that never reads its replies must not hold a thread)
        self.send_timeout: float | None = None
        sock.settimeout(timeout if blocking else 0.0)

    def handshake_tls(self, timeout: float | None) -> bool:
        """Advance the server side of the TLS handshake; True when done (see :func:`.tls.server_handshake`)."""
        if not server_handshake(self.sock, self.peer, timeout, self.timeout):
            return False
        self.tls_pending = False
        self.peer_certificate = self.sock.getpeercert() or None  # type: ignore[attr-defined]
        return True

    def recv_message(self, decoder: Any) -> Any:
        """Block until ``decoder`` yields a whole message (None: closed cleanly between messages)."""
        return recv_message(self.sock, decoder)

    def recv_available(self) -> bytes | None:
        """The bytes readable now on a non-blocking stream (b"" = peer closed, None = nothing yet)."""
        sock: Any = self.sock
        try:
            if not self.tls:
                return sock.recv(65536)
            try:
                data = sock.recv(65536)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                return None
            if data:
                pending = sock.pending()
                if pending:
                    data += sock.recv(pending)
            return data
        except BlockingIOError:
            return None
        except OSError as exc:
            raise io_error(exc) from None

    def recv_into_available(self, target: memoryview) -> int | None:
        """Receive what is readable now straight into ``target`` (a large payload's buffer):
        the byte count (0 = peer closed), None when nothing is there yet (non-blocking)."""
        try:
            return self.sock.recv_into(target)
        except BlockingIOError:
            return None
        except OSError as exc:
            raise io_error(exc) from None

    def send(self, frame: Any) -> None:
        """Send one whole frame (bytes, or a list of parts: header, payload or buffers)."""
        with self._send_lock:
            sock = self.sock
            if type(frame) is bytes and not self.tls:  # the common case: the socket buffer takes it at once
                try:
                    sent = sock.send(frame, socket.MSG_DONTWAIT)
                except BlockingIOError:
                    sent = 0
                except OSError as exc:
                    raise io_error(exc, sending=True) from None
                if sent == len(frame):
                    return
                frame = memoryview(frame)[sent:]  # the rest, as below: waiting as this socket may
            if self.tls and sock.gettimeout() == 0.0:
                _send_nonblocking_tls(sock, b"".join(frame) if type(frame) is list else frame, self.timeout)
            elif self.send_timeout is None or sock.gettimeout() is not None:
                send(sock, frame)
            else:
                _send_bounded(sock, frame, self.send_timeout)

    def close(self) -> None:
        """Close the socket (unless it was handed in by the user). Idempotent."""
        if self.closed:
            return
        self.closed = True
        if self.owns_socket:
            close_quietly(self.sock)

    def fileno(self) -> int:
        return self.sock.fileno()


def _send_bounded(sock: Any, frame: Any, limit: float) -> None:
    """Send on a socket without a timeout, waiting at most ``limit`` seconds for the peer to
    take more (what the socket buffer took at once was sent before, by :meth:`SocketStream.send`)."""
    sock.settimeout(limit)
    try:
        send(sock, frame)
    except TimeoutError:
        raise TimeoutError(f"the peer took none of its reply for {limit} s (STALL_TIMEOUT)") from None
    finally:
        with contextlib.suppress(OSError):
            sock.settimeout(None)


def _send_nonblocking_tls(sock: Any, frame: bytes, timeout: float | None) -> None:
    """sendall for a non-blocking TLS socket: waits (up to ``timeout``) while its buffer is full."""
    view = memoryview(frame)
    while view:
        try:
            sent = sock.send(view)
        except (ssl.SSLWantWriteError, ssl.SSLWantReadError):
            if not select.select([], [sock], [], timeout or 30.0)[1]:
                raise TimeoutError("sending timed out") from None
            continue
        except OSError as exc:
            raise io_error(exc, sending=True) from None
        view = view[sent:]
