"""The daemon's object registry: object ids, instancing modes and transient reaping.

Objects (or classes, instantiated per their ``@behavior``) live under an object id. A
class is instantiated once per connection (``session``, the default), once per daemon
(``single``) or once per call (``percall``). Objects registered without an id may be
reaped when unused for ``transient_max_age`` seconds.
"""

from __future__ import annotations

import functools
import threading
import time
import uuid
import weakref
from collections.abc import Callable
from typing import Any

from ..errors import DaemonError
from . import meta as metamod

__all__ = ["Registry"]


class Registry:
    """Objects by id, for one daemon (``owner``, set on registered objects as ``_pyroDaemon``)."""

    def __init__(self, owner: Any, transient_max_age: float | None = None) -> None:
        self.owner = owner
        self.objects_by_id: dict[str, Any] = {}
        self._single_instances: dict[type, Any] = {}
        self._single_lock = threading.Lock()
        # (object id, method) -> (obj, func): exposure checks done once per registered instance
        # (read directly by the dispatcher's hot path; valid while ``resolved_gen`` is current)
        self.resolved: dict[tuple[str, str], tuple[Any, Callable]] = {}
        self.resolved_gen = metamod.generation
        self.transient_max_age = transient_max_age
        # generated object id -> last use (monotonic); only kept when transient reaping is on
        self._transient_use: dict[str, float] | None = {} if transient_max_age else None
        self.reaping = self._transient_use is not None  # cheap to test on every call

    def __len__(self) -> int:
        return len(self.objects_by_id)

    def get(self, object_id: str) -> Any:
        """The registered object (or class), or None; a weakly registered object that is gone is None."""
        obj = self.objects_by_id.get(object_id)
        if type(obj) is weakref.ReferenceType:
            return obj()
        return obj

    def add(self, obj_or_class: Any, object_id: str | None, force: bool, weak: bool = False) -> str:
        """Register and return the object id (generated as ``obj_<hex>`` when None).

        ``weak``: keep only a weak reference; the registration ends by itself when the object
        is garbage-collected (nothing else is done then: names published for it stay)."""
        if weak and isinstance(obj_or_class, type):
            raise DaemonError("a class cannot be registered weakly: register an instance, or drop weak=True")
        # the registration marks live in the object's (or class's) own __dict__: an
        # instance of a registered class is not itself registered
        own = getattr(obj_or_class, "__dict__", {})
        generated = object_id is None
        if object_id is None:
            object_id = own.get("_pyroId") if not force else None
            if not object_id or object_id in self.objects_by_id:
                object_id = "obj_" + uuid.uuid4().hex
        if not isinstance(object_id, str) or not object_id or any(c.isspace() for c in object_id):
            raise DaemonError(f"invalid object id {object_id!r}: must be a non-empty string without whitespace")
        if "@" in object_id:
            raise DaemonError(f"invalid object id {object_id!r}: '@' separates the object id from the location in "
                              "a URI, so an id containing it gives an unusable URI; choose an id without '@'")
        if not force:
            if object_id in self.objects_by_id:
                raise DaemonError(f"object id {object_id!r} is already registered")
            if own.get("_pyroDaemon") is self.owner and self.get(own.get("_pyroId", "")) is obj_or_class:
                raise DaemonError(f"object already registered as {own['_pyroId']!r}")
        self._mark(obj_or_class, object_id)
        if weak:
            try:
                entry: Any = weakref.ref(obj_or_class, functools.partial(self._collected, object_id))
            except TypeError:
                raise DaemonError(f"{type(obj_or_class).__name__} objects cannot be registered weakly "
                                  "(no weak references to them): drop weak=True") from None
        else:
            entry = obj_or_class
        self.objects_by_id[object_id] = entry
        self.resolved.clear()
        if self._transient_use is not None and generated:
            self._transient_use[object_id] = time.monotonic()
        return object_id

    def _mark(self, obj: Any, object_id: str) -> None:
        try:
            obj._pyroId = object_id
            obj._pyroDaemon = self.owner
        except (AttributeError, TypeError):
            pass  # objects with __slots__: no auto-proxying, otherwise fine

    def _collected(self, object_id: str, ref: weakref.ReferenceType) -> None:
        """A weakly registered object was garbage-collected: forget its id (if still its own)."""
        if self.objects_by_id.get(object_id) is ref:
            self.objects_by_id.pop(object_id, None)
            self.resolved.clear()

    def remove(self, object_id: str) -> Any:
        """Unregister; returns the object (None if it was not registered)."""
        if self._transient_use is not None:
            self._transient_use.pop(object_id, None)
        obj = self.objects_by_id.pop(object_id, None)
        if type(obj) is weakref.ReferenceType:
            obj = obj()
        self.resolved.clear()
        if obj is not None and getattr(obj, "_pyroDaemon", None) is self.owner:
            try:
                del obj._pyroDaemon
                del obj._pyroId
            except AttributeError:
                pass
        return obj

    def metadata_for(self, object_id: str) -> metamod.ClassMeta:
        """The exposure metadata of a registered object's class."""
        obj = self.get(object_id) if isinstance(object_id, str) else None
        if obj is None:
            raise DaemonError("unknown object")
        return metamod.class_meta(obj if isinstance(obj, type) else type(obj))

    # ---- calls ----------------------------------------------------------------------------

    def touch(self, object_id: str) -> None:
        """Note a use of a transient object (one registered without an id)."""
        transient = self._transient_use
        if transient is not None and object_id in transient:
            transient[object_id] = time.monotonic()

    def remember(self, object_id: str, method: str, obj: Any, func: Callable) -> None:
        """Cache a resolved method of a registered instance (not of per-call/session classes)."""
        if isinstance(self.objects_by_id.get(object_id), (type, weakref.ReferenceType)):
            return  # classes make instances per call/session; a weak entry must not be held by the cache
        if self.resolved_gen != metamod.generation:
            self.resolved.clear()
            self.resolved_gen = metamod.generation
        self.resolved[(object_id, method)] = (obj, func)

    def instance(self, object_id: str, conn: Any) -> Any:
        """The object serving a call on ``object_id`` for connection ``conn``."""
        obj = self.get(object_id) if isinstance(object_id, str) else None
        if obj is None:
            raise DaemonError("unknown object")
        transient = self._transient_use
        if transient is not None and object_id in transient:
            transient[object_id] = time.monotonic()
        if not isinstance(obj, type):
            return obj
        mode, creator = getattr(obj, "_pyroInstancing", ("session", None))
        if mode == "session":
            inst = conn.instances.get(obj)
            if inst is None:
                inst = conn.instances[obj] = self._create(obj, creator, object_id)
            return inst
        if mode == "single":
            inst = self._single_instances.get(obj)
            if inst is None:
                with self._single_lock:
                    inst = self._single_instances.get(obj)
                    if inst is None:
                        inst = self._single_instances[obj] = self._create(obj, creator, object_id)
            return inst
        return self._create(obj, creator, object_id)

    def _create(self, cls: type, creator: Callable | None, object_id: str) -> Any:
        inst = creator(cls) if creator is not None else cls()
        self._mark(inst, object_id)
        return inst

    # ---- transients -----------------------------------------------------------------------

    @property
    def reaps(self) -> bool:
        return bool(self._transient_use)

    def idle_transients(self, now: float) -> list[str]:
        """Ids of objects registered without an id and unused for ``transient_max_age`` seconds."""
        if not self._transient_use:
            return []
        age = self.transient_max_age or 0.0
        return [oid for oid, used in list(self._transient_use.items()) if now - used > age]
