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

from typing import Any

from ..errors import SerializeError
from ._registry import by_id as _by_id

__all__ = ["SerializedBlob"]


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
        if self.serializer_id is None:
            raise SerializeError("serialized blob without a serializer id")
        _obj, _method, data, _kwargs = _by_id(self.serializer_id).loads_call(self._data)
        return data

    def __repr__(self) -> str:
        state = "serialized" if self._is_blob else "local"
        return f"<SerializedBlob {state} info={self.info!r}>"
