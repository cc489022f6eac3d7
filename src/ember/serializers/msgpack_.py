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

from ..errors import PyroError, SerializeError
from ._classes import _EXTENDED, dict_to_object, object_to_dict
from .base import Serializer, check_call

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
    raise SerializeError(f"invalid msgpack extension type code {code}")


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
            return obj.tolist()
        return object_to_dict(obj, self.extended)

    def __init__(self, extended: bool = False) -> None:
        super().__init__(extended)
        self._local = threading.local()  # one reusable Packer per thread (it is not thread-safe)

    def _packer(self) -> msgpack.Packer:
        packer = self._local.packer = msgpack.Packer(use_bin_type=True, default=self._default)
        return packer

    def dumps(self, obj: Any) -> bytes:
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

    def loads(self, data: bytes) -> Any:
        return _unpack(data)

    def dumps_call(self, obj: str, method: str, args: Any, kwargs: dict | None) -> bytes:
        return self.dumps((obj, method, args, kwargs))

    def loads_call(self, data: bytes) -> tuple[str, str, Any, dict | None]:
        return check_call(_unpack(data))


def _unpack(data: bytes) -> Any:
    """Decode msgpack data; anything malformed is a SerializeError (Ember's own errors pass through)."""
    try:
        # strict_map_key off: dict keys may be any hashable msgpack value (int, float, bool, None,
        # bytes), not only str; the message size limit still bounds what a peer can send
        return msgpack.unpackb(data, raw=False, strict_map_key=False, object_hook=_object_hook, ext_hook=_ext_hook)
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
