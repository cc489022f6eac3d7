"""Finding what a call may reach: exposed methods, exposed attributes, nothing else."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from . import meta as metamod

__all__ = ["resolve_method"]


def resolve_method(obj: Any, method: str) -> Callable:
    """The callable for ``method`` on ``obj``, after the exposure checks (AttributeError otherwise)."""
    meta = metamod.class_meta(obj if isinstance(obj, type) else type(obj))
    if method in meta.methods:
        if meta.synchronized:
            return _synchronized(obj, getattr(obj, method))
        return getattr(obj, method)
    if method == "__getattr__" or method == "__setattr__":
        access = _attribute_access(obj, meta, method)
        return _synchronized(obj, access) if meta.synchronized else access
    if metamod.is_private(method):
        raise AttributeError(f"attempt to access private attribute {method!r}")
    if hasattr(obj, method):
        raise AttributeError(f"attempt to access unexposed attribute {method!r}: mark it (or its class) "
                             "with @ember.expose to make it remotely callable")
    raise AttributeError(f"remote object has no attribute {method!r}")


def _attribute_access(obj: Any, meta: metamod.ClassMeta, method: str) -> Callable:
    if method == "__getattr__":

        def get(name: str) -> Any:
            if name not in meta.attrs:
                raise AttributeError(f"attempt to access unexposed or unknown attribute {name!r}")
            return getattr(obj, name)

        return get

    def set_(name: str, value: Any) -> None:
        if name not in meta.attrs:
            raise AttributeError(f"attempt to access unexposed or unknown attribute {name!r}")
        setattr(obj, name, value)

    return set_


_sync_locks_guard = threading.Lock()


def _synchronized(obj: Any, func: Callable) -> Callable:
    """``func`` run under the object's own lock (``@behavior(synchronized=True)``)."""
    lock = getattr(obj, "__dict__", {}).get("_pyroLock")
    if lock is None:
        with _sync_locks_guard:
            lock = obj.__dict__.get("_pyroLock")
            if lock is None:
                lock = obj.__dict__["_pyroLock"] = threading.RLock()

    def call(*args: Any, **kwargs: Any) -> Any:
        with lock:
            return func(*args, **kwargs)

    return call
