"""json (wire id 3): readable, and what browsers and other languages speak.

INVOKE is a JSON object ``{"object", "method", "params", "kwargs"}`` (PROTOCOL.md §4.1).
bytes travel as serpent's base64 dict (use :func:`ember.tobytes`).
"""

from __future__ import annotations

import array
import base64
import datetime
import decimal
import json
import uuid
from typing import Any

from ..errors import PyroError, SerializeError
from ._classes import _EXTENDED, dict_to_object, object_to_dict
from .base import Serializer, check_call
from .oob import array_to_plain


def _object_hook(d: dict) -> Any:
    if "__class__" in d:
        return dict_to_object(d)
    return d


def _check_keys(obj: Any) -> None:
    """Refuse dict keys that are not strings: json would turn ``{1: x}`` into ``{"1": x}``
    (a different dict on arrival) or fail with a message that does not say what to do."""
    t = type(obj)
    if t is dict:
        for key, value in obj.items():
            if type(key) is not str:
                raise SerializeError(
                    f"the json serializer can only send dicts with str keys, got a key of type "
                    f"{type(key).__name__} ({key!r}); it would not arrive as the same dict. Fix: convert the "
                    "keys to str, or use a serializer that carries such keys: msgpack (the default), marshal, "
                    "or serpent (proxy._serializer = 'msgpack', or config SERIALIZER)")
            if type(value) in _CONTAINERS:
                _check_keys(value)
    elif t is list or t is tuple:
        for value in obj:
            if type(value) in _CONTAINERS:
                _check_keys(value)


_CONTAINERS = frozenset({dict, list, tuple})


class JsonSerializer(Serializer):
    """Python's json module, non-ASCII left unescaped, NaN/Infinity allowed."""

    name = "json"
    serializer_id = 3

    def _default(self, obj: Any) -> Any:
        t = type(obj)
        if self.extended and t in _EXTENDED:
            return _EXTENDED[t](obj)
        if t is set or t is frozenset or t is tuple:
            return list(obj)
        if t is uuid.UUID or t is decimal.Decimal:
            return str(obj)
        if t is datetime.datetime or t is datetime.date:
            return obj.isoformat()
        if t is array.array:
            return obj.tolist()
        if t is bytes or t is bytearray or t is memoryview:
            return {"data": base64.b64encode(obj).decode("ascii"), "encoding": "base64"}
        if t.__module__ == "numpy" and hasattr(obj, "tolist"):
            return array_to_plain(obj)  # numpy arrays and scalars: lists and Python numbers
        return object_to_dict(obj, self.extended)

    def dumps(self, obj: Any) -> bytes:
        _check_keys(obj)
        try:
            return json.dumps(obj, ensure_ascii=False, default=self._default).encode("utf-8")
        except PyroError:
            raise
        except Exception as exc:
            raise SerializeError(f"json cannot serialize: {exc}") from None

    def loads(self, data: bytes) -> Any:
        if type(data) is not bytes and type(data) is not bytearray:
            data = bytes(data)  # a large payload arrives in an mmap buffer; this parser takes bytes only
        try:
            return json.loads(data, object_hook=_object_hook)
        except PyroError:
            raise
        except Exception as exc:
            raise SerializeError(f"invalid json data: {exc}") from None

    def dumps_call(self, obj: str, method: str, args: Any, kwargs: dict | None) -> bytes:
        return self.dumps({"object": obj, "method": method, "params": args, "kwargs": kwargs})

    def loads_call(self, data: bytes) -> tuple[str, str, Any, dict | None]:
        d = self.loads(data)
        if not isinstance(d, dict):
            raise SerializeError("invalid json call payload: expected an object")
        try:
            return check_call((d["object"], d["method"], d["params"], d["kwargs"]))
        except KeyError as exc:
            raise SerializeError(f"invalid json call payload: missing key {exc}") from None
