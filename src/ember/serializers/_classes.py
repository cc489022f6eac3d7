"""Turning objects a format cannot hold into ``__class__`` dicts and back, safely.

The dict shapes are Pyro5's (see PROTOCOL.md §5.6) so the two libraries read each
other's data. The receiving side follows a fixed decision list and never instantiates a
class just because its name arrived: only builtin exceptions, Ember/Pyro5 errors, URIs,
proxies and classes registered by the application are rebuilt.
"""

from __future__ import annotations

import builtins
import dataclasses
import datetime
import decimal
import enum
import pathlib
import reprlib
import uuid
from collections.abc import Callable
from typing import Any

from .. import errors
from ..uri import URI

ToDict = Callable[[Any], dict]
FromDict = Callable[[str, dict], Any]

_class_to_dict: dict[type, ToDict] = {}
_dict_to_class: dict[str, FromDict] = {}
_to_dict_cache: dict[type, ToDict | None] = {}

# Ember errors that also exist in Pyro5 travel under Pyro5's name so Pyro5 peers rebuild them.
_PYRO5_ERRORS = {
    "PyroError", "CommunicationError", "ConnectionClosedError", "TimeoutError", "ProtocolError",
    "MessageTooLargeError", "SerializeError", "NamingError", "DaemonError", "SecurityError",
}
_EMBER_ERRORS = {
    name: obj
    for name, obj in vars(errors).items()
    if isinstance(obj, type) and issubclass(obj, errors.PyroError)
}

# converters asked, in order, about objects of classes without a converter of their own: each
# returns a dict for the objects it handles and None for the rest (the server layer registers
# one that turns objects registered in a daemon into proxies)
_object_converters: list[Callable[[Any], dict | None]] = []


def register_object_converter(converter: Callable[[Any], dict | None]) -> None:
    """Ask ``converter(obj)`` about every object whose class has no converter of its own.

    It returns the object's dict form, or None to pass (then the next converter, and in the
    end the default attribute dict, is tried). Registering the same function twice has no
    effect.
    """
    if converter not in _object_converters:
        _object_converters.append(converter)


def register_class_to_dict(cls: type, converter: ToDict) -> None:
    """Serialize instances of ``cls`` (and subclasses) with ``converter(obj) -> dict``.

    The dict should contain ``'__class__'`` so the receiver can find its converter. The most
    specific registered class wins (a subclass's converter is not shadowed by its base's).
    """
    _class_to_dict[cls] = converter
    _to_dict_cache.clear()


def unregister_class_to_dict(cls: type) -> None:
    """Remove a converter registered with :func:`register_class_to_dict`."""
    _class_to_dict.pop(cls, None)
    _to_dict_cache.clear()


def register_dict_to_class(classname: str, converter: FromDict) -> None:
    """Rebuild received dicts whose ``'__class__'`` is ``classname`` with ``converter(classname, d)``."""
    _dict_to_class[classname] = converter


def unregister_dict_to_class(classname: str) -> None:
    """Remove a converter registered with :func:`register_dict_to_class`."""
    _dict_to_class.pop(classname, None)


def class_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def register_type(cls: type, name: str | None = None) -> type:
    """Make a dataclass, enum or exception class round-trip under ``name``.

    Both sides register the same class (by the same name, default ``module.QualName``);
    the receiver rebuilds only classes it registered. Usable as a class decorator::

        @ember.register_type
        @dataclass
        class Point:
            x: int
            y: int
    """
    cname = name or class_name(cls)
    if isinstance(cls, type) and issubclass(cls, BaseException):

        def exc_to_dict(obj: BaseException) -> dict:
            return exception_to_dict(obj, cname, public_only=False)

        def dict_to_exc(_: str, d: dict) -> BaseException:
            return _make_exception(cls, d)

        register_class_to_dict(cls, exc_to_dict)
        register_dict_to_class(cname, dict_to_exc)
    elif isinstance(cls, type) and issubclass(cls, enum.Enum):
        register_class_to_dict(cls, lambda obj: {"__class__": cname, "value": obj.value})
        register_dict_to_class(cname, lambda _, d: cls(d["value"]))
    elif dataclasses.is_dataclass(cls):
        fields = [f.name for f in dataclasses.fields(cls)]
        init_fields = [f.name for f in dataclasses.fields(cls) if f.init]

        def dc_to_dict(obj: Any) -> dict:
            d = {"__class__": cname}
            for f in fields:
                d[f] = getattr(obj, f)
            return d

        def dict_to_dc(_: str, d: dict) -> Any:
            try:
                obj = cls(**{f: d[f] for f in init_fields if f in d})
            except TypeError as exc:
                raise errors.SerializeError(f"cannot rebuild {cname}: {exc}") from None
            return obj

        register_class_to_dict(cls, dc_to_dict)
        register_dict_to_class(cname, dict_to_dc)
    else:
        raise TypeError(f"register_type takes a dataclass, an enum or an exception class, not {cls!r}")
    return cls


