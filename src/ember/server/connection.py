"""The daemon's view of one client connection (shared by every server loop)."""

from __future__ import annotations

import socket
import threading
from typing import Any

from .. import net
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

    def establish(self, extended: bool) -> None:
        self.established = True
        self.extended = extended
        self.decoder.allowed_types = _ESTABLISHED_TYPES

    def send(self, frame: bytes) -> None:
        with self.send_lock:
            net.send(self.sock, frame)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.owns_socket:
            net.close_quietly(self.sock)

    def __repr__(self) -> str:
        return f"<Connection from {self.addr}{' closed' if self.closed else ''}>"
