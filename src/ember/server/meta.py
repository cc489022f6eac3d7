"""Which names of a class are remotely reachable (the metadata sent to proxies)."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

__all__ = ["ClassMeta", "class_meta", "is_private", "reset_cache"]

# dunder names that are never remote, even on an exposed class
_PRIVATE_DUNDERS = frozenset(
    """__init__ __init_subclass__ __new__ __del__ __call__ __repr__ __str__ __format__ __bool__
    __nonzero__ __eq__ __ne__ __hash__ __ge__ __gt__ __le__ __lt__ __cmp__ __coerce__ __dir__
    __enter__ __exit__ __aenter__ __aexit__ __copy__ __deepcopy__ __sizeof__ __getattr__ __setattr__
    __getattribute__ __delattr__ __hasattr__ __instancecheck__ __subclasscheck__ __subclasshook__
    __getinitargs__ __getnewargs__ __getnewargs_ex__ __getstate__ __setstate__ __reduce__
    __reduce_ex__ __class_getitem__ __set_name__ __dict__ __class__ __module__ __weakref__ __doc__
    __slots__ __get__ __set__ __delete__ __await__ __post_init__""".split()
)


# private dunders a class may still expose by defining them on an exposed class (or
# decorating them with @expose): ``proxy(...)`` then calls the remote object itself
_OPT_IN_DUNDERS = frozenset({"__call__"})


def _defines(cls: type, name: str) -> bool:
    return any(name in vars(klass) for klass in cls.__mro__ if klass is not object)


def is_private(name: str) -> bool:
    """True for names a remote caller may never reach."""
    if not name.startswith("_"):
        return False
    if len(name) > 4 and name.startswith("__") and name.endswith("__"):
        return name in _PRIVATE_DUNDERS
    return True


@dataclass(frozen=True)
class ClassMeta:
    """The remote interface of a class."""

    methods: frozenset[str]
    oneway: frozenset[str]
    attrs: frozenset[str]
    callbacks: frozenset[str]
    synchronized: bool = False
    # docstrings of the class ("") and of its exposed members, for Ember clients' help()
    docs: tuple[tuple[str, str], ...] = ()
    # methods marked @idempotent: an Ember client may run them again on another replica
    idempotent: frozenset[str] = frozenset()

    def as_dict(self, docs: bool = False) -> dict:
        """The wire form (sets; serializers that lack sets send lists). A fresh dict each time.

        ``docs`` adds the docstrings (``{"": class doc, name: doc}``) under ``"docs"``: only for
        Ember peers, Pyro5 sees exactly Pyro5's three keys; so does ``"idempotent"`` (the
        methods marked :func:`~ember.idempotent`)."""
        meta: dict[str, Any] = {"methods": set(self.methods), "oneway": set(self.oneway), "attrs": set(self.attrs)}
        if docs and self.docs:
            meta["docs"] = dict(self.docs)
        if docs and self.idempotent:
            meta["idempotent"] = set(self.idempotent)
        return meta


_cache: dict[type, ClassMeta] = {}


# bumped whenever cached metadata is dropped, so daemons drop the methods they resolved with it
generation = 0


def reset_cache(cls: type | None = None) -> None:
    """Forget computed metadata (after changing a class's exposed members at run time)."""
    global generation
    if cls is None:
        _cache.clear()
    else:
        _cache.pop(cls, None)
    generation += 1


def _exposed(obj: object) -> bool:
    return bool(getattr(obj, "_pyroExposed", False))


def class_meta(cls: type) -> ClassMeta:
    """Compute (once per class) the exposed methods, oneway methods and properties."""
    try:
        return _cache[cls]
    except KeyError:
        pass
    whole_class = _exposed(cls)
    methods, oneways, attrs, callbacks, idempotent = set(), set(), set(), set(), set()
    for name in dir(cls):
        if is_private(name) and not (name in _OPT_IN_DUNDERS and _defines(cls, name)):
            continue
        try:
            value = inspect.getattr_static(cls, name)
        except AttributeError:
            continue
        if isinstance(value, property):
            if whole_class or _exposed(value.fget) or _exposed(value.fset):
                attrs.add(name)
            continue
        func = value.__func__ if isinstance(value, (staticmethod, classmethod)) else value
        if not callable(func) or isinstance(func, type):
            continue
        if whole_class or _exposed(func):
            methods.add(name)
            if getattr(func, "_pyroOneway", False):
                oneways.add(name)
            if getattr(func, "_pyroCallback", False):
                callbacks.add(name)
            if getattr(func, "_emberIdempotent", False):
                idempotent.add(name)
    docs = [(name, inspect.getdoc(getattr(cls, name, None)) or "") for name in sorted(methods | attrs)]
    docs.insert(0, ("", inspect.getdoc(cls) or ""))
    meta = ClassMeta(frozenset(methods), frozenset(oneways), frozenset(attrs), frozenset(callbacks),
                     bool(getattr(cls, "_pyroSynchronized", False)), tuple((n, d) for n, d in docs if d),
                     frozenset(idempotent))
    _cache[cls] = meta
    return meta
