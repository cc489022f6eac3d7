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
  answers in CONNECTOK with ``EMSH`` = a 16-byte secret token for the connection + the name
  of its process's side socket (a listening unix socket in the abstract namespace, so
  nameless on disk too; one per process). Nothing more happens until a large payload is to
  travel: then the client creates two regions (client->daemon, daemon->client), seals them
  against shrinking (a peer could otherwise make the other side's reads fault), connects to
  the side socket and hands both descriptors over with ``SCM_RIGHTS`` together with the
  token, before it sends that message. When the first large payload is a result, the daemon
  sends it over the socket with ``EMSH`` on the reply, which makes the client hand over its
  regions for the next ones. The daemon reads the side socket when it needs the regions,
  without waiting (they are queued by then), and gives them to the connection whose token
  came with them.
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
           "client_channel", "server_offer"]

log = logging.getLogger("ember.transport.shm")

OFFER_ANNOTATION = SHM_OFFER  # CONNECT: b"1" (please); CONNECTOK: token + side socket name
DESCRIPTOR_ANNOTATION = SHM_DESCRIPTOR  # a message whose payload is in the sender's region
_DESC = struct.Struct("!QQQ")  # generation, offset, length
# the protocol 502 header and annotation chunk header (PROTOCOL.md 2.1 and 2.6): the descriptor
# is appended to an encoded frame, whose payload length becomes 0
_HEADER = struct.Struct("!4sHBBHHII16sHH")
_ANN_CHUNK = struct.Struct("!4sI")
_DESCRIPTOR_ID = DESCRIPTOR_ANNOTATION.encode("ascii")
_OFFER_ID = OFFER_ANNOTATION.encode("ascii")
CAPS_ON = b"1"
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
        return _loopback(sock.getpeername()[0]) and _loopback(sock.getsockname()[0])
    except (OSError, ValueError, IndexError, AttributeError):
        return False


def _loopback(host: str) -> bool:
    if host.startswith("127.") or host == "::1":
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback  # ::ffff:127.0.0.1 and the like
    except ValueError:
        return False


def _close_all(fds: Sequence[int], maps: Sequence[Any]) -> None:
    for m in maps:
        if m is not None:
            with contextlib.suppress(BufferError, ValueError):
                m.close()  # a mapping something still views is left to the garbage collector
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


