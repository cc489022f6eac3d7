"""``Pyro5.serializers``: the class-to-dict registry (``SerializerBase``'s static methods)
and the serializers by name and id, with Pyro5's method names."""

from __future__ import annotations

from typing import Any

from ... import serializers as _ser
from ._unsupported import module_getattr
from .config import config

__all__ = ["SerializerBase", "config", "serializers", "serializers_by_id"]


class SerializerBase:
    """A serializer with Pyro5's method names (``dumpsCall``/``loadsCall``) on an Ember one.

    Its static methods are the process-wide class registry, shared with Ember's
    ``ember.register_class_to_dict`` and friends.
    """

    def __init__(self, ember_serializer: Any) -> None:
        self._ser = ember_serializer
        self.serializer_id: int = ember_serializer.serializer_id

    def dumps(self, data: Any) -> bytes:
        return self._ser.dumps(data)

    def loads(self, data: bytes) -> Any:
        return self._ser.loads(data)

    def dumpsCall(self, obj: str, method: str, vargs: Any, kwargs: dict | None) -> bytes:  # noqa: N802
        return self._ser.dumps_call(obj, method, vargs, kwargs)

    def loadsCall(self, data: bytes) -> tuple:  # noqa: N802
        return self._ser.loads_call(data)

    def __repr__(self) -> str:
        return f"<ember.compat.Pyro5 serializer {self._ser!r}>"

    @staticmethod
    def register_class_to_dict(clazz: type, converter: Any, serpent_too: bool = True) -> None:
        """Serialize ``clazz`` with ``converter(obj) -> dict`` (every format; ``serpent_too`` is moot)."""
        _ser.register_class_to_dict(clazz, converter)

    @staticmethod
    def unregister_class_to_dict(clazz: type) -> None:
        _ser.unregister_class_to_dict(clazz)

    @staticmethod
    def register_dict_to_class(classname: str, converter: Any) -> None:
        """Rebuild dicts whose ``__class__`` is ``classname`` with ``converter(classname, d)``."""
        _ser.register_dict_to_class(classname, converter)

    @staticmethod
    def unregister_dict_to_class(classname: str) -> None:
        _ser.unregister_dict_to_class(classname)


serializers: dict[str, SerializerBase] = {name: SerializerBase(_ser.get(name)) for name in _ser.names()}
"""Serializers by name: serpent, json, marshal, msgpack."""
serializers_by_id: dict[int, SerializerBase] = {s.serializer_id: s for s in serializers.values()}

__getattr__ = module_getattr(__name__, {
    **{name: f"use serializers[{name[:-10].lower()!r}] (an adapter on ember.serializers.get())"
       for name in ("SerpentSerializer", "JsonSerializer", "MarshalSerializer", "MsgpackSerializer")},
    "all_exceptions": "Ember rebuilds builtin exceptions and ember.errors classes by name (ember.serializers)",
    "pyro_class_serpent_serializer": "internal to Pyro5; Ember's serpent module handles its own classes",
    "serialize_pyro_object_to_dict": "internal to Pyro5; see ember.serializers.exception_to_dict",
})