def exception_to_dict(exc: BaseException, name: str | None = None, public_only: bool = True) -> dict:
    """The Pyro5 exception dict: class name, ``__exception__``, args and attributes.

    ``public_only``: of the exception's attributes send only the public ones and the remote
    traceback (``_pyroTraceback``), as for any object of a class without a converter; classes
    registered with :func:`register_type` send all of theirs."""
    if name is None:
        cls = type(exc)
        if cls.__module__ == "ember.errors" and cls.__name__ in _PYRO5_ERRORS:
            name = "Pyro5.errors." + cls.__name__
        else:
            name = f"{cls.__module__}.{cls.__name__}"
    attributes = dict(vars(exc)) if hasattr(exc, "__dict__") else {}
    if public_only:
        tb = attributes.get("_pyroTraceback")
        attributes = _public(attributes)
        if tb is not None:
            attributes["_pyroTraceback"] = tb
    if isinstance(exc, errors.RemoteError):
        # forward an unknown remote exception under its original class name
        name = exc.remote_class
        attributes = dict(exc.attributes, **{k: v for k, v in attributes.items() if k not in ("remote_class", "attributes")})
    return {"__class__": name, "__exception__": True, "args": exc.args, "attributes": attributes}


def _make_exception(cls: type[BaseException], d: dict) -> BaseException:
    args = d.get("args") or ()
    try:
        exc = cls(*args)
    except Exception:
        exc = cls.__new__(cls)
        exc.args = tuple(args)
    attributes = d.get("attributes") or {}
    if not isinstance(attributes, dict):
        raise errors.SerializeError(f"invalid exception attributes {reprlib.repr(attributes)}: expected a dict")
    for key, value in attributes.items():
        if type(key) is not str or key.startswith("__"):
            continue  # never __class__, __dict__, __traceback__... from the wire
        try:
            setattr(exc, key, value)
        except (AttributeError, TypeError):
            pass
    return exc


def _public(attributes: dict) -> dict:
    """Only the public attributes: no ``_private``, ``__dunder__`` or name-mangled (``_Cls__x``) ones."""
    return {k: v for k, v in attributes.items() if not (type(k) is str and k.startswith("_"))}


def _unknown_to_dict(obj: Any) -> dict:
    """Fallback for unregistered objects: their public attributes plus ``__class__`` (Pyro5's form).

    Attributes whose name starts with ``_`` (private, name-mangled, dunder) are never sent,
    not even when ``__getstate__`` returns them: an object's private state does not leave
    the process unless its class has a converter (:func:`register_type`,
    :func:`register_class_to_dict`) that sends it on purpose."""
    for converter in _object_converters:
        converted = converter(obj)
        if converted is not None:
            return converted
    cls = type(obj)
    getstate = getattr(cls, "__getstate__", None)
    if getstate is not None and getstate is not getattr(object, "__getstate__", None):
        state = obj.__getstate__()
        if isinstance(state, dict):
            d = _public(state)
            d["__class__"] = state.get("__class__") if type(state.get("__class__")) is str else class_name(cls)
            return d
    try:
        d = _public(vars(obj))
    except TypeError:
        slots = getattr(cls, "__slots__", None)
        if slots is None:
            raise errors.SerializeError(
                f"don't know how to serialize {cls.__module__}.{cls.__qualname__}: "
                "register it with ember.register_type() or register_class_to_dict()"
            ) from None
        d = {s: getattr(obj, s) for s in ([slots] if isinstance(slots, str) else slots)
             if not s.startswith("_") and hasattr(obj, s)}
    d["__class__"] = f"{cls.__module__}.{cls.__name__}"
    return d