def _annotated(head: Any, fields: tuple, parts: list, key: bytes, value: bytes, with_payload: bool) -> Any:
    """An encoded frame with one more annotation chunk: with its payload parts, or with none
    (the payload is in shared memory)."""
    alen = fields[7]
    dlen = fields[6] if with_payload else 0
    header = _HEADER.pack(*fields[:6], dlen, alen + _ANN_CHUNK.size + len(value), *fields[8:])
    head = b"".join((header, memoryview(head)[HEADER_SIZE:HEADER_SIZE + alen], _ANN_CHUNK.pack(key, len(value)),
                     value))
    return [head, *parts] if with_payload else head


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

    The sessions call :meth:`outgoing` on every frame they send and, for a message that
    carries a descriptor (or, on the client, the daemon's request for the regions),
    :meth:`incoming` before decoding it and :meth:`consumed` after. The regions are set up
    only when the first large payload is about to travel: a connection that never carries
    one costs nothing but the token.
    """

    def __init__(self, threshold: int, max_size: int, out_fd: int | None = None, in_fd: int | None = None,
                 token: bytes | None = None, side: bytes | None = None) -> None:
        self.threshold = threshold
        self.max_size = max_size
        self._token = token  # both sides: what the client's hand-over carries
        self._side = side  # client side: the daemon's side socket (abstract name) to hand the regions to
        self._failed = False  # client side: the hand-over failed, the socket carries everything
        self._asked = False  # daemon side: the client was asked for its regions
        self.delivered: list[int] | None = None  # daemon side: the regions, put here by the side socket
        self._lock = threading.Lock()
        self._out: _Outbound | None = None
        self._in: _Inbound | None = None
        self._fds: list[int] = []
        self.closed = False
        self._finalizer: Any = None
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
        # a channel that is dropped without close() still closes its descriptors (its mappings
        # go with the objects); the finalizer must hold no mapping: that would count as a view
        self._finalizer = weakref.finalize(self, _close_all, self._fds, [])

    def _ready(self) -> bool:
        """The regions are here: the client creates and hands them over the first time, the
        daemon takes them off its side socket (caller holds the lock)."""
        if self._in is not None:
            return True
        if self.closed:
            return False
        if self._side is not None:
            return self._hand_over()
        if self.delivered is None and self._token is not None:
            _hub().collect()
        fds, self.delivered = self.delivered, None
        if fds is None:
            return False
        try:
            self._attach(fds[1], fds[0])  # the client's outbound region is this side's inbound one
        except (OSError, ValueError) as exc:
            log.warning("shared memory from the client cannot be mapped: %s", exc)
            _close_all(fds, [])
            return False
        return True

    def _hand_over(self) -> bool:
        """Client side: create the regions and pass them to the daemon's side socket."""
        if self._failed:
            return False
        fds: list[int] = []
        try:
            fds = [_region(), _region()]  # client->daemon, daemon->client
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as side:
                side.settimeout(2.0)
                side.connect(b"\0" + (self._side or b""))
                socket.send_fds(side, [_HELLO + (self._token or b"")], fds)
            self._attach(fds[0], fds[1])
            return True
        except (OSError, ValueError) as exc:
            log.debug("shared memory not set up (%s): using the socket", exc)
            _close_all(fds, [])
            self._failed = True
            return False

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
            if self.closed:
                return frame
            if not self._ready():
                if self._token is None or self._side is not None or self._asked:
                    return frame
                # daemon side, the client has not handed its regions over yet: this payload goes
                # over the socket, asking the client for them (EMSH on the reply) for the next ones
                self._asked = True
                return _annotated(head, fields, parts, _OFFER_ID, CAPS_ON, with_payload=True)
            assert self._out is not None
            desc = self._out.write(parts, size)
        if desc is None:
            return frame
        return _annotated(head, fields, parts, _DESCRIPTOR_ID, desc, with_payload=False)

    # ---- receiving ------------------------------------------------------------------------

    def incoming(self, msg: Message) -> None:
        """Point ``msg.data`` at the payload its descriptor names (and drop the descriptor
        from its annotations); ProtocolError if the descriptor does not fit. On the client, a
        reply asking for the regions (``EMSH``) makes it hand them over now."""
        if msg.annotations.pop(OFFER_ANNOTATION, None) is not None and self._side is not None:
            with self._lock:
                self._ready()
        raw = msg.annotations.pop(DESCRIPTOR_ANNOTATION, None)
        if raw is None:
            return
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
            if self._token is not None and self._side is None and _the_hub is not None:
                _the_hub.forget(self._token)
            fds, self.delivered = self.delivered, None
            _close_all(fds or [], [r.map for r in (self._out, self._in) if r is not None])
            if self._finalizer is not None:
                self._finalizer()


# ---- daemon side: the side socket ------------------------------------------------------------


class _Hub:
    """This process's side socket (abstract namespace, no file): clients hand their regions
    over here, with the token their connection's CONNECTOK gave them. One per process, made
    on first use, so a connection costs no socket of its own."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.name = _NAME_PREFIX + secrets.token_hex(16).encode("ascii")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(b"\0" + self.name)
            sock.listen(128)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self.sock = sock
        self.lock = threading.Lock()
        self.waiting: dict[bytes, weakref.ref[ShmChannel]] = {}
        self.arriving: list[socket.socket] = []  # accepted, their hand-over not read yet

    def expect(self, token: bytes, channel: ShmChannel) -> None:
        with self.lock:
            self.waiting[token] = weakref.ref(channel)

    def forget(self, token: bytes) -> None:
        with self.lock:
            self.waiting.pop(token, None)

    def collect(self) -> None:
        """Read every hand-over queued on the side socket and give each channel its regions.
        Never waits: a client hands its regions over before it sends the message that needs
        them, so they are queued by the time that message is read."""
        with self.lock:
            while True:
                try:
                    conn, _addr = self.sock.accept()
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    break
                conn.setblocking(False)
                self.arriving.append(conn)
            still = []
            for conn in self.arriving:
                try:
                    data, fds, flags, _addr = socket.recv_fds(conn, 64, 2)
                except (BlockingIOError, InterruptedError):
                    still.append(conn)  # connected, not sent yet: next time
                    continue
                except OSError:
                    conn.close()
                    continue
                conn.close()
                self._deliver(data, fds, flags)
            self.arriving = still[-64:]  # a peer that connects and never sends is dropped eventually
            for conn in still[:-64]:
                conn.close()

    def _deliver(self, data: bytes, fds: list[int], flags: int) -> None:
        ref = self.waiting.pop(data[len(_HELLO):], None) if data.startswith(_HELLO) else None
        channel = ref() if ref is not None else None
        if (channel is None or len(fds) != 2 or flags & socket.MSG_CTRUNC or len(data) != len(_HELLO) + _TOKEN
                or not all(_sealed(fd) for fd in fds)):
            if fds or data:
                log.warning("ignoring a shared-memory hand-over with an unknown token or unsealed regions")
            _close_all(fds, [])
            return
        channel.delivered = list(fds)  # taken up under the channel's own lock (_ready)


_the_hub: _Hub | None = None
_hub_lock = threading.Lock()


def _hub() -> _Hub:
    """The process's side socket (a new one in a forked child)."""
    global _the_hub
    with _hub_lock:
        if _the_hub is None or _the_hub.pid != os.getpid():
            _the_hub = _Hub()
        return _the_hub


def _sealed(fd: int) -> bool:
    """A memfd that cannot shrink under this process's mapping (which would fault on access)."""
    try:
        return bool(fcntl.fcntl(fd, fcntl.F_GET_SEALS) & fcntl.F_SEAL_SHRINK)
    except OSError:
        return False


def server_offer(stream: Any, connect_annotations: dict[str, bytes], threshold: int,
                 max_size: int) -> tuple[ShmChannel, bytes] | None:
    """The channel and the CONNECTOK annotation value (token + side socket name) when the
    client asked for shared memory and is on this machine; None otherwise (plain socket)."""
    if (threshold <= 0 or connect_annotations.get(OFFER_ANNOTATION) != b"1" or getattr(stream, "tls", False)
            or not available() or not local_socket(stream.sock)):
        return None
    try:
        hub = _hub()
    except OSError as exc:
        log.debug("no shared memory: %s", exc)
        return None
    token = secrets.token_bytes(_TOKEN)
    channel = ShmChannel(threshold, max_size, token=token)
    hub.expect(token, channel)
    return channel, token + hub.name


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
    """After a CONNECTOK: the channel when the daemon offered shared memory (its regions are
    made and handed over when the first large payload travels), else None (plain socket)."""
    offer = reply_annotations.get(OFFER_ANNOTATION)
    if offer is None or threshold <= 0:
        return None
    name = offer[_TOKEN:]
    if len(offer) <= _TOKEN or not name.startswith(_NAME_PREFIX) or len(name) > 100:
        log.warning("ignoring a malformed shared-memory offer from the daemon")
        return None
    return ShmChannel(threshold, max_size, token=offer[:_TOKEN], side=name)
