"""``SerializedBlob``: call data a dispatcher forwards without deserializing it.

A client wraps the one argument of a call in ``SerializedBlob(info, data)``; the call then
travels with the KEEPSERIALIZED flag and an annotation ``BLBI`` holding
``(info, object id, method)`` (always marshal), so a daemon routes it without touching
the payload. The receiving method gets one argument, a ``SerializedBlob`` whose ``info``
is readable at once and whose ``deserialized()`` decodes the data only when asked. Passing
that received blob on to another proxy forwards the original bytes unchanged
(PROTOCOL.md §4.9; compatible with Pyro5's ``SerializedBlob``).
"""

from __future__ import annotations

import marshal
from typing import Any

from .errors import SerializeError

__all__ = ["SerializedBlob", "BLOB_ANNOTATION", "blob_annotation", "parse_blob_annotation"]

BLOB_ANNOTATION = "BLBI"


class SerializedBlob:
    """Call data plus routing ``info``, deserialized only on demand."""

    __slots__ = ("info", "_data", "_is_blob", "serializer_id")

    def __init__(self, info: Any, data: Any, is_blob: bool = False, serializer_id: int | None = None) -> None:
        self.info = info
        self._data = data
        self._is_blob = is_blob
        self.serializer_id = serializer_id

    @property
    def is_blob(self) -> bool:
        """True when this holds still-serialized bytes received from the wire."""
        return self._is_blob

    @property
    def payload(self) -> bytes | None:
        """The serialized call bytes as received (None for a blob made locally)."""
        return self._data if self._is_blob else None

    def deserialized(self) -> Any:
        """The wrapped data: decoded now if it is still serialized."""
        if not self._is_blob:
            return self._data
        from . import serializers

        if self.serializer_id is None:
            raise SerializeError("serialized blob without a serializer id")
        _obj, _method, data, _kwargs = serializers.by_id(self.serializer_id).loads_call(self._data)
        return data

    def __repr__(self) -> str:
        state = "serialized" if self._is_blob else "local"
        return f"<SerializedBlob {state} info={self.info!r}>"


def blob_annotation(info: Any, object_id: str, method: str) -> bytes:
    try:
        return marshal.dumps((info, object_id, method))
    except ValueError as exc:
        raise SerializeError(f"SerializedBlob info must be marshal-serializable (plain values): {exc}") from None


def parse_blob_annotation(raw: bytes | None) -> tuple[Any, str, str]:
    """(info, object id, method) from a ``BLBI`` annotation; SerializeError when malformed."""
    if raw is None:
        raise SerializeError("KEEPSERIALIZED call without a BLBI annotation")
    try:
        value = marshal.loads(raw)
    except (ValueError, EOFError, TypeError) as exc:
        raise SerializeError(f"malformed BLBI annotation: {exc}") from None
    if not (isinstance(value, tuple) and len(value) == 3 and isinstance(value[1], str) and isinstance(value[2], str)):
        raise SerializeError("malformed BLBI annotation: expected (info, object id, method)")
    return value
