"""msgpack (wire id 4): Ember's default, a C-speed binary format.

Extension types are Pyro5's (PROTOCOL.md §5.4): 0x30 complex, 0x31 big int, 0x32 naive
datetime (local POSIX timestamp), 0x33 date (ordinal as a native C long).
"""

from __future__ import annotations

import array
import datetime
import decimal
import struct
import threading
import uuid
from typing import Any

import msgpack

from ..config import config
from ..errors import PyroError, SerializeError
from ._classes import _EXTENDED, dict_to_object, object_to_dict
from .base import Serializer, check_call
from .oob import (
    INLINE_ARRAY_EXT,
    OOB_EXT,
    Collector,
    OobData,
    OobPayload,
    array_to_plain,
    load_inline_array,
    resolve,
)

_DD = struct.Struct("dd")
_KEEP_PACKER_BELOW = 1 << 20  # a thread keeps its Packer (and its buffer) only after messages up to 1 MiB
_D = struct.Struct("d")
_L = struct.Struct("l")


def _object_hook(d: dict) -> Any:
    if "__class__" in d:
        return dict_to_object(d)
    return d


def _ext_hook(code: int, data: bytes) -> Any:
    if code == 0x30:
        real, imag = _DD.unpack(data)
        return complex(real, imag)
    if code == 0x31:
        return int(data)
    if code == 0x32:
        return datetime.datetime.fromtimestamp(_D.unpack(data)[0])
    if code == 0x33:
        fmt = "<q" if len(data) == 8 else "<i"
        return datetime.date.fromordinal(struct.unpack(fmt, data)[0])
    if code == INLINE_ARRAY_EXT:
        return load_inline_array(data)
    raise SerializeError(f"invalid msgpack extension type code {code}")


# values of these types are looked into for big bytes to send out of band
_WALKED = frozenset({bytes, bytearray, memoryview, tuple, list, dict})
# packed by msgpack itself, never through the default hook (so never out of band)
_SCALARS = frozenset({int, float, str, bool, type(None)})


