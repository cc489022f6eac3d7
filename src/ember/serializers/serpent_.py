"""serpent (wire id 1): Python literal text, Pyro5's default.

Bytes go as ``{'data': <base64>, 'encoding': 'base64'}`` dicts (turn them back with
:func:`ember.tobytes`) unless ``SERPENT_BYTES_REPR`` is on, which writes ``b'..'`` literals.
"""

from __future__ import annotations

from typing import Any

import serpent

from ..config import config
from ..errors import PyroError, SerializeError
from ._classes import _EXTENDED, object_to_dict, to_dict_converter
from .base import Serializer, check_call, walk_classes
from .oob import array_to_plain

_SERPENT_NATIVE = frozenset(
    {int, float, str, bool, type(None), complex, tuple, list, dict, set, frozenset, bytes, bytearray, memoryview}
)


class _EmberSerpent(serpent.Serializer):
    """serpent's serializer with Ember's class registry consulted first."""

    def __init__(self, extended: bool, bytes_repr: bool) -> None:
        super().__init__(indent=False, module_in_classname=True, bytes_repr=bytes_repr)
        self.extended = extended

    def _serialize(self, obj: Any, out: list, level: int) -> None:
        t = type(obj)
        if t not in _SERPENT_NATIVE:
            if self.extended and t in _EXTENDED:
                obj = _EXTENDED[t](obj)
            elif t.__module__ == "numpy" and hasattr(obj, "tolist"):
                obj = array_to_plain(obj)  # numpy arrays and scalars: lists and Python numbers
            else:
                conv = to_dict_converter(t)
                if conv is not None:
                    obj = conv(obj)
                elif isinstance(obj, BaseException) or not _serpent_knows(t):
                    obj = object_to_dict(obj, self.extended)
        super()._serialize(obj, out, level)


_known: dict[type, bool] = {}


def _serpent_knows(t: type) -> bool:
    """Whether serpent has its own encoding for ``t`` (UUID, Decimal, datetime, Enum...)."""
    try:
        return _known[t]
    except KeyError:
        pass
    known = any(base in serpent.Serializer.dispatch for base in t.__mro__[:-1]) or any(
        issubclass(t, special) for special in serpent._special_classes_registry
    )
    _known[t] = known
    return known


class SerpentSerializer(Serializer):
    """serpent with module names in class names (as Pyro5)."""

    name = "serpent"
    serializer_id = 1

    def __init__(self, extended: bool = False, bytes_repr: bool | None = None) -> None:
        super().__init__(extended)
        self.bytes_repr = bytes_repr

    def dumps(self, obj: Any) -> bytes:
        bytes_repr = self.bytes_repr
        if bytes_repr is None:
            bytes_repr = config.SERPENT_BYTES_REPR
        try:
            return _EmberSerpent(self.extended, bytes_repr).serialize(obj)
        except PyroError:
            raise
        except Exception as exc:
            raise SerializeError(f"serpent cannot serialize: {exc}") from None

    def loads(self, data: bytes) -> Any:
        if type(data) is not bytes and type(data) is not bytearray:
            data = bytes(data)  # a large payload arrives in an mmap buffer; this parser takes bytes only
        try:
            value = serpent.loads(data)
        except Exception as exc:  # literal_eval raises many types, incl. RecursionError
            if isinstance(exc, TypeError) and "unhashable" in str(exc):
                raise SerializeError(f"serpent data has a dict key or set member that cannot be one here ({exc}): "
                                     "serpent carries bytes as base64 dicts, so bytes keys do not survive; use "
                                     "str, int, float, bool or tuple keys, or the msgpack or marshal serializer"
                                     ) from None
            raise SerializeError(f"invalid serpent data: {type(exc).__name__}: {exc}") from None
        return walk_classes(value)

    def dumps_call(self, obj: str, method: str, args: Any, kwargs: dict | None) -> bytes:
        return self.dumps((obj, method, tuple(args) if type(args) is list else args, kwargs))

    def loads_call(self, data: bytes) -> tuple[str, str, Any, dict | None]:
        return check_call(self.loads(data))
