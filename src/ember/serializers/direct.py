"""Large ``bytes`` received straight into the object the application gets.

A ``bytes`` value owns its memory, so building one from a receive buffer is a copy: for a
16 MiB echo, one per side, the whole difference between a ``bytes`` and a ``memoryview``
round trip. When an Ember peer sends ``bytes`` values out of band, it lists where they lie
in the payload (annotation ``EBYT``: start and size of each, 8 + 8 bytes, big endian); the
receiver then makes each ``bytes`` object before its bytes arrive and has the socket write
into it (``recv_into`` a view of the new object's storage), so the value is never copied.

Making a ``bytes`` to write into is what C code does with ``PyBytes_FromStringAndSize(NULL,
n)``: here through :mod:`ctypes`, on CPython only (elsewhere :data:`AVAILABLE` is false and
the payload is received and copied as before). The object is handed to nobody until it is
full; a message that never completes drops it unseen.

The ranges come from the peer, so they are checked: sorted, not overlapping, after the
structure and inside the payload, at least :data:`DIRECT_MIN` bytes each. The placeholders
decide what a range holds; one naming a range as anything but the ``bytes`` value listed
there is refused (:class:`~ember.errors.SerializeError`).
"""

from __future__ import annotations

import struct
import sys
from typing import Any

from ..errors import ProtocolError, SerializeError

__all__ = ["DIRECT_ANNOTATION", "DIRECT_MIN", "AVAILABLE", "direct_annotation", "DirectRanges"]

DIRECT_ANNOTATION = "EBYT"
DIRECT_MIN = 64 * 1024  # smaller values: the copy costs less than the bookkeeping
_RANGE = struct.Struct("!QQ")
_MAX_RANGES = 4096

try:
    if sys.implementation.name != "cpython":
        raise ImportError("not CPython")
    import ctypes

    _new_bytes = ctypes.pythonapi.PyBytes_FromStringAndSize
    _new_bytes.restype = ctypes.py_object
    _new_bytes.argtypes = (ctypes.c_char_p, ctypes.c_ssize_t)
    _DATA_OFFSET = bytes.__basicsize__ - 1  # where a bytes object's characters start (ob_sval)
    AVAILABLE = True
except (ImportError, AttributeError):  # pragma: no cover - other Pythons copy instead
    AVAILABLE = False


def _writable_bytes(size: int) -> tuple[bytes, memoryview]:
    """A new ``bytes`` of ``size`` (contents undefined) and a writable view of its storage."""
    obj = _new_bytes(None, size)
    view = memoryview((ctypes.c_char * size).from_address(id(obj) + _DATA_OFFSET)).cast("B")
    return obj, view


def direct_annotation(ranges: list[tuple[int, int]]) -> bytes:
    """The ``EBYT`` annotation for ``(start, size)`` ranges of a payload."""
    return b"".join(_RANGE.pack(start, size) for start, size in ranges)


class DirectRanges:
    """The ``bytes`` values of one payload being received into their own objects.

    Positions are offsets in the payload. The receiver asks :meth:`target` where the bytes
    at a position go and :meth:`write` copies bytes that arrived with others (the first
    chunk, an asyncio read) to where they belong.
    """

    __slots__ = ("starts", "ends", "objects", "views")

    def __init__(self, ranges: list[tuple[int, int]]) -> None:
        self.starts = [start for start, _ in ranges]
        self.ends = [start + size for start, size in ranges]
        self.objects: list[bytes] = []
        self.views: list[memoryview] = []
        for _, size in ranges:
            obj, view = _writable_bytes(size)
            self.objects.append(obj)
            self.views.append(view)

    @classmethod
    def parse(cls, raw: bytes, payload_size: int, structure_end: int) -> DirectRanges | None:
        """The ranges an ``EBYT`` annotation lists (None when direct receiving is unavailable);
        :class:`~ember.errors.ProtocolError` if they do not fit the payload."""
        if not AVAILABLE:
            return None
        if len(raw) % _RANGE.size or not raw or len(raw) // _RANGE.size > _MAX_RANGES:
            raise ProtocolError(f"malformed {DIRECT_ANNOTATION} annotation of {len(raw)} bytes")
        ranges = list(_RANGE.iter_unpack(raw))
        pos = structure_end
        for start, size in ranges:
            if start < pos or size < DIRECT_MIN or start + size > payload_size:
                raise ProtocolError(f"malformed {DIRECT_ANNOTATION} annotation: range {start}+{size} does not fit "
                                    f"a payload of {payload_size} bytes after {pos}")
            pos = start + size
        return cls(ranges)

    def target(self, body: Any, filled: int) -> memoryview:
        """Where the payload bytes from position ``filled`` on are to be received."""
        for i, start in enumerate(self.starts):
            if filled < start:
                return memoryview(body)[filled:start]
            if filled < self.ends[i]:
                return self.views[i][filled - start:]
        return memoryview(body)[filled:]

    def write(self, body: Any, filled: int, data: Any) -> None:
        """Put ``data``, the payload bytes from position ``filled`` on, where they belong."""
        data = memoryview(data).cast("B")
        while data.nbytes:
            target = self.target(body, filled)
            n = min(target.nbytes, data.nbytes)
            target[:n] = data[:n]
            data = data[n:]
            filled += n

    def take(self, start: int, size: int, kind: str) -> bytes | None:
        """The received object for an out-of-band value at ``start`` (None: it is in the
        payload's own buffer); a placeholder that does not match the ranges is refused."""
        end = start + size
        for i, rstart in enumerate(self.starts):
            if start < self.ends[i] and rstart < end:  # overlaps range i
                if kind == "b" and start == rstart and end == self.ends[i]:
                    return self.objects[i]
                raise SerializeError(f"out-of-band value at {start}+{size} does not match the bytes range "
                                     f"{rstart}+{self.ends[i] - rstart} its sender listed")
        return None
