"""Marking what a daemon may expose: ``expose``, ``oneway``, ``behavior``, ``callback``.

Nothing is remotely reachable unless exposed, and names starting with an underscore never
are (except public dunders such as ``__len__`` on an exposed class).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from .meta import reset_cache

__all__ = ["expose", "oneway", "idempotent", "behavior", "callback", "INSTANCE_MODES"]

T = TypeVar("T")
INSTANCE_MODES = ("single", "session", "percall")


def expose(target: T) -> T:
    """Make a class (all its public methods and properties), a method or a property remote.

    On a property, put ``@expose`` above ``@property``; exposing the getter exposes the
    setter too.
    """
    if isinstance(target, property):
        if target.fget is not None:
            setattr(target.fget, "_pyroExposed", True)
        if target.fset is not None:
            setattr(target.fset, "_pyroExposed", True)
        return target
    if isinstance(target, (staticmethod, classmethod)):
        setattr(target.__func__, "_pyroExposed", True)
        return target
    if isinstance(target, type) or callable(target):
        try:
            setattr(target, "_pyroExposed", True)
        except AttributeError:
            raise TypeError(f"cannot expose {target!r}") from None
        return target
    raise TypeError(f"@expose takes a class, a method or a property, not {type(target).__name__}")


def oneway(method: T) -> T:
    """Declare a method oneway: callers do not wait and get no result or exception.

    Also exposes it. The daemon runs it in another thread (``ONEWAY_THREADED``) so the
    caller's next call is not held up.
    """
    func: Any = method.__func__ if isinstance(method, (staticmethod, classmethod)) else method
    func._pyroOneway = True
    func._pyroExposed = True
    return method


def idempotent(method: T) -> T:
    """Declare that running a method twice does no harm (a read, or a write of a fixed value).

    Also exposes it. Ember clients learn it from the object's metadata: when the server
    of a ``PYRONAME:`` proxy dies while such a call is in flight, the proxy runs the call
    again on another replica of the name instead of raising (see docs/scale-out.md). Any
    other call raises the :class:`~ember.errors.ConnectionClosedError`, since it may have
    run. Pyro5 clients see a plain exposed method.
    """
    func: Any = method.__func__ if isinstance(method, (staticmethod, classmethod)) else method
    if isinstance(func, type) or not callable(func):
        raise TypeError(f"@idempotent marks a method, not {type(method).__name__}")
    func._emberIdempotent = True
    func._pyroExposed = True
    return method


def callback(method: T) -> T:
    """Mark a method of a callback object (one a client hosts and hands to a server).

    When it raises, the exception goes back to the caller as usual *and* is reported on
    this side: the daemon's ``methodcall_error_handler`` gets it and it is logged, so a
    failing callback does not go unnoticed by the program that hosts it.
    """
    method._pyroCallback = True  # type: ignore[attr-defined]
    return method


def behavior(
    instance_mode: str = "session",
    instance_creator: Callable[[type], Any] | None = None,
    synchronized: bool = False,
) -> Callable[[type[T]], type[T]]:
    """Set how a daemon creates instances of a *registered class*, and whether calls overlap.

    ``single``: one instance for the whole daemon; ``session`` (default): one per client
    connection; ``percall``: a fresh one per call. ``instance_creator(cls)`` builds
    instances instead of ``cls()``. ``synchronized=True`` runs the calls (and attribute
    accesses) on one object one at a time, whatever the number of clients and threads.
    """
    if instance_mode not in INSTANCE_MODES:
        raise ValueError(f"instance_mode must be one of {', '.join(INSTANCE_MODES)}, not {instance_mode!r}")
    if instance_creator is not None and not callable(instance_creator):
        raise TypeError("instance_creator must be callable")

    def decorate(cls: type[T]) -> type[T]:
        if not isinstance(cls, type):
            raise TypeError("@behavior decorates a class")
        cls._pyroInstancing = (instance_mode, instance_creator)  # type: ignore[attr-defined]
        cls._pyroSynchronized = synchronized  # type: ignore[attr-defined]
        reset_cache(cls)
        return cls

    return decorate
