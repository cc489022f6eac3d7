"""Framing of the Pyro5 wire protocol (version 502), sans-I/O.

Bytes in, :class:`Message` out, and back. This module knows nothing about sockets,
threads or event loops: the server loops and proxies feed received bytes to a
:class:`Decoder` and write what :func:`encode` returns with one ``sendall``.

Limits (``max_message_size``, ``max_annotations_size``) are checked from the 40-byte
header alone, before the body is read or any buffer for it is allocated. Every malformed
input raises :class:`ember.errors.ProtocolError` (or its subclass
:class:`~ember.errors.MessageTooLargeError`), never another exception type.
"""

from __future__ import annotations

import mmap
import struct
import sys
import uuid
import zlib
from collections.abc import Callable
from enum import IntEnum, IntFlag
from typing import Any

from ..errors import MessageTooLargeError, ProtocolError
from ..serializers.direct import DIRECT_ANNOTATION, DirectRanges
from ..serializers.oob import ALIGN, OOB_ANNOTATION, OobPayload
from .annblock import encode_annotations, parse_annotations

__all__ = [
    "PROTOCOL_VERSION",
    "MAGIC",
    "HEADER_SIZE",
    "MsgType",
    "Flags",
    "Message",
    "encode",
    "Decoder",
    "parse_annotations",
    "PING_SERIALIZER_ID",
]

PROTOCOL_VERSION = 502
MAGIC = 0x4DC5
HEADER_SIZE = 40
PING_SERIALIZER_ID = 42
COMPRESS_THRESHOLD = 100  # payloads up to this size are never worth compressing
# payloads from this size on are received into a buffer of their own (a bytearray) and sent
# without being joined to their header
LARGE_PAYLOAD = 256 * 1024
# a payload above this size is received into anonymous memory (mmap) whose pages are committed
# only as bytes arrive: a header declaring a huge body costs nothing until the body comes
LAZY_PAYLOAD = 1024 * 1024
# the mmap of the last large payload is kept for the next one (no fresh page faults) when
# nothing refers to it any more, up to this size
_SPARE_MAX = 64 * 1024 * 1024
_MAP_PRIVATE = getattr(mmap, "MAP_PRIVATE", 0)  # not on Windows, where the map is the process's own anyway
_TAG = b"PYRO"
_HEADER = struct.Struct("!4sHBBHHII16sHH")
_PREFIX = b"PYRO\x01\xf6"  # tag + version: lets a wrong peer be recognised after 6 bytes
_ZERO_ID = bytes(16)
_DEFAULT_MAX = 1073741824


class MsgType(IntEnum):
    """Message types of protocol 502."""

    CONNECT = 1
    CONNECTOK = 2
    CONNECTFAIL = 3
    INVOKE = 4
    RESULT = 5
    PING = 6


# the message types as plain ints, for hot paths (an enum member lookup costs ~100 ns)
T_INVOKE = 4
T_RESULT = 5


class Flags(IntFlag):
    """Bits of the header's flags field."""

    NONE = 0
    EXCEPTION = 0x01
    COMPRESSED = 0x02
    ONEWAY = 0x04
    BATCH = 0x08
    ITEMSTREAMRESULT = 0x10
    KEEPSERIALIZED = 0x20
    CORR_ID = 0x40


_VALID_TYPES = frozenset(int(t) for t in MsgType)
# plain ints on the hot path: IntFlag arithmetic is slow
F_EXCEPTION = 0x01
F_COMPRESSED = 0x02
F_ONEWAY = 0x04
F_BATCH = 0x08
F_ITEMSTREAM = 0x10
F_KEEPSERIALIZED = 0x20
F_CORR_ID = 0x40


class Message:
    """One protocol message: header fields, annotations and the (serialized) payload.

    ``data`` is the payload as sent by the application layer (already serialized, not
    compressed: compression is applied by :func:`encode` and undone by :class:`Decoder`).
    ``annotations`` maps 4-character ASCII ids to raw bytes. ``correlation_id`` is a
    :class:`uuid.UUID` or None; when set, the CORR_ID flag is set on encoding.
    """

    __slots__ = ("type", "serializer_id", "flags", "seq", "data", "annotations", "correlation_id", "direct")

    def __init__(
        self,
        type: int,
        serializer_id: int,
        flags: int = 0,
        seq: int = 0,
        data: bytes = b"",
        annotations: dict[str, bytes] | None = None,
        correlation_id: uuid.UUID | None = None,
    ) -> None:
        self.type = type
        self.serializer_id = serializer_id
        self.flags = flags
        self.seq = seq
        self.data = data
        self.annotations = annotations if annotations is not None else {}
        self.correlation_id = correlation_id
        # received: the big bytes values that went straight into their own objects (see serializers.direct)
        self.direct: DirectRanges | None = None

    def __repr__(self) -> str:
        try:
            tname = MsgType(self.type).name
        except ValueError:
            tname = str(self.type)
        return (
            f"<Message {tname} ser={self.serializer_id} flags={self.flags:#x} seq={self.seq} "
            f"data={len(self.data)}B ann={sorted(self.annotations)} corr={self.correlation_id}>"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Message):
            return NotImplemented
        return all(getattr(self, s) == getattr(other, s) for s in self.__slots__ if s != "direct")

    __hash__ = None  # type: ignore[assignment]