class MsgpackSerializer(Serializer):
    """msgpack with bin type on; dict keys may be str, bytes, int, float, bool or None."""

    name = "msgpack"
    serializer_id = 4

    def _default(self, obj: Any) -> Any:
        t = type(obj)
        if self.extended and t in _EXTENDED:
            return _EXTENDED[t](obj)
        if t is complex:
            return msgpack.ExtType(0x30, _DD.pack(obj.real, obj.imag))
        if t is int:
            return msgpack.ExtType(0x31, str(obj).encode("ascii"))
        if t is datetime.datetime:
            if obj.tzinfo is not None:
                raise SerializeError("msgpack cannot send timezone-aware datetimes to a Pyro5 peer")
            return msgpack.ExtType(0x32, _D.pack(obj.timestamp()))
        if t is datetime.date:
            return msgpack.ExtType(0x33, _L.pack(obj.toordinal()))
        if t is set or t is frozenset:
            return list(obj)
        if t is uuid.UUID or t is decimal.Decimal:
            return str(obj)
        if t is array.array:
            if self.oob:
                return self._collector().array(obj)
            return obj.tolist()
        if t.__module__ == "numpy":  # an array or a numpy scalar (numpy is imported: obj exists)
            if self.oob and t.__name__ == "ndarray":
                return self._collector().ndarray(obj)
            if hasattr(obj, "tolist"):
                return array_to_plain(obj)
        return object_to_dict(obj, self.extended)

    def __init__(self, extended: bool = False, oob: bool = False) -> None:
        super().__init__(extended)
        # oob: big buffers and numpy arrays travel after the structure (an Ember peer agreed to EOOB)
        self.oob = oob
        self._local = threading.local()  # one reusable Packer per thread (it is not thread-safe)

    def _collector(self) -> Collector:
        """The collector of the value being serialized on this thread (made when first needed)."""
        local = self._local
        col = getattr(local, "collector", None)
        if col is None:
            col = local.collector = Collector(config.OUT_OF_BAND_THRESHOLD)
        return col

    def _packer(self) -> msgpack.Packer:
        packer = self._local.packer = msgpack.Packer(use_bin_type=True, default=self._default)
        return packer

    def dumps(self, obj: Any) -> Any:
        if self.oob:
            kind = type(obj)
            if kind in _SCALARS:  # never out of band
                return self._pack(obj)
            col = None
            if kind in _WALKED:
                col = Collector(config.OUT_OF_BAND_THRESHOLD)
                obj = col.lift(obj)
            return self._pack_oob(obj, col)
        return self._pack(obj)

    def _pack_oob(self, obj: Any, col: Collector | None) -> Any:
        """Pack with out-of-band buffers: bytes, or an :class:`OobPayload` when buffers were set aside."""
        local = self._local
        local.collector = col
        try:
            data = self._pack(obj)
        finally:
            col = local.collector
            local.collector = None
        if col is not None and col.buffers:
            return OobPayload(data, col.buffers, col.kinds)
        return data

    def _pack(self, obj: Any) -> bytes:
        try:
            packer = self._local.packer
        except AttributeError:
            packer = self._packer()
        try:
            data = packer.pack(obj)
            if len(data) > _KEEP_PACKER_BELOW:
                del self._local.packer  # its buffer grew to this size: don't keep that per thread
            return data
        except SerializeError:
            raise
        except Exception as exc:
            raise SerializeError(f"msgpack cannot serialize: {exc}") from None

    def loads(self, data: Any) -> Any:
        if type(data) is OobData:
            return _unpack_oob(data)
        return _unpack(data)

    def dumps_call(self, obj: str, method: str, args: Any, kwargs: dict | None) -> Any:
        if self.oob:
            col = None
            scalars = not kwargs
            for arg in args:
                kind = type(arg)
                if kind in _WALKED:
                    col = Collector(config.OUT_OF_BAND_THRESHOLD)
                    args = col.lift_items(args)
                    scalars = False
                    break
                if kind not in _SCALARS:
                    scalars = False
            if scalars:  # nothing msgpack hands to the default hook: no out-of-band buffer can come up
                return self._pack((obj, method, args, kwargs))
            if kwargs:
                for value in kwargs.values():
                    if type(value) in _WALKED:
                        col = col or Collector(config.OUT_OF_BAND_THRESHOLD)
                        kwargs = col.lift_values(kwargs)
                        break
            return self._pack_oob((obj, method, args, kwargs), col)
        return self._pack((obj, method, args, kwargs))

    def loads_call(self, data: Any) -> tuple[str, str, Any, dict | None]:
        if type(data) is OobData:
            return check_call(_unpack_oob(data))
        return check_call(_unpack(data))


def _unpack_oob(payload: OobData) -> Any:
    """Decode a structure whose placeholders name buffers later in the same payload."""

    def hook(code: int, data: bytes) -> Any:
        if code == OOB_EXT:
            return resolve(payload, data)
        return _ext_hook(code, data)

    return _unpack(payload.view[: payload.structure_size], hook)


def _unpack(data: Any, ext_hook: Any = _ext_hook) -> Any:
    """Decode msgpack data; anything malformed is a SerializeError (Ember's own errors pass through)."""
    try:
        # strict_map_key off: dict keys may be any hashable msgpack value (int, float, bool, None,
        # bytes), not only str; the message size limit still bounds what a peer can send
        return msgpack.unpackb(data, raw=False, strict_map_key=False, object_hook=_object_hook, ext_hook=ext_hook)
    except SerializeError:
        raise
    except Exception as exc:
        if _is_ember_error(exc):
            raise
        if isinstance(exc, TypeError) and "unhashable" in str(exc):
            raise SerializeError(f"msgpack data has a dict key that cannot be a key here ({exc}): msgpack carries "
                                 "tuple (and other container) keys as lists; use str, int, float, bool, None or "
                                 "bytes keys, or the marshal or serpent serializer for tuple keys") from None
        raise SerializeError(f"invalid msgpack data: {exc}") from None


def _is_ember_error(exc: BaseException) -> bool:
    return isinstance(exc, PyroError)
