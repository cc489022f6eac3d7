"""Serializers by name and wire id, and the registry for custom types.

>>> from ember import serializers
>>> s = serializers.get("json")
>>> s.loads(s.dumps({"a": [1, 2]}))
{'a': [1, 2]}
"""

from __future__ import annotations

import base64
from typing import Any

from ..errors import SerializeError
from ._classes import (
    ExceptionWrapper,
    exception_to_dict,
    register_class_to_dict,
    register_dict_to_class,
    register_type,
    unregister_class_to_dict,
    unregister_dict_to_class,
)
from .base import Serializer
from .json_ import JsonSerializer
from .marshal_ import MarshalSerializer
from .msgpack_ import MsgpackSerializer
from .serpent_ import SerpentSerializer

__all__ = [
    "Serializer",
    "SerpentSerializer",
    "MarshalSerializer",
    "JsonSerializer",
    "MsgpackSerializer",
    "ExceptionWrapper",
    "get",
    "by_id",
    "names",
    "ids",
    "register_class_to_dict",
    "register_dict_to_class",
    "unregister_class_to_dict",
    "unregister_dict_to_class",
    "register_type",
    "exception_to_dict",
    "tobytes",
]

_CLASSES: list[type[Serializer]] = [SerpentSerializer, MarshalSerializer, JsonSerializer, MsgpackSerializer]
_BY_ID: dict[tuple[int, bool], Serializer] = {}
_BY_NAME: dict[str, int] = {}
for _cls in _CLASSES:
    for _ext in (False, True):
        _BY_ID[(_cls.serializer_id, _ext)] = _cls(_ext)
    _BY_NAME[_cls.name] = _cls.serializer_id


def names() -> list[str]:
    """Names of the available serializers."""
    return list(_BY_NAME)


def ids() -> list[int]:
    """Wire ids of the available serializers."""
    return [c.serializer_id for c in _CLASSES]


def get(name: str | int, extended: bool = False) -> Serializer:
    """The serializer with this name (``"msgpack"``) or wire id (``4``)."""
    if isinstance(name, int):
        return by_id(name, extended)
    try:
        sid = _BY_NAME[name.lower()]
    except (KeyError, AttributeError):
        raise SerializeError(
            f"unknown serializer {name!r}; available: {', '.join(_BY_NAME)}"
        ) from None
    return _BY_ID[(sid, extended)]


def by_id(serializer_id: int, extended: bool = False) -> Serializer:
    """The serializer with this wire id; unknown ids raise :class:`SerializeError`."""
    try:
        return _BY_ID[(serializer_id, extended)]
    except KeyError:
        raise SerializeError(
            f"unknown serializer id {serializer_id}; known: "
            + ", ".join(f"{c.serializer_id}={c.name}" for c in _CLASSES)
        ) from None


def tobytes(obj: Any) -> bytes:
    """Bytes from a value that was bytes on the sending side.

    serpent and json carry bytes as ``{'data': <base64>, 'encoding': 'base64'}``; this turns
    such a dict (or real bytes/bytearray/memoryview) into ``bytes``.
    """
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return bytes(obj)
    if isinstance(obj, dict) and obj.get("encoding") == "base64" and isinstance(obj.get("data"), str):
        try:
            return base64.b64decode(obj["data"], validate=True)
        except ValueError as exc:
            raise SerializeError(f"invalid base64 bytes data: {exc}") from None
    raise TypeError(f"not bytes nor a base64 bytes dict: {type(obj).__name__}")