def encode(
    msg: Message,
    compress: bool = False,
    max_message_size: int = _DEFAULT_MAX,
    parts: bool = False,
) -> Any:
    """Return the whole frame (header + annotations + payload) as one bytes object.

    With ``compress`` the payload is zlib-compressed when it is over 100 bytes and the
    compressed form is actually smaller. Raises :class:`MessageTooLargeError` if the frame
    would exceed ``max_message_size`` (nothing is sent). With ``parts``, a payload of
    ``LARGE_PAYLOAD`` bytes or more is not copied behind its header: the frame comes as the
    list ``[header and annotations, payload]``, to be sent with one ``sendmsg``.

    A payload with out-of-band buffers (:class:`~ember.serializers.oob.OobPayload`) gets its
    ``EBUF`` annotation here and comes as ``[header and annotations, structure, buffer...]``
    (joined into bytes without ``parts``; compressed whole, so joined, with ``compress``).
    """
    data = msg.data
    flags = msg.flags & ~F_COMPRESSED
    annotations = msg.annotations
    oob = None
    if type(data) is OobPayload:
        annotations = dict(annotations)
        annotations[OOB_ANNOTATION] = data.annotation()
        if data.direct:
            annotations[DIRECT_ANNOTATION] = data.direct
        if compress or not parts:
            data = bytes(data)
        else:
            oob = data
    elif annotations and OOB_ANNOTATION in annotations:
        # a received message's EBUF, passed on with the caller's annotations (a call made
        # while serving one): it describes that payload, not this one
        annotations = {k: v for k, v in annotations.items() if k != OOB_ANNOTATION}
    if compress and len(data) > COMPRESS_THRESHOLD:
        packed = zlib.compress(data, 4)
        if len(packed) < len(data):
            data = packed
            flags |= F_COMPRESSED
    ann = encode_annotations(annotations) if annotations else b""
    if len(data) + len(ann) > max_message_size:
        raise MessageTooLargeError(
            f"message of {len(data) + len(ann)} bytes exceeds MAX_MESSAGE_SIZE ({max_message_size})"
        )
    corr = msg.correlation_id
    if corr is not None:
        flags |= F_CORR_ID
        cbytes = corr.bytes
    else:
        flags &= ~F_CORR_ID
        cbytes = _ZERO_ID
    header = _HEADER.pack(
        _TAG, PROTOCOL_VERSION, msg.type, msg.serializer_id, flags, msg.seq & 0xFFFF,
        len(data), len(ann), cbytes, 0, MAGIC,
    )
    if oob is not None:
        return [header + ann, *oob.parts]
    if parts and len(data) >= LARGE_PAYLOAD:
        return [header + ann if ann else header, data]
    if ann:
        return b"".join((header, ann, data))
    return header + data


def check_prefix(data: bytes | bytearray | memoryview) -> None:
    """Validate the first bytes of a frame (tag and version) as early as possible."""
    n = min(len(data), 6)
    if bytes(data[:n]) != _PREFIX[:n]:
        if bytes(data[: min(n, 4)]) != _TAG[: min(n, 4)]:
            raise ProtocolError("invalid data: not a Pyro protocol message (bad tag)")
        if n == 6:
            version = int.from_bytes(bytes(data[4:6]), "big")
            raise ProtocolError(f"invalid protocol version: {version} (expected {PROTOCOL_VERSION})")


