"""The name server's UDP datagrams: a ``GET_NSURI`` request and the URI sent back.

A client that knows nothing sends the 9 bytes ``GET_NSURI`` to one or more broadcast
addresses on port ``NS_BCPORT`` (9091), the responder replies to the sender with the name
server's URI as ISO-8859-1 text. This module holds both ends' sockets: the asking side
blocking (:func:`broadcast_request`) or on asyncio (:func:`abroadcast_request`), and the
answering side's socket (:func:`responder_socket`, :func:`receive_request`,
:func:`send_answer`). Which URI to answer with, and when to ask, is decided above
(:mod:`ember.naming.responder`, :mod:`ember.client.resolve`).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Callable, Iterable

from ..errors import CommunicationError, PyroError
from ..uri import URI

__all__ = [
    "REQUEST",
    "abroadcast_request",
    "broadcast_request",
    "encode_answer",
    "local_address_towards",
    "parse_answer",
    "receive_request",
    "request_socket",
    "responder_socket",
    "send_answer",
    "targets",
]

REQUEST = b"GET_NSURI"
MAX_DATAGRAM = 100  # a request is 9 bytes; longer datagrams are not requests


def targets(addresses: Iterable[str]) -> list[str]:
    """The broadcast addresses to send to; ``<broadcast>`` means 255.255.255.255."""
    return ["255.255.255.255" if a == "<broadcast>" else a for a in addresses]


def encode_answer(uri: URI | str) -> bytes:
    return str(uri).encode("iso-8859-1")


def parse_answer(data: bytes) -> URI | None:
    """The URI in an answer, or None when the datagram is not one."""
    try:
        return URI(data.decode("iso-8859-1"))
    except (UnicodeDecodeError, PyroError):
        return None


# ---- the asking side ------------------------------------------------------------------------

def request_socket() -> socket.socket:
    """An IPv4 UDP socket allowed to send broadcasts."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    return sock


def _send_requests(send: Callable[[bytes, tuple], object], addresses: list[str], port: int) -> None:
    for address in addresses:
        with contextlib.suppress(OSError):  # an unreachable network must not stop the other addresses
            send(REQUEST, (address, port))


def broadcast_request(port: int, addresses: Iterable[str], rounds: int, wait: float) -> URI | None:
    """Send ``GET_NSURI`` to every address on ``port``, ``rounds`` times, waiting up to
    ``wait`` seconds after each round; the first URI answered, or None."""
    addresses = targets(addresses)
    with request_socket() as sock:
        for _ in range(rounds):
            _send_requests(sock.sendto, addresses, port)
            deadline = time.monotonic() + wait
            while (left := deadline - time.monotonic()) > 0:
                sock.settimeout(left)
                try:
                    data, _addr = sock.recvfrom(MAX_DATAGRAM)
                except OSError:  # includes the timeout
                    break
                if (uri := parse_answer(data)) is not None:
                    return uri
    return None


class _Answers(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: object) -> None:
        self.queue.put_nowait(data)

    def error_received(self, exc: Exception) -> None:  # an ICMP error for one address: keep listening
        pass


async def abroadcast_request(port: int, addresses: Iterable[str], rounds: int, wait: float) -> URI | None:
    """:func:`broadcast_request` on the running event loop (cancellable, no thread)."""
    addresses = targets(addresses)
    loop = asyncio.get_running_loop()
    transport, answers = await loop.create_datagram_endpoint(_Answers, sock=request_socket())
    try:
        for _ in range(rounds):
            _send_requests(transport.sendto, addresses, port)
            deadline = loop.time() + wait
            while (left := deadline - loop.time()) > 0:
                try:
                    data = await asyncio.wait_for(answers.queue.get(), left)
                except asyncio.TimeoutError:
                    break
                if (uri := parse_answer(data)) is not None:
                    return uri
    finally:
        transport.close()
    return None


# ---- the answering side ---------------------------------------------------------------------

def responder_socket(host: str, port: int) -> socket.socket:
    """A UDP socket bound to ``host:port`` for answering requests (``""`` = every interface)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise CommunicationError(f"cannot bind the broadcast responder to udp {host or '*'}:{port}: "
                                 f"{exc.strerror or exc}") from None
    return sock


def receive_request(sock: socket.socket) -> tuple | None:
    """Read one pending datagram: the sender's address if it is ``GET_NSURI``, else None
    (anything else, and a failed read, is ignored)."""
    try:
        data, addr = sock.recvfrom(MAX_DATAGRAM)
    except OSError:
        return None
    return addr if data == REQUEST else None


def send_answer(sock: socket.socket, addr: tuple, answer: bytes) -> None:
    """Send ``answer`` (see :func:`encode_answer`) to ``addr``; raises OSError."""
    sock.sendto(answer, addr)


def local_address_towards(addr: tuple) -> str | None:
    """The address of this host's interface that routes to ``addr``, or None."""
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(addr[:2])
        return probe.getsockname()[0]
    return None
