"""marshal (wire id 2): CPython's own fast format for builtin types.

marshal has no hook for other types, so a value it refuses is converted first (a walk
that turns such objects into ``__class__`` dicts), then marshalled; decoded values are
walked to rebuild those dicts.
"""

from __future__ import annotations

import array
import marshal
import sys
import uuid
from typing import Any

from ..errors import PyroError, SerializeError
from ._classes import _EXTENDED, object_to_dict
from .base import Serializer, check_call, walk_classes
from .marshal_check import check_marshal, may_share
from .oob import array_to_plain

_NATIVE = frozenset({int, float, str, bytes, bool, type(None), complex})
_SHARED = frozenset({dict, list, tuple, set, frozenset})


class MarshalSerializer(Serializer):
    """marshal at the running Python's version; args travel as a list (as Pyro5)."""

    name = "marshal"
    serializer_id = 2

    def _convert(self, obj: Any, done: dict[int, tuple[Any, Any]] | None = None) -> Any:
        """``obj`` with every value marshal refuses turned into plain data. A container met
        again (values received from marshal share parts by reference) is converted once: the
        result shares the same parts, so the work stays in proportion to the distinct values."""
        t = type(obj)
        if t in _NATIVE:
            return obj
        if t in _SHARED:
            if done is None:
                done = {}
            key = id(obj)
            seen = done.get(key)
            if seen is not None:
                return seen[1]
            if t is dict:
                result: Any = {self._convert(k, done): self._convert(v, done) for k, v in obj.items()}
            elif t is list:
                result = [self._convert(v, done) for v in obj]
            elif t is tuple:
                result = tuple(self._convert(v, done) for v in obj)
            elif t is set:
                result = {self._convert(v, done) for v in obj}
            else:
                result = frozenset(self._convert(v, done) for v in obj)
            done[key] = (obj, result)  # obj kept alive: a temporary's id must not be reused meanwhile
            return result
        if t is bytearray or t is memoryview:
            return bytes(obj)
        if self.extended and t in _EXTENDED:
            return self._convert(_EXTENDED[t](obj), done)
        if t is uuid.UUID:
            return str(obj)
        if t is array.array:
            return obj.tolist()
        if t.__module__ == "numpy" and hasattr(obj, "tolist"):
            return self._convert(array_to_plain(obj), done)  # numpy arrays and scalars: lists and Python numbers
        return self._convert(object_to_dict(obj, self.extended), done)

    def dumps(self, obj: Any) -> bytes:
        # marshal writes any buffer (a numpy array or scalar too) as raw bytes: once numpy is
        # loaded, values holding numpy objects go through _convert (lists and Python numbers)
        if "numpy" not in sys.modules or not _holds_numpy(obj, [10000]):
            try:
                return marshal.dumps(obj)
            except ValueError:
                pass
        try:
            return marshal.dumps(self._convert(obj))
        except PyroError:
            raise
        except Exception as exc:
            raise SerializeError(f"marshal cannot serialize: {exc}") from None

    def loads(self, data: bytes) -> Any:
        check_marshal(data)  # declared sizes must fit in the data before marshal allocates for them
        try:
            value = marshal.loads(data)
        except Exception as exc:
            raise SerializeError(f"invalid marshal data: {exc}") from None
        if type(value).__name__ == "code":
            raise SerializeError("refused to load a code object from marshal data")
        return walk_classes(value, shared=may_share(data))  # back-references repeat containers: walk each once

    def dumps_call(self, obj: str, method: str, args: Any, kwargs: dict | None) -> bytes:
        return self.dumps((obj, method, list(args) if type(args) is tuple else args, kwargs))

    def loads_call(self, data: bytes) -> tuple[str, str, Any, dict | None]:
        return check_call(self.loads(data))


def _holds_numpy(obj: Any, budget: list[int]) -> bool:
    """Whether a numpy array or scalar is in ``obj`` (containers looked into, up to a budget)."""
    t = type(obj)
    if t.__module__ == "numpy":
        return True
    if t is list or t is tuple or t is set or t is frozenset:
        budget[0] -= len(obj)
        return budget[0] >= 0 and any(_holds_numpy(v, budget) for v in obj)
    if t is dict:
        budget[0] -= len(obj)
        return budget[0] >= 0 and any(_holds_numpy(v, budget) for v in obj.values())
    return False