def _uuid_to_dict(obj: uuid.UUID) -> dict:
    return {"__class__": "uuid.UUID", "value": str(obj)}


_EXTENDED: dict[type, Callable[[Any], dict]] = {
    uuid.UUID: _uuid_to_dict,
    decimal.Decimal: lambda o: {"__class__": "decimal.Decimal", "value": str(o)},
    datetime.datetime: lambda o: {"__class__": "datetime.datetime", "value": o.isoformat()},
    datetime.date: lambda o: {"__class__": "datetime.date", "value": o.isoformat()},
    datetime.time: lambda o: {"__class__": "datetime.time", "value": o.isoformat()},
    datetime.timedelta: lambda o: {"__class__": "datetime.timedelta", "value": o.total_seconds()},
}
for _p in (pathlib.PurePosixPath, pathlib.PureWindowsPath, pathlib.PosixPath, pathlib.WindowsPath):
    _EXTENDED[_p] = lambda o: {"__class__": "pathlib.Path", "value": str(o)}


def to_dict_converter(cls: type) -> ToDict | None:
    """The converter for objects of ``cls``: registered (most specific first), else None."""
    try:
        return _to_dict_cache[cls]
    except KeyError:
        pass
    conv: ToDict | None = None
    for base in cls.__mro__:
        if base in _class_to_dict:
            conv = _class_to_dict[base]
            break
    _to_dict_cache[cls] = conv
    return conv


def object_to_dict(obj: Any, extended: bool) -> dict:
    """Turn an object the format cannot represent into a ``__class__`` dict.

    ``extended`` (Ember peer on the other side) tags UUIDs, Decimals, datetimes and paths
    so they come back as themselves; otherwise they go as Pyro5 sends them (strings).
    """
    cls = type(obj)
    conv = to_dict_converter(cls)
    if conv is not None:
        return conv(obj)
    if isinstance(obj, BaseException):
        return exception_to_dict(obj)
    if extended:
        ext = _EXTENDED.get(cls)
        if ext is not None:
            return ext(obj)
    return _unknown_to_dict(obj)


_FROM_EXTENDED: dict[str, Callable[[Any], Any]] = {
    "uuid.UUID": uuid.UUID,
    "decimal.Decimal": decimal.Decimal,
    "datetime.datetime": datetime.datetime.fromisoformat,
    "datetime.date": datetime.date.fromisoformat,
    "datetime.time": datetime.time.fromisoformat,
    "datetime.timedelta": lambda v: datetime.timedelta(seconds=v),
    "pathlib.Path": pathlib.PurePath,
}


def _builtin_exception(name: str) -> type | None:
    if name.startswith("builtins."):
        short = name[9:]
    elif name.startswith("exceptions."):
        short = name[11:]
    else:
        return None
    cls = getattr(builtins, short, None)
    # only Exceptions: SystemExit, KeyboardInterrupt, GeneratorExit (BaseException but not
    # Exception) raised in the receiver would pass most handlers and end its program or
    # generator; they arrive as a RemoteError naming the class instead
    if isinstance(cls, type) and issubclass(cls, Exception):
        return cls
    return None


def dict_to_object(d: dict) -> Any:
    """Rebuild a received ``__class__`` dict following the safe decision list; a dict that
    does not hold what its class needs (a key missing, a value of the wrong type) is a
    :class:`~ember.errors.SerializeError`, whatever the converter raised."""
    name = d["__class__"]
    if not isinstance(name, str):
        raise errors.SerializeError(f"invalid __class__ value {name!r}")
    try:
        return _rebuild(name, d)
    except (KeyError, AttributeError, TypeError, ValueError, IndexError) as exc:
        raise errors.SerializeError(f"invalid data for class {name}: {type(exc).__name__}: {exc}") from None


