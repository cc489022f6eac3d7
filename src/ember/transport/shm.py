"""Same-host shared memory for large payloads (Ember-to-Ember only, Linux).

When a proxy and its daemon run on one machine (a unix socket, or TCP over loopback) and
both are Ember, a payload of ``SHM_THRESHOLD`` bytes or more does not cross the socket: the
sender copies it into a shared-memory region and the message on the socket carries only a
24-byte descriptor (annotation ``EMSD``: generation, offset, length) and an empty payload.

How the regions are set up and why nothing can leak:

* The regions are ``memfd_create`` files: anonymous, with no name in ``/dev/shm`` or
  anywhere else. The kernel frees one when the last descriptor and mapping of it close,
  which happens when both processes closed the connection, or died (SIGKILL included).
* The client asks for shared memory in its CONNECT (``EMSH`` = ``1``); a daemon that agrees
  answers in CONNECTOK with ``EMSH`` = 16-byte secret token + the name of a one-shot
  listening unix socket in the abstract namespace (also nameless on disk). The client
  creates two regions (client->daemon, daemon->client), seals them against shrinking
  (a peer could otherwise make the other side's reads fault), connects to that socket and
  hands both descriptors over with ``SCM_RIGHTS`` together with the token, before it sends
  any further message. The daemon picks them up when it first needs them, without waiting
  (they are already queued), and closes the listener.
* A side socket rather than the connection itself carries the descriptors because
  ``SCM_RIGHTS`` data is lost to a plain ``recv`` and asyncio streams have no ``recvmsg``:
  the read loops of the three servers and two proxies stay as they are, and TCP over
  loopback works the same way as unix sockets.
* Each direction has one block in flight at a time. The reader stores the generation it
  finished with into the region's control word; the writer uses the region only when the
  previous block was released and otherwise sends the payload over the socket as usual,
  so pipelined calls (asyncio) stay correct. A block is released once nothing refers to
  the received buffer any more (deserializers copy; a value still viewing it keeps it).
* A region grows (``ftruncate``) to the largest payload seen and is reused, so a call does
  not pay for a fresh mapping and its page faults.

A descriptor that does not fit (wrong size, unexpected generation, outside the region, over
``MAX_MESSAGE_SIZE``, on a connection that never handed over its regions) raises
:class:`~ember.errors.ProtocolError` and the connection closes.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import logging
import mmap
import os
import secrets
import socket
import struct
import sys
import threading
import weakref
from collections.abc import Sequence
from typing import Any

from ..errors import MessageTooLargeError, ProtocolError
from ..protocol import F_COMPRESSED, F_KEEPSERIALIZED, HEADER_SIZE, Message
from ..protocol.annotations import SHM_DESCRIPTOR, SHM_OFFER

__all__ = ["OFFER_ANNOTATION", "DESCRIPTOR_ANNOTATION", "available", "local_socket", "ShmChannel",
           "client_channel", "ServerOffer", "server_offer"]

log = logging.getLogger("ember.transport.shm")

OFFER_ANNOTATION = SHM_OFFER  # CONNECT: b"1" (please); CONNECTOK: token + side socket name
DESCRIPTOR_ANNOTATION = SHM_DESCRIPTOR  # a message whose payload is in the sender's region
_DESC = struct.Struct("!QQQ")  # generation, offset, length
# the protocol 502 header and annotation chunk header (PROTOCOL.md 2.1 and 2.6): the descriptor
# is appended to an encoded frame, whose payload length becomes 0
_HEADER = struct.Struct("!4sHBBHHII16sHH")
_ANN_CHUNK = struct.Struct("!4sI")
_DESCRIPTOR_ID = DESCRIPTOR_ANNOTATION.encode("ascii")
_U64 = struct.Struct("=Q")
_RELEASED = 0  # control word: the last generation the reader finished with
DATA_OFFSET = 4096  # payloads start page-aligned after the control page
_TOKEN = 16
_NAME_PREFIX = b"ember-shm-"
_HELLO = b"EMSH"
_GROW_STEP = 1 << 20
# serializers that parse straight from a memoryview; the others get a copy (then the block is released at once)
_VIEW_OK = frozenset({2, 4})  # marshal, msgpack


def available() -> bool:
    """Whether this platform has what shared memory needs (Linux: memfd, SCM_RIGHTS, seals)."""
    return (sys.platform.startswith("linux") and hasattr(os, "memfd_create") and hasattr(socket, "send_fds")
            and hasattr(fcntl, "F_ADD_SEALS"))


def local_socket(sock: Any) -> bool:
    """Whether ``sock`` connects two processes of this machine (unix socket or loopback TCP)."""
    try:
        family = sock.family
        if family == socket.AF_UNIX:
            return True
        if family not in (socket.AF_INET, socket.AF_INET6):
            return False
        peer = sock.getpeername()[0]
        own = sock.getsockname()[0]
        return ipaddress.ip_address(peer.split("%")[0]).is_loopback and \
            ipaddress.ip_address(own.split("%")[0]).is_loopback
    except (OSError, ValueError, IndexError, AttributeError):
        return False


def _close_all(fds: Sequence[int], maps: Sequence[Any]) -> None:
    for m in maps:
        if m is not None:
            with contextlib.suppress(BufferError, ValueError):
                m.close()  # a mapping something still views is left to the garbage collector
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


class _Outbound:
    """The writing side of one region."""

    __slots__ = ("fd", "map", "gen", "limit")

    def __init__(self, fd: int, limit: int) -> None:
        self.fd = fd
        self.map = mmap.mmap(fd, max(os.fstat(fd).st_size, DATA_OFFSET))
        self.gen = _U64.unpack_from(self.map, _RELEASED)[0]
        self.limit = limit

    def write(self, data: Any, size: int) -> bytes | None:
        """Copy ``data`` into the region; its descriptor, or None when the region is busy."""
        region = self.map
        if _U64.unpack_from(region, _RELEASED)[0] != self.gen:
            return None  # the reader still uses the last block
        need = DATA_OFFSET + size
        if need > len(region):
            try:
                region = self._grow(need)
            except (OSError, ValueError):
                return None
        if type(data) is list or type(data) is tuple:
            pos = DATA_OFFSET
            for part in data:
                view = memoryview(part).cast("B")
                region[pos:pos + len(view)] = view
                pos += len(view)
        else:
            region[DATA_OFFSET:need] = data
        self.gen += 1
        return _DESC.pack(self.gen, DATA_OFFSET, size)

    def _grow(self, need: int) -> mmap.mmap:
        size = max(need, min(2 * len(self.map), DATA_OFFSET + self.limit))
        size = -(-size // _GROW_STEP) * _GROW_STEP
        if os.fstat(self.fd).st_size < size:
            os.ftruncate(self.fd, size)
        region = mmap.mmap(self.fd, size)
        old, self.map = self.map, region
        with contextlib.suppress(BufferError):
            old.close()
        return region


class _Inbound:
    """The reading side of one region: maps what the peer wrote, releases it when done."""

    __slots__ = ("fd", "map", "gen", "held", "base")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.gen = 0
        self.held = False
        self._map(max(os.fstat(fd).st_size, DATA_OFFSET))

    def _map(self, size: int) -> None:
        self.map = mmap.mmap(self.fd, size)
        # references to the mapping when nothing views it: this attribute and getrefcount's argument
        self.base = sys.getrefcount(self.map)

    def take(self, raw: bytes, max_size: int) -> memoryview:
        """The payload a descriptor names (ProtocolError if it does not fit)."""
        if len(raw) != _DESC.size:
            raise ProtocolError(f"corrupted shared-memory descriptor: {len(raw)} bytes, expected {_DESC.size}")
        gen, offset, size = _DESC.unpack(raw)
        if self.held and not self.release():
            raise ProtocolError("corrupted shared-memory descriptor: the peer reused a block still in use")
        if gen != self.gen + 1:
            raise ProtocolError(f"corrupted shared-memory descriptor: generation {gen}, expected {self.gen + 1}")
        if offset != DATA_OFFSET or size == 0:
            raise ProtocolError(f"corrupted shared-memory descriptor: {size} bytes at offset {offset} (payloads "
                                f"start at {DATA_OFFSET} and are not empty)")
        if size > max_size:  # a sender with a larger limit: refused as on the socket, from the descriptor alone
            raise MessageTooLargeError(f"message of {size} bytes exceeds MAX_MESSAGE_SIZE ({max_size})")
        end = offset + size
        if end > len(self.map):
            actual = os.fstat(self.fd).st_size
            if end > actual:
                raise ProtocolError(f"corrupted shared-memory descriptor: {size} bytes at offset {offset} lie "
                                    f"outside the {actual}-byte region")
            old = self.map
            self._map(actual)
            with contextlib.suppress(BufferError):
                old.close()
        self.gen = gen
        self.held = True
        return memoryview(self.map)[offset:end]

    def release(self) -> bool:
        """Hand the current block back to the writer once nothing refers to it any more."""
        if not self.held:
            return True
        if sys.getrefcount(self.map) > self.base:
            return False  # a received value still views the region: keep it until that is gone
        _U64.pack_into(self.map, _RELEASED, self.gen)
        self.held = False
        return True


class ShmChannel:
    """One connection's shared memory, both directions.

    The sessions call :meth:`outgoing` on every message they send and, for a message that
    carries a descriptor, :meth:`incoming` before decoding it and :meth:`consumed` after.
    """

    def __init__(self, threshold: int, max_size: int, out_fd: int | None = None, in_fd: int | None = None,
                 offer: ServerOffer | None = None) -> None:
        self.threshold = threshold
        self.max_size = max_size
        self._offer = offer  # daemon side: the regions are fetched from the side socket when first needed
        self.pending = offer is not None  # daemon side: the client's regions are still on the side socket
        self._lock = threading.Lock()
        self._out: _Outbound | None = None
        self._in: _Inbound | None = None
        self._fds: list[int] = []
        self.closed = False
        # a channel that is dropped without close() still closes its descriptors (its mappings
        # go with the objects); the finalizer must hold no mapping: that would count as a view
        self._finalizer = weakref.finalize(self, _close_all, self._fds, [])
        if out_fd is not None and in_fd is not None:
            self._attach(out_fd, in_fd)

    def _attach(self, out_fd: int, in_fd: int) -> None:
        out = _Outbound(out_fd, self.max_size)
        try:
            inbound = _Inbound(in_fd)
        except BaseException:
            out.map.close()
            raise
        self._out, self._in = out, inbound
        self._fds.extend((out_fd, in_fd))  # closed by close() or the finalizer from now on

    def collect(self) -> None:
        """Daemon side: take the client's regions off the side socket now and close it (the
        client queued them before sending anything after the handshake), so an idle
        connection does not keep the side socket open."""
        with self._lock:
            self._ready()

    def _ready(self) -> bool:
        """The regions are here (the daemon fetches them from the side socket the first time)."""
        if self._in is not None:
            return True
        offer, self._offer = self._offer, None
        self.pending = False
        if offer is None or self.closed:
            return False
        fds = offer.collect()
        if fds is None:
            return False
        try:
            self._attach(fds[1], fds[0])  # the client's outbound region is this side's inbound one
        except (OSError, ValueError) as exc:
            log.warning("shared memory from the client cannot be mapped: %s", exc)
            _close_all(fds, [])
            return False
        return True

    # ---- sending -------------------------------------------------------------------------

    def outgoing(self, frame: Any) -> Any:
        """An encoded frame (bytes, or ``[header and annotations, payload part, ...]``) with its
        payload moved into shared memory when it is large enough and the region is free: then
        the header says 0 payload bytes and the annotation block ends with the descriptor.
        Otherwise ``frame`` itself, to be sent over the socket.

        Working on the encoded frame keeps this independent of how a payload is built
        (one bytes object, or a structure followed by out-of-band buffers).
        """
        inbound = self._in
        if inbound is not None and inbound.held:  # a value the application kept may be gone by now
            with self._lock:
                inbound.release()
        if type(frame) is list:
            head = frame[0]
            if len(head) < HEADER_SIZE:
                return frame
            fields = _HEADER.unpack_from(head)
            parts = frame[1:]
        else:
            if len(frame) < HEADER_SIZE + self.threshold:
                return frame
            head = frame
            fields = _HEADER.unpack_from(head)
            parts = [memoryview(frame)[HEADER_SIZE + fields[7]:]]
        size = fields[6]
        # a compressed payload is left alone: the receiver inflates what the socket brought
        if size < self.threshold or size > self.max_size or fields[4] & F_COMPRESSED:
            return frame
        with self._lock:
            if self.closed or not self._ready():
                return frame
            assert self._out is not None
            desc = self._out.write(parts, size)
        if desc is None:
            return frame
        alen = fields[7]
        header = _HEADER.pack(*fields[:6], 0, alen + _ANN_CHUNK.size + len(desc), *fields[8:])
        return b"".join((header, memoryview(head)[HEADER_SIZE:HEADER_SIZE + alen],
                         _ANN_CHUNK.pack(_DESCRIPTOR_ID, len(desc)), desc))

    # ---- receiving ------------------------------------------------------------------------

    def incoming(self, msg: Message) -> None:
        """Point ``msg.data`` at the payload its descriptor names (and drop the descriptor
        from its annotations); ProtocolError if the descriptor does not fit."""
        raw = msg.annotations.pop(DESCRIPTOR_ANNOTATION)
        if msg.data:
            raise ProtocolError("corrupted shared-memory descriptor: the message also carries a payload")
        with self._lock:
            if not self._ready():
                raise ProtocolError("shared-memory descriptor received, but the peer never handed over its "
                                    "shared memory")
            assert self._in is not None
            view = self._in.take(raw, self.max_size)
            if msg.flags & F_KEEPSERIALIZED or msg.serializer_id not in _VIEW_OK:
                # kept as is (a forwarded blob) or parsed from bytes only: copy, and free the block now
                data: Any = bytes(view)
                view.release()
                self._in.release()
            else:
                data = view
        msg.data = data

    def consumed(self, msg: Message) -> None:
        """The payload of ``msg`` was decoded: release its block (unless a value still views it)."""
        msg.data = b""
        with self._lock:
            if self._in is not None:
                self._in.release()

    dropped = consumed  # a reply nobody waits for any more

    def close(self) -> None:
        """Unmap and close both regions (idempotent); the kernel frees them once the peer did too."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
            offer, self._offer = self._offer, None
            self.pending = False
            if offer is not None:
                offer.close()
            _close_all([], [r.map for r in (self._out, self._in) if r is not None])
            self._finalizer()


