"""The interface every serializer implements, and the receive-side walk shared by formats
without decode hooks."""

from __future__ import annotations

from typing import Any

from ..errors import SerializeError
from ._classes import dict_to_object


class Serializer:
    """Turns Python values into one wire format and back.

    Instances are stateless and safe to share between threads. ``extended`` is set on the
    instance used with an Ember peer: UUIDs, Decimals, datetimes and paths then travel
    tagged and come back as themselves; with Pyro5 peers they travel as Pyro5 sends them.
    """

    name: str = ""
    serializer_id: int = 0
    oob = False  # sends big buffers and numpy arrays out of band (msgpack with an Ember peer that agreed)

    def __init__(self, extended: bool = False) -> None:
        self.extended = extended

    def dumps(self, obj: Any) -> bytes:
        """Serialize one value."""
        raise NotImplementedError

    def loads(self, data: bytes) -> Any:
        """Deserialize one value; bad data raises :class:`ember.errors.SerializeError`."""
        raise NotImplementedError

    def dumps_call(self, obj: str, method: str, args: Any, kwargs: dict | None) -> bytes:
        """Serialize an INVOKE payload (object id, method name, args, kwargs)."""
        raise NotImplementedError

    def loads_call(self, data: bytes) -> tuple[str, str, Any, dict | None]:
        """Deserialize an INVOKE payload into (object id, method name, args, kwargs)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} id={self.serializer_id}{' extended' if self.extended else ''}>"


def walk_classes(obj: Any, shared: bool = False) -> Any:
    """Rebuild every ``__class__`` dict inside a decoded value, innermost first (a value nested
    deeper than Python's recursion limit is a :class:`SerializeError`).

    ``shared``: the value may hold one container in several places (marshal's back-references):
    each is walked once, so a few hundred bytes of nested references, which stand for an
    exponentially large tree, cost time in proportion to the bytes, and cycles end.
    """
    try:
        return _walk_shared(obj, {}) if shared else _walk(obj)
    except RecursionError:
        raise SerializeError("invalid data: nested too deeply to decode") from None


def _walk_shared(obj: Any, done: dict[int, tuple[Any, Any]]) -> Any:
    t = type(obj)
    if t is not dict and t is not list and t is not tuple:
        return obj
    key = id(obj)
    seen = done.get(key)
    if seen is not None:
        return seen[1]
    done[key] = (obj, obj)  # a cycle back to a list or dict finds it (a tuple cannot hold itself)
    if t is dict:
        for k, value in obj.items():
            if type(value) in _CONTAINERS:
                obj[k] = _walk_shared(value, done)
        result = dict_to_object(obj) if "__class__" in obj else obj
    elif t is list:
        for i, value in enumerate(obj):
            if type(value) in _CONTAINERS:
                obj[i] = _walk_shared(value, done)
        result = obj
    else:
        result = tuple(_walk_shared(v, done) for v in obj) if any(type(v) in _CONTAINERS for v in obj) else obj
    done[key] = (obj, result)  # obj kept alive: an object replaced in the tree must not lend its id to a new one
    return result


def _walk(obj: Any) -> Any:
    t = type(obj)
    if t is dict:
        for key, value in obj.items():
            if type(value) in _CONTAINERS:
                obj[key] = _walk(value)
        if "__class__" in obj:
            return dict_to_object(obj)
        return obj
    if t is list:
        for i, value in enumerate(obj):
            if type(value) in _CONTAINERS:
                obj[i] = _walk(value)
        return obj
    if t is tuple:
        if any(type(v) in _CONTAINERS for v in obj):
            return tuple(_walk(v) for v in obj)
        return obj
    if t is set or t is frozenset:
        return obj  # set members are hashable scalars: nothing to rebuild
    return obj


_CONTAINERS = frozenset({dict, list, tuple})


def check_call(decoded: Any) -> tuple[str, str, Any, dict | None]:
    """Validate the shape of a decoded INVOKE payload."""
    t = type(decoded)
    if (t is list or t is tuple) and len(decoded) == 4:
        obj, method, args, kwargs = decoded
        if type(obj) is str and type(method) is str and (kwargs is None or type(kwargs) is dict):
            return obj, method, args, kwargs  # the usual shape, checked cheaply
    if not isinstance(decoded, (tuple, list)) or len(decoded) != 4:
        raise SerializeError("invalid call payload: expected (object, method, args, kwargs)")
    obj, method, args, kwargs = decoded
    if not isinstance(obj, str) or not isinstance(method, str):
        raise SerializeError("invalid call payload: object id and method name must be strings")
    if kwargs is not None and not isinstance(kwargs, dict):
        raise SerializeError("invalid call payload: kwargs must be a mapping or None")
    return obj, method, args, kwargs
