"""The daemon's view of one client connection (shared by every server loop)."""

from __future__ import annotations

import select
import socket
import ssl
import threading
from typing import Any

from .. import net
from ..errors import CommunicationError, ConnectionClosedError, TimeoutError
from ..protocol import Decoder, MsgType

__all__ = ["Connection"]

_HANDSHAKE_TYPES = frozenset({MsgType.CONNECT})
_ESTABLISHED_TYPES = frozenset({MsgType.INVOKE, MsgType.PING})


class Connection:
    """One client connection: its socket, decoder, session state and resources.

    ``storage`` is a dict for the application (per-connection state, what Pyro 3 called
    thread-local storage); ``instances`` holds the session-mode objects of this client.
    """

    def __init__(self, sock: socket.socket, addr: Any, max_message_size: int, max_annotations: int,
                 established: bool = False, owns_socket: bool = True) -> None:
        self.sock = sock
        self.owns_socket = owns_socket
        self.addr = addr
        self.decoder = Decoder(
            max_message_size,
            max_annotations,
            _ESTABLISHED_TYPES if established else _HANDSHAKE_TYPES,
        )
        self.established = established
        self.extended = False
        self.must_close = False
        self.instances: dict[type, Any] = {}
        self.tracked_resources: set[Any] = set()
        self.storage: dict[str, Any] = {}
        self.handshake: Any = None
        self.send_lock = threading.Lock()
        self.closed = False
        self.released = False  # the daemon has run its connection_closed cleanup
        self.tls = isinstance(sock, ssl.SSLSocket)
        self.tls_pending = self.tls  # the TLS handshake is still to be done
        self.peer_certificate: dict | None = None
        self.established_at: float | None = None

    def tls_handshake(self, timeout: float | None) -> bool:
        """Advance the TLS handshake; True when done. Blocking sockets finish it (or raise)
        within ``timeout``; a non-blocking one returns False while it waits for the peer.

        Raises :class:`CommunicationError` saying why when the handshake fails.
        """
        from ..tls import describe_failure

        sock: Any = self.sock
        blocking = sock.gettimeout() != 0.0
        if blocking:
            sock.settimeout(timeout)
        try:
            sock.do_handshake()
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return False
        except ssl.SSLEOFError:
            # closed before saying anything (a port probe, e.g. the name server's autoclean): not worth a warning
            raise ConnectionClosedError(f"connection from {self.addr} closed before the TLS handshake") from None
        except ssl.SSLError as exc:
            raise CommunicationError(f"TLS handshake with {self.addr} failed: {describe_failure(exc)}") from None
        except OSError as exc:
            raise CommunicationError(f"TLS handshake with {self.addr} failed: {exc.strerror or exc}") from None
        finally:
            if blocking:
                sock.settimeout(self._timeout)
        self.tls_pending = False
        self.peer_certificate = sock.getpeercert() or None
        return True

    def recv_available(self) -> bytes | None:
        """For the multiplex loop: the bytes readable now (b"" = peer closed, None = nothing yet)."""
        sock: Any = self.sock
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

    def establish(self, extended: bool) -> None:
        self.established = True
        self.extended = extended
        self.decoder.allowed_types = _ESTABLISHED_TYPES

    _timeout: float | None = None

    def send(self, frame: bytes) -> None:
        with self.send_lock:
            if self.tls and self.sock.gettimeout() == 0.0:
                _send_nonblocking_tls(self.sock, b"".join(frame) if type(frame) is list else frame, self._timeout)
            else:
                net.send(self.sock, frame)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.owns_socket:
            net.close_quietly(self.sock)

    def __repr__(self) -> str:
        return f"<Connection from {self.addr}{' closed' if self.closed else ''}>"


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
            from ..errors import ConnectionClosedError

            raise ConnectionClosedError(f"connection lost while sending: {exc.strerror or exc}") from None
        view = view[sent:]
