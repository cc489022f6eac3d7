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
    register_object_converter,
    register_type,
    unregister_class_to_dict,
    unregister_dict_to_class,
)
from ._registry import OOB, by_id, get, ids, names
from .base import Serializer
from .blob import SerializedBlob
from .json_ import JsonSerializer
from .marshal_ import MarshalSerializer
from .msgpack_ import MsgpackSerializer
from .oob import payload_of
from .serpent_ import SerpentSerializer

__all__ = [
    "Serializer",
    "OOB",
    "SerpentSerializer",
    "MarshalSerializer",
    "JsonSerializer",
    "MsgpackSerializer",
    "ExceptionWrapper",
    "SerializedBlob",
    "register_object_converter",
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
    "payload_of",
]

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
