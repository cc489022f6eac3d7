"""The serializers by name and wire id (one instance per id and mode)."""

from __future__ import annotations

from ..errors import SerializeError
from .base import Serializer
from .json_ import JsonSerializer
from .marshal_ import MarshalSerializer
from .msgpack_ import MsgpackSerializer
from .serpent_ import SerpentSerializer

__all__ = ["OOB", "by_id", "get", "ids", "names"]

_CLASSES: list[type[Serializer]] = [SerpentSerializer, MarshalSerializer, JsonSerializer, MsgpackSerializer]
# mode: False (Pyro5 peer), True (Ember peer, extended types), OOB (Ember peer that also agreed to
# out-of-band buffers, which only msgpack uses)
OOB = 2
_BY_ID: dict[tuple[int, int], Serializer] = {}
_BY_NAME: dict[str, int] = {}
for _cls in _CLASSES:
    for _ext in (False, True):
        _BY_ID[(_cls.serializer_id, _ext)] = _cls(_ext)
    _BY_ID[(_cls.serializer_id, OOB)] = (MsgpackSerializer(True, oob=True) if _cls is MsgpackSerializer
                                         else _BY_ID[(_cls.serializer_id, True)])
    _BY_NAME[_cls.name] = _cls.serializer_id


def names() -> list[str]:
    """Names of the available serializers."""
    return list(_BY_NAME)


def ids() -> list[int]:
    """Wire ids of the available serializers."""
    return [c.serializer_id for c in _CLASSES]


def get(name: str | int, extended: int = False) -> Serializer:
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


def by_id(serializer_id: int, extended: int = False) -> Serializer:
    """The serializer with this wire id; unknown ids raise :class:`SerializeError`."""
    try:
        return _BY_ID[(serializer_id, extended)]
    except KeyError:
        raise SerializeError(
            f"unknown serializer id {serializer_id}; known: "
            + ", ".join(f"{c.serializer_id}={c.name}" for c in _CLASSES)
        ) from None