# ---- daemon side: offering ------------------------------------------------------------------


class ServerOffer:
    """A daemon's one-shot side socket through which a client hands over its regions."""

    def __init__(self) -> None:
        self.token = secrets.token_bytes(_TOKEN)
        self.name = _NAME_PREFIX + secrets.token_hex(16).encode("ascii")
        self.sock: socket.socket | None = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.sock.bind(b"\0" + self.name)
            self.sock.listen(4)
            self.sock.setblocking(False)
        except OSError:
            self.sock.close()
            raise

    @property
    def annotation(self) -> bytes:
        return self.token + self.name

    def collect(self) -> list[int] | None:
        """The client's two region descriptors (outbound, inbound), already queued on the side
        socket; None when they are not there or do not check out. Never waits."""
        sock, self.sock = self.sock, None
        if sock is None:
            return None
        try:
            for _attempt in range(4):  # someone else may have connected first: their token is wrong
                try:
                    conn, _addr = sock.accept()
                except (BlockingIOError, InterruptedError):
                    return None
                with conn:
                    conn.setblocking(False)
                    try:
                        data, fds, flags, _addr = socket.recv_fds(conn, 64, 2)
                    except OSError:
                        continue
                    if (len(fds) == 2 and not flags & socket.MSG_CTRUNC and len(data) == len(_HELLO) + _TOKEN
                            and data.startswith(_HELLO) and secrets.compare_digest(data[len(_HELLO):], self.token)
                            and all(_sealed(fd) for fd in fds)):
                        return list(fds)
                    log.warning("ignoring a shared-memory hand-over with a wrong token or unsealed regions")
                    _close_all(fds, [])
            return None
        finally:
            sock.close()

    def close(self) -> None:
        sock, self.sock = self.sock, None
        if sock is not None:
            sock.close()


