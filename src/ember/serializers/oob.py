"""Out-of-band buffers: large bytes, buffer-protocol objects and numpy arrays between Ember peers.

When both ends announced ``EOOB`` in the handshake (Ember peers with extended types and
config ``OUT_OF_BAND`` on), the msgpack serializer does not copy big buffers into its
output. Each one is replaced in the msgpack structure by a small extension value (code
0x40) naming its kind, where its bytes are in the payload and, for an array, its dtype and
shape; the raw bytes follow the structure in the same message body, each at an offset
aligned to 64 bytes. The message carries an ``EBUF`` annotation: the length of the
structure (8 bytes, big endian), so the receiver knows where msgpack ends.

The sender hands ``[header, structure, padding, buffer, ...]`` to one ``sendmsg``; the
receiver decodes the structure and builds each value over its slice of the one receive
buffer: a memoryview or a numpy array costs no copy at all; bytes, bytearray and
array.array are rebuilt as themselves (one copy, the only way to make those types).

numpy is never imported here: an array can only exist if numpy was imported by the
application, so ``sys.modules`` tells whether to look for one, and a received array
imports numpy when it is built.
"""

from __future__ import annotations

import array
import marshal
import struct
import sys
from typing import Any

from msgpack import ExtType

from ..errors import SerializeError
from .direct import DIRECT_MIN, DirectRanges, direct_annotation
from .marshal_check import check_marshal

__all__ = ["OOB_EXT", "INLINE_ARRAY_EXT", "OOB_ANNOTATION", "OobPayload", "OobData", "Collector", "is_ndarray",
           "array_to_plain", "inline_array", "load_inline_array", "resolve", "payload_of"]

OOB_EXT = 0x40  # msgpack extension code of a placeholder for an out-of-band buffer
INLINE_ARRAY_EXT = 0x41  # a small numpy array (below the threshold) inside the structure
OOB_ANNOTATION = "EBUF"  # per message: the structure's length; its presence says "buffers follow"
ALIGN = 64
_LEN = struct.Struct("!Q")
_PAD = bytes(ALIGN)
# Big bytes, bytearray and memoryview values are looked for inside lists, tuples and dicts of
# up to WALK_CONTAINER elements, WALK_BUDGET elements per message at most: the search is Python
# code run for every message, and the long containers it skips are the many-small-values kind
# (a batch of calls, rows of a table). numpy arrays need no search: msgpack hands them over
# wherever they are.
WALK_CONTAINER = 64
WALK_BUDGET = 512
# dtype kinds that travel as raw memory: bool, signed, unsigned, float, complex, timedelta, datetime
_ARRAY_KINDS = frozenset("biufcmM")


def is_ndarray(obj: Any) -> bool:
    """Whether ``obj`` is a numpy array, without importing numpy."""
    np = sys.modules.get("numpy")
    return np is not None and isinstance(obj, np.ndarray)


def _check_dtype(dtype: Any) -> None:
    if dtype.kind not in _ARRAY_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise SerializeError(f"cannot send a numpy array of dtype {dtype}: only bool and numeric dtypes "
                             "(integers, floats, complex, datetime64, timedelta64) travel as arrays; convert it "
                             "(arr.tolist(), or arr.astype(...)) first")


def array_to_plain(obj: Any) -> Any:
    """What a peer without out-of-band buffers gets for a numpy array or scalar: nested lists
    of Python numbers (``tolist()``), which every serializer and Pyro5 can hold."""
    return obj.tolist() if is_ndarray(obj) else obj.item()


def _flat(arr: Any) -> tuple[Any, str]:
    """(a 1-d view of the array's bytes in memory order, 'C' or 'F'); one copy if it is not contiguous."""
    if arr.flags.c_contiguous:
        order = "C"
    elif arr.flags.f_contiguous:
        order = "F"
    else:
        arr = arr.copy(order="C")  # strided: the one copy the format needs
        order = "C"
    # as bytes (a uint8 view): datetime64/timedelta64 have no buffer protocol of their own
    return memoryview(arr.reshape(-1, order=order).view("u1")), order


