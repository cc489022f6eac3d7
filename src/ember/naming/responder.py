"""The UDP broadcast responder: answers ``GET_NSURI`` with the name server's URI.

A client that knows nothing sends the 9 bytes ``GET_NSURI`` to a broadcast address on
port ``NS_BCPORT`` (9091); the responder replies to the sender with the URI string
(ISO-8859-1). When the name server listens on every interface (``0.0.0.0``), the reply
carries the address of the interface that routes back to the asker, so the client gets
an address it can reach. The datagrams themselves are :mod:`ember.transport.udp`'s.
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import threading

from ..transport import udp
from ..transport.udp import REQUEST
from ..uri import URI

__all__ = ["BroadcastResponder", "LOOPBACK_BROADCAST", "REQUEST", "default_bind_host", "is_loopback"]

log = logging.getLogger("ember.naming.broadcast")
LOOPBACK_BROADCAST = "127.255.255.255"
_ANY = ("", "0.0.0.0")


def is_loopback(host: str | None) -> bool:
    return host is not None and (host == "localhost" or host.startswith("127.") or host == "::1")


def default_bind_host(ns_host: str | None) -> str | None:
    """Where the responder listens for a name server bound to ``ns_host``; None = no responder.

    A loopback name server answers only broadcasts on the loopback network
    (127.255.255.255), so nothing from outside the machine is answered; an IPv6 name
    server gets none (IPv6 has no broadcast); anything else listens on all interfaces.
    """
    if ns_host is None or ":" in ns_host:
        return None
    if is_loopback(ns_host):
        return LOOPBACK_BROADCAST
    return ""


class BroadcastResponder:
    """Listens on UDP ``host:port`` in its own thread until :meth:`close`."""

    def __init__(self, ns_uri: URI | str, host: str = "", port: int = 9091) -> None:
        self.ns_uri = URI(ns_uri)
        self.sock = udp.responder_socket(host, port)
        self.host, self.port = self.sock.getsockname()[:2]
        self._wake_r, self._wake_w = socket.socketpair()
        self._thread = threading.Thread(target=self._run, name=f"ember-ns-broadcast-{self.port}", daemon=True)
        self._closed = False

    @property
    def location(self) -> str:
        return f"{self.host or '0.0.0.0'}:{self.port}"

    def start(self) -> BroadcastResponder:
        self._thread.start()
        return self

    def reply_for(self, requester: tuple) -> bytes:
        """The URI this requester should use, as bytes."""
        uri = self.ns_uri
        if uri.host in _ANY or uri.host == "::":
            local = udp.local_address_towards(requester)
            if local is not None:
                uri = URI(f"PYRO:{uri.object}@{local}:{uri.port}")
        return udp.encode_answer(uri)

    def handle(self) -> None:
        """Answer one pending datagram (anything but ``GET_NSURI`` is ignored)."""
        addr = udp.receive_request(self.sock)
        if addr is None:
            return
        try:
            udp.send_answer(self.sock, addr, self.reply_for(addr))
        except OSError as exc:
            log.warning("cannot answer broadcast from %s: %s", addr, exc)

    def _run(self) -> None:
        with selectors.DefaultSelector() as sel:
            sel.register(self.sock, selectors.EVENT_READ)
            sel.register(self._wake_r, selectors.EVENT_READ)
            while not self._closed:
                for key, _ in sel.select():
                    if key.fileobj is self._wake_r or self._closed:
                        return
                    self.handle()

    def close(self) -> None:
        """Stop answering and release the socket. Idempotent."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        for s in (self.sock, self._wake_r, self._wake_w):
            s.close()