def _sealed(fd: int) -> bool:
    """A memfd that cannot shrink under this process's mapping (which would fault on access)."""
    try:
        return bool(fcntl.fcntl(fd, fcntl.F_GET_SEALS) & fcntl.F_SEAL_SHRINK)
    except OSError:
        return False


def server_offer(stream: Any, connect_annotations: dict[str, bytes], threshold: int,
                 max_size: int) -> tuple[ShmChannel, bytes] | None:
    """The channel and the CONNECTOK annotation value when the client asked for shared memory
    and is on this machine; None otherwise (plain socket)."""
    if (threshold <= 0 or connect_annotations.get(OFFER_ANNOTATION) != b"1" or getattr(stream, "tls", False)
            or not available() or not local_socket(stream.sock)):
        return None
    try:
        offer = ServerOffer()
    except OSError as exc:
        log.debug("no shared memory for this connection: %s", exc)
        return None
    return ShmChannel(threshold, max_size, offer=offer), offer.annotation


# ---- client side: accepting -------------------------------------------------------------------


def _region() -> int:
    fd = os.memfd_create("ember-shm", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        os.ftruncate(fd, DATA_OFFSET)
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_SEAL)
    except OSError:
        os.close(fd)
        raise
    return fd


def client_channel(reply_annotations: dict[str, bytes], threshold: int, max_size: int) -> ShmChannel | None:
    """After a CONNECTOK: hand the daemon this connection's regions when it offered shared
    memory; the channel, or None (plain socket) when there was no offer or it failed."""
    offer = reply_annotations.get(OFFER_ANNOTATION)
    if offer is None or threshold <= 0:
        return None
    name = offer[_TOKEN:]
    if len(offer) <= _TOKEN or not name.startswith(_NAME_PREFIX) or len(name) > 100:
        log.warning("ignoring a malformed shared-memory offer from the daemon")
        return None
    fds: list[int] = []
    try:
        fds = [_region(), _region()]  # client->daemon, daemon->client
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as side:
            side.settimeout(2.0)
            side.connect(b"\0" + name)
            socket.send_fds(side, [_HELLO + offer[:_TOKEN]], fds)
        return ShmChannel(threshold, max_size, out_fd=fds[0], in_fd=fds[1])
    except OSError as exc:
        log.debug("shared memory not set up (%s): using the socket", exc)
        _close_all(fds, [])
        return None