class OobPayload:
    """A message payload in parts: the msgpack structure, then padded buffers.

    ``len()`` is the whole payload's size; :func:`ember.protocol.framing.encode` sends the
    parts as they are and adds the ``EBUF`` annotation.
    """

    __slots__ = ("parts", "nbytes", "structure_size", "direct")

    def __init__(self, structure: bytes, buffers: list[memoryview], kinds: list[str] | None = None) -> None:
        # the structure is padded to ALIGN, then each buffer sits at its offset (see Collector)
        parts: list[Any] = [structure]
        pos = len(structure)
        ranges = []  # big bytes values: the receiver may receive them straight into bytes objects
        for i, buf in enumerate(buffers):
            pad = -pos % ALIGN
            if pad:
                parts.append(_PAD[:pad])
                pos += pad
            parts.append(buf)
            if kinds is not None and kinds[i] == "b" and buf.nbytes >= DIRECT_MIN:
                ranges.append((pos, buf.nbytes))
            pos += buf.nbytes
        self.parts = parts
        self.nbytes = pos
        self.structure_size = len(structure)
        self.direct = direct_annotation(ranges) if ranges else b""  # the EBYT annotation

    def __len__(self) -> int:
        return self.nbytes

    def __bytes__(self) -> bytes:
        return b"".join(self.parts)

    def annotation(self) -> bytes:
        return _LEN.pack(self.structure_size)


class OobData:
    """A received payload with out-of-band buffers: the buffer and where its structure ends."""

    __slots__ = ("view", "structure_size", "direct")

    def __init__(self, data: Any, annotation: bytes, direct: DirectRanges | None = None) -> None:
        if len(annotation) != 8:
            raise SerializeError(f"malformed {OOB_ANNOTATION} annotation: {len(annotation)} bytes, expected 8")
        (size,) = _LEN.unpack(annotation)
        if size > len(data):
            raise SerializeError(f"malformed {OOB_ANNOTATION} annotation: structure of {size} bytes in a payload "
                                 f"of {len(data)}")
        self.view = memoryview(data)
        self.structure_size = size
        self.direct = direct  # bytes values received into their own objects (see .direct)


def payload_of(msg: Any) -> Any:
    """A received message's payload as its serializer takes it: :class:`OobData` when the
    message carries out-of-band buffers (an ``EBUF`` annotation), else ``msg.data``."""
    ann = msg.annotations
    if ann and OOB_ANNOTATION in ann:
        return OobData(msg.data, ann[OOB_ANNOTATION], msg.direct)
    return msg.data


class Collector:
    """Gathers the buffers of one value being serialized and makes their placeholders."""

    __slots__ = ("buffers", "kinds", "pos", "threshold", "budget")

    def __init__(self, threshold: int) -> None:
        self.buffers: list[memoryview] = []
        self.kinds: list[str] = []
        self.pos = 0  # offset of the next buffer, relative to the end of the structure
        self.threshold = threshold
        self.budget = WALK_BUDGET  # container elements looked at for big bytes (bounds the cost of a walk)

    def _add(self, view: memoryview, kind: str, meta: Any) -> Any:
        offset = self.pos + (-self.pos % ALIGN)  # relative to the aligned end of the structure
        self.pos = offset + view.nbytes
        self.buffers.append(view)
        self.kinds.append(kind)
        return ExtType(OOB_EXT, marshal.dumps((kind, offset, view.nbytes, meta)))

    def buffer(self, obj: Any) -> Any:
        """The placeholder for bytes, bytearray or memoryview ``obj``."""
        t = type(obj)
        if t is bytes:
            return self._add(memoryview(obj), "b", None)
        if t is bytearray:
            return self._add(memoryview(obj), "y", None)
        view = obj if obj.c_contiguous else memoryview(obj.tobytes())
        meta = (view.format, view.shape) if view.ndim != 1 or view.format != "B" else None
        return self._add(view.cast("B") if view.ndim != 1 or view.format != "B" else view, "m", meta)

    def array(self, obj: Any) -> Any:
        """The placeholder for an array.array."""
        return self._add(memoryview(obj).cast("B"), "a", obj.typecode)

    def ndarray(self, obj: Any) -> Any:
        """The placeholder for a numpy array (inline below the threshold)."""
        _check_dtype(obj.dtype)
        if obj.nbytes < self.threshold or obj.nbytes == 0:
            return inline_array(obj)
        view, order = _flat(obj)
        return self._add(view, "n", (obj.dtype.str, obj.shape, order))

    def lift(self, value: Any) -> Any:
        """``value`` with big bytes/bytearray/memoryview replaced by placeholders (containers
        are copied only where something was replaced)."""
        t = type(value)
        if t is bytes or t is bytearray:
            return self.buffer(value) if len(value) >= self.threshold else value
        if t is memoryview:
            if value.nbytes >= self.threshold:
                return self.buffer(value)
            return value if value.c_contiguous else value.tobytes()  # msgpack takes contiguous views only
        if t is tuple or t is list:
            return self.lift_items(value)
        if t is dict:
            return self.lift_values(value)
        return value

    def lift_items(self, seq: Any) -> Any:
        if len(seq) > WALK_CONTAINER:  # a long list (a batch's calls, a table of rows): not searched
            return seq
        self.budget -= len(seq)
        if self.budget < 0:
            return seq
        out = None
        for i, item in enumerate(seq):
            if type(item) in _WALKED:
                new = self.lift(item)
                if new is not item:
                    if out is None:
                        out = list(seq)
                    out[i] = new
        if out is None:
            return seq
        return tuple(out) if type(seq) is tuple else out

    def lift_values(self, d: dict) -> dict:
        if len(d) > WALK_CONTAINER:
            return d
        self.budget -= len(d)
        if self.budget < 0:
            return d
        out = None
        for key, item in d.items():
            if type(item) in _WALKED:
                new = self.lift(item)
                if new is not item:
                    if out is None:
                        out = dict(d)
                    out[key] = new
        return d if out is None else out