class Decoder:
    """Incremental decoder: feed bytes, take complete messages.

    >>> dec = Decoder()
    >>> dec.feed(frame_bytes)
    >>> msg = dec.next_message()   # None until a whole message is buffered

    ``allowed_types`` (a set of message type numbers, or None for any) rejects a message of
    another type as soon as its header is in; one that arrived together with earlier messages
    is judged once those were taken, so a state change they caused applies to it. Once an
    error was raised the decoder is broken: the byte stream has no resynchronisation point,
    so the connection must close.
    """

    __slots__ = ("_buf", "max_message_size", "max_annotations_size", "allowed_types", "_header", "_broken",
                 "rejected", "_ready", "_body", "_filled", "_annotations", "on_message", "budget", "_reserved",
                 "_spare", "_direct")

    def __init__(
        self,
        max_message_size: int = _DEFAULT_MAX,
        max_annotations_size: int = 1048576,
        allowed_types: set[int] | frozenset[int] | None = None,
        budget: Any = None,
    ) -> None:
        self._buf = bytearray()
        self.max_message_size = max_message_size
        self.max_annotations_size = max_annotations_size
        self.allowed_types = allowed_types
        self._header: tuple | None = None
        self._broken: ProtocolError | None = None
        # (type, serializer id, seq, correlation id) of a message refused for its size, so
        # the receiver can tell the sender which call hit the limit before it closes
        self.rejected: tuple | None = None
        self._ready: Message | None = None  # a message decoded straight from one chunk
        # a large payload is received straight into its own buffer (see recv_target)
        self._body: Any = None  # bytearray, or mmap for payloads over LAZY_PAYLOAD
        self._filled = 0
        self._direct: DirectRanges | None = None  # big bytes values received into their own objects
        # shared by the connections of one server: reserve(n) -> bool and release(n), for the
        # bytes of large payloads being received (None: no limit but max_message_size)
        self.budget = budget
        self._reserved = 0
        self._spare: mmap.mmap | None = None
        self._annotations: dict[str, bytes] = {}
        # called with every message as it is decoded (wire logging); None: nothing to do
        self.on_message: Callable[[Message], None] | None = None

    @property
    def buffered(self) -> int:
        """Number of bytes fed but not yet returned as messages."""
        if self._body is not None:
            return len(self._buf) + HEADER_SIZE + self._header[7] + self._filled  # type: ignore[index]
        return len(self._buf)

    @property
    def idle(self) -> bool:
        """Nothing buffered or half received, no error, no wire log: the next chunk starts a message."""
        return not self._buf and self._body is None and self._ready is None and self._broken is None \
            and self.on_message is None

    def bytes_needed(self) -> int:
        """How many more bytes complete the message being read (at least 1 if unknown)."""
        if self._body is not None:
            return max(len(self._body) - self._filled, 1)
        if self._header is None:
            return max(HEADER_SIZE - len(self._buf), 1)
        return max(HEADER_SIZE + self._header[6] + self._header[7] - len(self._buf), 1)

    def recv_target(self) -> memoryview | None:
        """Where the rest of a large payload should be received (``sock.recv_into``), or None.

        After receiving n bytes into it, call :meth:`received`. Saves copying big
        messages through the buffer: the payload lands in the buffer it is returned in.
        """
        if self._body is None:
            return None
        if self._direct is not None:
            return self._direct.target(self._body, self._filled)
        return memoryview(self._body)[self._filled :]

    def received(self, nbytes: int) -> None:
        """Account for ``nbytes`` written into the :meth:`recv_target` view."""
        self._filled += nbytes

    def _start_body(self) -> None:
        """Switch to receiving a large payload into its own buffer once header and annotations are in."""
        header = self._header
        assert header is not None
        alen, dlen = header[7], header[6]
        buf = self._buf
        start = HEADER_SIZE + alen
        if len(buf) < start:
            return
        if alen:
            try:
                self._annotations = parse_annotations(memoryview(buf)[HEADER_SIZE:start])
            except ProtocolError as exc:
                raise self._fail(exc) from None
        else:
            self._annotations = {}
        budget = self.budget
        if budget is not None:
            if not budget.reserve(dlen):
                self.rejected = (header[0], header[1], header[3], uuid.UUID(bytes=header[4]) if header[2] & F_CORR_ID
                                 else None)
                raise self._fail(MessageTooLargeError(
                    f"message of {dlen} bytes refused: the daemon is already receiving {budget.in_flight} bytes of "
                    f"other large messages (MAX_BYTES_IN_FLIGHT {budget.limit}); retry later"))
            self._reserved = dlen
        try:
            body = self._body = self._lazy_buffer(dlen) if dlen > LAZY_PAYLOAD else bytearray(dlen)
        except (OSError, MemoryError, ValueError) as exc:
            self._release()
            raise self._fail(MessageTooLargeError(f"cannot allocate {dlen} bytes for a message: {exc}")) from None
        ann = self._annotations
        if DIRECT_ANNOTATION in ann and OOB_ANNOTATION in ann:
            self._direct = self._direct_ranges(ann, dlen)
        have = min(len(buf) - start, dlen)
        self._put(body, 0, memoryview(buf)[start : start + have])
        self._filled = have
        del buf[: start + have]

    def _direct_ranges(self, ann: dict[str, bytes], size: int) -> DirectRanges | None:
        """The bytes values of this payload to receive into their own objects (EBYT)."""
        structure = ann[OOB_ANNOTATION]
        structure_end = int.from_bytes(structure, "big") if len(structure) == 8 else size
        try:
            return DirectRanges.parse(ann[DIRECT_ANNOTATION], size, structure_end + (-structure_end % ALIGN))
        except ProtocolError as exc:
            self._release()
            raise self._fail(exc) from None

    def _put(self, body: Any, pos: int, data: Any) -> None:
        """Bytes of the payload from ``pos`` on, arrived with others: into the body (or their objects)."""
        if self._direct is not None:
            self._direct.write(body, pos, data)
        else:
            body[pos : pos + len(data)] = data

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Append received bytes. Validates the header as soon as enough bytes are in."""
        if self._broken is not None:
            raise self._broken
        buf = self._buf
        if not buf and self._ready is None and self._body is None and type(data) is bytes and len(data) >= HEADER_SIZE:
            # the common case: one chunk holding exactly one whole message, decoded without copying it around
            self._buf = data  # type: ignore[assignment]  # read-only view for the header checks
            try:
                self._check_header()
            except ProtocolError:
                buf += data
                raise
            finally:
                self._buf = buf
            header = self._header
            if header is not None and HEADER_SIZE + header[6] + header[7] == len(data):
                self._header = None
                self._ready = self._build(data, header)
                return
            self._header = None
        body = self._body
        if body is not None:
            take = min(len(data), len(body) - self._filled)
            self._put(body, self._filled, memoryview(data)[:take])
            self._filled += take
            if take < len(data):
                buf += memoryview(data)[take:]
            return
        buf += data
        if self._header is None:
            self._check_header()
        header = self._header
        if header is not None and header[6] >= LARGE_PAYLOAD:
            self._start_body()

    def _fail(self, exc: ProtocolError) -> ProtocolError:
        self._broken = exc
        return exc

    def _lazy_buffer(self, size: int) -> mmap.mmap:
        """Anonymous memory for a payload: the last one's, if nobody holds it any more."""
        spare, self._spare = self._spare, None
        # references: the local name and getrefcount's argument; more means a result still uses it.
        # Only a private map may grow (a shared anonymous one leaves the new pages unbacked)
        if spare is not None and (_MAP_PRIVATE or len(spare) >= size) and sys.getrefcount(spare) == 2:
            try:
                if len(spare) != size:
                    spare.resize(size)
                return spare
            except (BufferError, OSError, SystemError, ValueError):
                pass
        # private: a shared anonymous map cannot grow with resize (the pages past its first size
        # fault, EFAULT in recv_into, SIGBUS on a write), a private one can
        return mmap.mmap(-1, size, flags=_MAP_PRIVATE) if _MAP_PRIVATE else mmap.mmap(-1, size)

    def _release(self) -> None:
        if self._reserved:
            self.budget.release(self._reserved)
            self._reserved = 0

    def discard(self) -> None:
        """Drop a partly received message (the connection closed): its buffer and its share
        of the budget are freed at once."""
        self._release()
        body, self._body = self._body, None
        self._spare = self._direct = None
        if type(body) is mmap.mmap:
            try:
                body.close()
            except BufferError:  # a view of it is still alive somewhere: the GC frees it
                pass
        self._buf = bytearray()
        self._header = None

    def _check_header(self) -> None:
        buf = self._buf
        if len(buf) < HEADER_SIZE:
            if len(buf) and buf[:6] != _PREFIX[: len(buf[:6])]:
                try:
                    check_prefix(buf)
                except ProtocolError as exc:
                    raise self._fail(exc) from None
            return
        tag, version, mtype, ser, flags, seq, dlen, alen, corr, _res, magic = _HEADER.unpack_from(buf)
        if tag != _TAG:
            raise self._fail(ProtocolError("invalid data: not a Pyro protocol message (bad tag)"))
        if version != PROTOCOL_VERSION:
            raise self._fail(ProtocolError(f"invalid protocol version: {version} (expected {PROTOCOL_VERSION})"))
        if magic != MAGIC:
            raise self._fail(ProtocolError(f"invalid message: bad magic number {magic:#06x}"))
        if mtype not in _VALID_TYPES:
            raise self._fail(ProtocolError(f"invalid message type {mtype}"))
        if self.allowed_types is not None and mtype not in self.allowed_types:
            allowed = ", ".join(str(t) for t in sorted(self.allowed_types))
            raise self._fail(ProtocolError(f"invalid msg type {mtype} received (expected: {allowed})"))
        if dlen + alen > self.max_message_size:
            self.rejected = (mtype, ser, seq, uuid.UUID(bytes=corr) if flags & F_CORR_ID else None)
            raise self._fail(
                MessageTooLargeError(
                    f"message of {dlen + alen} bytes exceeds MAX_MESSAGE_SIZE ({self.max_message_size})"
                )
            )
        if alen > self.max_annotations_size:
            raise self._fail(
                MessageTooLargeError(
                    f"annotation block of {alen} bytes exceeds the limit ({self.max_annotations_size})"
                )
            )
        self._header = (mtype, ser, flags, seq, corr, _res, dlen, alen)

    def next_message(self) -> Message | None:
        """Return the next complete message, or None if more bytes are needed."""
        ready = self._ready
        if ready is not None:
            self._ready = None
            return ready
        if self._broken is not None:
            raise self._broken
        header = self._header
        if header is None:
            if not self._buf:
                return None
            # bytes of the next message came with the one taken before: its header is checked
            # now, against the types allowed in the state that message led to
            self._check_header()
            header = self._header
            if header is None:
                return None
        body = self._body
        if body is not None:
            if self._filled < len(body):
                return None
            self._body = None
            self._header = None
            self._release()
            if type(body) is mmap.mmap and len(body) <= _SPARE_MAX:
                self._spare = body
            msg = self._message(header, body, self._annotations)
            msg.direct, self._direct = self._direct, None
            return msg
        if header[6] >= LARGE_PAYLOAD:
            self._start_body()  # header and annotations completed by this feed
            return self.next_message() if self._body is not None and self._filled == len(self._body) else None
        total = HEADER_SIZE + header[7] + header[6]
        buf = self._buf
        if len(buf) < total:
            return None
        if len(buf) == total:
            frame = bytes(buf)
            buf.clear()
        else:
            frame = bytes(memoryview(buf)[:total])
            del buf[:total]
        self._header = None
        return self._build(frame, header)

    def _build(self, frame: bytes, header: tuple) -> Message:
        """The Message in a complete frame whose header was validated."""
        alen = header[7]
        if alen:
            try:
                annotations = parse_annotations(memoryview(frame)[HEADER_SIZE : HEADER_SIZE + alen])
            except ProtocolError as exc:
                raise self._fail(exc) from None
        else:
            annotations = {}
        return self._message(header, frame[HEADER_SIZE + alen :], annotations)

    def _message(self, header: tuple, data: Any, annotations: dict[str, bytes]) -> Message:
        mtype, ser, flags, seq, corr, _res, _dlen, _alen = header
        if flags & F_COMPRESSED:
            data = self._decompress(data)
            flags &= ~F_COMPRESSED
        correlation_id = uuid.UUID(bytes=corr) if flags & F_CORR_ID else None
        msg = Message(mtype, ser, flags, seq, data, annotations, correlation_id)
        if self.on_message is not None:
            self.on_message(msg)
        return msg

    def _decompress(self, data: bytes) -> bytes:
        dobj = zlib.decompressobj()
        try:
            out = dobj.decompress(data, self.max_message_size + 1)
        except zlib.error as exc:
            raise self._fail(ProtocolError(f"invalid compressed payload: {exc}")) from None
        if len(out) > self.max_message_size or dobj.unconsumed_tail:
            raise self._fail(
                MessageTooLargeError(f"decompressed payload exceeds MAX_MESSAGE_SIZE ({self.max_message_size})")
            )
        if not dobj.eof:
            raise self._fail(ProtocolError("invalid compressed payload: truncated zlib stream"))
        return out

    def messages(self) -> list[Message]:
        """Every complete message buffered so far."""
        out = []
        while (msg := self.next_message()) is not None:
            out.append(msg)
        return out


def decode(frame: bytes, **limits: int) -> Message:
    """Decode exactly one whole frame (convenience for tests and tools)."""
    dec = Decoder(limits.get("max_message_size", _DEFAULT_MAX), limits.get("max_annotations_size", 1048576))
    dec.feed(frame)
    msg = dec.next_message()
    if msg is None:
        raise ProtocolError(f"truncated message: {len(frame)} bytes, {dec.bytes_needed()} more needed")
    if dec.buffered:
        raise ProtocolError(f"{dec.buffered} bytes of trailing data after the message")
    return msg