def _rebuild(name: str, d: dict) -> Any:
    conv = _dict_to_class.get(name)
    if conv is not None:
        return conv(name, d)
    if name in _FROM_EXTENDED and "value" in d:
        try:
            value = _FROM_EXTENDED[name](d["value"])
        except (ValueError, TypeError, decimal.InvalidOperation) as exc:
            raise errors.SerializeError(f"invalid {name} value {d['value']!r}: {exc}") from None
        if name == "pathlib.Path":
            return pathlib.Path(value)
        return value
    if name == "float" and "value" in d:  # serpent's NaN transport
        return float(d["value"])
    if name == "Pyro5.core._ExceptionWrapper":
        return ExceptionWrapper(d["exception"])
    if d.get("__exception__"):
        return _rebuild_exception(name, d)
    if "__" in name:
        raise errors.SecurityError(
            f"refused to deserialize class {name!r}: names with double underscores "
            "(such as classes defined in __main__) are never rebuilt; register a converter"
        )
    raise errors.SerializeError(
        f"unsupported serialized class: {name}: the process receiving it (the client for a result, "
        f"the daemon for an argument) has no converter for it, and Ember never builds a class just "
        f"because its name arrived. Fix: send plain data (dicts, lists...) instead, or register the class "
        f"in both processes with ember.register_type(cls) (dataclasses, enums, exceptions), or give the "
        f"receiving process a converter: ember.register_dict_to_class({name!r}, converter)"
    )


def _rebuild_exception(name: str, d: dict) -> BaseException:
    cls = _builtin_exception(name)
    if cls is None:
        for prefix in ("Pyro5.errors.", "ember.errors.", "Pyro4.errors."):
            if name.startswith(prefix):
                cls = _EMBER_ERRORS.get(name[len(prefix) :])
                break
    if cls is None:
        exc: BaseException = errors.RemoteError(
            *(d.get("args") or ()), remote_class=name, attributes=d.get("attributes") or {}
        )
        tb = (d.get("attributes") or {}).get("_pyroTraceback")
        if tb is not None:
            exc._pyroTraceback = tb  # type: ignore[attr-defined]
        return exc
    if cls is errors.RemoteError:
        return errors.RemoteError(*(d.get("args") or ()), remote_class=name, attributes=d.get("attributes") or {})
    return _make_exception(cls, d)


class ExceptionWrapper:
    """A batch result that is an exception (Pyro5's ``_ExceptionWrapper`` form)."""

    __slots__ = ("exception",)

    def __init__(self, exception: Any) -> None:
        self.exception = exception

    def raise_it(self) -> None:
        exc = self.exception
        if isinstance(exc, dict):  # not yet rebuilt (serpent/marshal walk order)
            exc = dict_to_object(exc)
        raise exc

    def to_dict(self) -> dict:
        conv = to_dict_converter(type(self.exception))
        exc = conv(self.exception) if conv is not None else exception_to_dict(self.exception)
        return {"__class__": "Pyro5.core._ExceptionWrapper", "exception": exc}


register_class_to_dict(ExceptionWrapper, ExceptionWrapper.to_dict)


def _register_uri() -> None:
    register_class_to_dict(URI, lambda u: {"__class__": "Pyro5.core.URI", "state": u.wire_state()})
    register_dict_to_class("Pyro5.core.URI", lambda _, d: URI.from_state(d["state"]))
    register_dict_to_class("ember.URI", lambda _, d: URI.from_state(d["state"]))
    # a daemon object sent over the wire is only a placeholder (as in Pyro5)
    register_dict_to_class("Pyro5.server.Daemon", lambda _, d: DaemonPlaceholder())


class DaemonPlaceholder:
    """What a serialized daemon becomes on the other side: a name, nothing usable."""

    def __repr__(self) -> str:
        return "<remote Daemon placeholder>"


_register_uri()