_WALKED = frozenset({bytes, bytearray, memoryview, tuple, list, dict})


def inline_array(arr: Any) -> Any:
    """A numpy array inside the structure (ext 0x41): dtype, shape and its bytes."""
    view, order = _flat(arr) if arr.nbytes else (b"", "C")
    return ExtType(INLINE_ARRAY_EXT, marshal.dumps((arr.dtype.str, arr.shape, order, bytes(view))))


def _numpy() -> Any:
    try:
        import numpy
    except ImportError:
        raise SerializeError("received a numpy array but numpy is not installed here (pip install numpy)") from None
    return numpy


def _build_array(np: Any, buf: Any, meta: Any, nbytes: int, readonly_copy: bool) -> Any:
    try:
        dstr, shape, order = meta
        dtype = np.dtype(dstr)
        _check_dtype(dtype)
        shape = tuple(int(n) for n in shape)
        if order not in ("C", "F"):
            raise ValueError(f"order {order!r}")
        count = 1
        for n in shape:
            if n < 0:
                raise ValueError("negative dimension")
            count *= n
        if count * dtype.itemsize != nbytes:
            raise ValueError(f"{nbytes} bytes do not hold shape {shape} of {dtype}")
        arr = np.frombuffer(buf, dtype=dtype, count=count).reshape(shape, order=order)
    except SerializeError:
        raise
    except Exception as exc:
        raise SerializeError(f"malformed numpy array from peer: {exc}") from None
    if readonly_copy and not arr.flags.writeable:
        arr = arr.copy(order="K")  # received in an immutable buffer: give the application a writable array
    return arr


def load_inline_array(data: bytes) -> Any:
    """The numpy array of an ext 0x41 value (a writable copy)."""
    check_marshal(data)  # a hostile placeholder must not declare more than it carries
    try:
        dstr, shape, order, raw = marshal.loads(data)
    except Exception as exc:
        raise SerializeError(f"malformed inline numpy array from peer: {exc}") from None
    np = _numpy()
    arr = _build_array(np, raw, (dstr, shape, order), len(raw), False)
    return arr.copy(order="K")


def resolve(payload: OobData, data: bytes) -> Any:
    """The value of an out-of-band placeholder (ext 0x40) in ``payload``."""
    check_marshal(data)  # a hostile placeholder must not declare more than it carries
    try:
        kind, offset, nbytes, meta = marshal.loads(data)
        if type(offset) is not int or type(nbytes) is not int or offset < 0 or nbytes < 0:
            raise ValueError("offset and size must be integers >= 0")
    except Exception as exc:
        raise SerializeError(f"malformed out-of-band placeholder: {exc}") from None
    view = payload.view
    size = payload.structure_size
    start = size + (-size % ALIGN) + offset
    end = start + nbytes
    if end > len(view):
        raise SerializeError(f"out-of-band buffer of {nbytes} bytes at {start} lies outside the payload "
                             f"of {len(view)} bytes")
    if payload.direct is not None:
        received = payload.direct.take(start, nbytes, kind)
        if received is not None:
            return received  # received straight into its own bytes object: no copy
    buf = view[start:end]
    if kind == "b":
        return bytes(buf)
    if kind == "y":
        return bytearray(buf)
    if kind == "m":
        if meta is None:
            return buf
        try:
            fmt, shape = meta
            return buf.cast(fmt, shape)
        except (TypeError, ValueError):
            return buf  # a format memoryview cannot cast to: the bytes as they are
    if kind == "a":
        try:
            arr = array.array(meta)
            arr.frombytes(buf)
        except (TypeError, ValueError) as exc:
            raise SerializeError(f"malformed array.array from peer: {exc}") from None
        return arr
    if kind == "n":
        return _build_array(_numpy(), buf, meta, nbytes, True)
    raise SerializeError(f"unknown out-of-band buffer kind {kind!r}")
