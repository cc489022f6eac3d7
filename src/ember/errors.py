"""Ember's exception hierarchy and helpers for remote tracebacks.

Every error Ember raises on purpose is a :class:`PyroError`. The names follow Pyro5's
``Pyro5.errors`` so that the two libraries can exchange them on the wire: an Ember daemon
sends ``NamingError`` as ``Pyro5.errors.NamingError`` and a Pyro5 client re-creates it,
and the other way round.
"""

from __future__ import annotations

import reprlib
import sys
import traceback
from typing import Any

__all__ = [
    "PyroError",
    "CommunicationError",
    "ConnectionClosedError",
    "TimeoutError",
    "ProtocolError",
    "MessageTooLargeError",
    "SerializeError",
    "ConnectionDeniedError",
    "NamingError",
    "DaemonError",
    "SecurityError",
    "InvalidURIError",
    "ConfigError",
    "DeadlockError",
    "RemoteError",
    "remote_traceback",
    "format_traceback",
    "excepthook",
]


class PyroError(Exception):
    """Base class of every error Ember raises on purpose."""


class CommunicationError(PyroError):
    """Something went wrong talking to the peer (connect failed, refused, broken)."""


class ConnectionClosedError(CommunicationError):
    """The connection was closed, by the peer or because it failed mid-message."""


class TimeoutError(ConnectionClosedError):  # noqa: A001 - same name as Pyro5 on purpose
    """A socket operation took longer than the configured timeout.

    A subclass of :class:`ConnectionClosedError` because a connection that timed out in the
    middle of a call is in an unknown state and is closed.
    """


class ProtocolError(CommunicationError):
    """The bytes received are not a valid Pyro5 protocol message in this state."""


class MessageTooLargeError(ProtocolError):
    """A message is larger than ``MAX_MESSAGE_SIZE`` (checked before any allocation)."""


class SerializeError(ProtocolError):
    """A value could not be serialized or deserialized with the chosen serializer."""


class ConnectionDeniedError(CommunicationError):
    """The daemon refused the connection.

    ``code`` is one of :data:`DENY_UNSPECIFIED`, :data:`DENY_BUSY`,
    :data:`DENY_HOST_BLOCKED`, :data:`DENY_SECURITY`; ``reason`` is the daemon's text.
    """

    def __init__(self, reason: str = "connection denied", code: int = 0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


DENY_UNSPECIFIED = 0
DENY_BUSY = 1
DENY_HOST_BLOCKED = 2
DENY_SECURITY = 3
DENY_NAMES = {DENY_UNSPECIFIED: "unspecified", DENY_BUSY: "too busy", DENY_HOST_BLOCKED: "host blocked",
              DENY_SECURITY: "security"}


class NamingError(PyroError):
    """A name could not be registered, found or resolved."""


class DaemonError(PyroError):
    """The daemon could not do what was asked (unknown object, registration clash...)."""


class SecurityError(PyroError):
    """Something was refused for safety: a forbidden class name, a private attribute..."""


class InvalidURIError(PyroError, ValueError):
    """A string is not a valid Ember/Pyro URI; the message names the bad part."""


class ConfigError(PyroError, ValueError):
    """A config item name or value is invalid (also importable from :mod:`ember.config`)."""


class DeadlockError(PyroError):
    """A call that could never finish was refused: a blocking :class:`~ember.Proxy` call made
    on the event loop thread of the asyncio daemon it targets (the loop would wait for itself).
    Use :class:`~ember.aio.AsyncProxy` in async code."""


class RemoteError(PyroError):
    """A remote exception whose class this side does not know.

    Ember never instantiates a class just because its name arrived on the wire. When the
    remote class is neither a builtin exception, an Ember/Pyro5 error nor a class registered
    with :func:`ember.register_type`, this exception stands in for it: ``remote_class`` is the
    remote class name, ``args`` its arguments, ``attributes`` its instance attributes.
    """

    def __init__(self, *args: Any, remote_class: str = "?", attributes: dict | None = None) -> None:
        super().__init__(*args)
        self.remote_class = remote_class
        self.attributes = dict(attributes or {})

    def __str__(self) -> str:
        text = ", ".join(str(a) for a in self.args)
        return f"{self.remote_class}: {text}" if text else self.remote_class


def remote_traceback(exc: BaseException) -> str:
    """Return the remote traceback carried by ``exc`` as one string ("" if there is none).

    The server side formats the traceback when the exception happens and sends it along as
    the attribute ``_pyroTraceback`` (the same name Pyro5 uses, so either side can read it).
    """
    tb = getattr(exc, "_pyroTraceback", None)
    if not tb:
        return ""
    if isinstance(tb, str):
        return tb
    return "".join(tb)


def format_traceback(
    ex_type: type[BaseException] | None = None,
    ex_value: BaseException | None = None,
    ex_tb: Any = None,
    detailed: bool = False,
) -> list[str]:
    """Format an exception as a list of lines, optionally with the local variables of each frame.

    Used by the daemon to build ``_pyroTraceback``. With ``detailed=True`` (config item
    ``DETAILED_TRACEBACK``) every frame lists its local variables, which helps debugging but
    may leak data: keep it off in production.
    """
    if ex_type is None:
        ex_type, ex_value, ex_tb = sys.exc_info()
    if not detailed:
        if not _container_args(ex_value):
            return traceback.format_exception(ex_type, ex_value, ex_tb)
        return ["Traceback (most recent call last):\n", *traceback.format_tb(ex_tb),
                *format_exception_only(ex_type, ex_value)]
    lines = ["Traceback (most recent call last, with local variables):\n"]
    for frame, lineno in traceback.walk_tb(ex_tb):
        code = frame.f_code
        lines.append(f'  File "{code.co_filename}", line {lineno}, in {code.co_name}\n')
        for name, value in sorted(frame.f_locals.items()):
            try:
                text = _SHORT.repr(value)  # bounded: a value may be a huge (or exponential) structure
            except Exception:  # a broken __repr__ must not hide the real error
                text = "<unrepresentable>"
            if len(text) > 200:
                text = text[:200] + "..."
            lines.append(f"      {name} = {text}\n")
    lines.extend(format_exception_only(ex_type, ex_value))
    return lines


_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxlist, _SHORT.maxtuple, _SHORT.maxdict, _SHORT.maxset = 4, 20, 20, 20, 20
_SHORT.maxstring = _SHORT.maxother = 200
_CONTAINER_TYPES = (list, tuple, dict, set, frozenset)


def _container_args(exc: BaseException | None) -> bool:
    return any(isinstance(a, _CONTAINER_TYPES) for a in getattr(exc, "args", ()))


def format_exception_only(ex_type: type[BaseException] | None, ex_value: BaseException | None) -> list[str]:
    """The last line of a traceback (type and message). An exception whose arguments are
    containers gets them abbreviated: the full text of a value that shares its parts (a few
    hundred bytes of marshal back-references) can be exponentially long."""
    if not _container_args(ex_value):
        return traceback.format_exception_only(ex_type, ex_value)
    assert ex_type is not None and ex_value is not None
    name = ex_type.__qualname__
    module = ex_type.__module__
    if module not in ("builtins", "__main__"):
        name = f"{module}.{name}"
    message = ", ".join(_SHORT.repr(a) for a in ex_value.args) if len(ex_value.args) != 1 else \
        _SHORT.repr(ex_value.args[0])
    return [f"{name}: {message}\n"]


def excepthook(ex_type: type[BaseException], ex_value: BaseException, ex_tb: Any) -> None:
    """A ``sys.excepthook`` that prints the remote traceback too.

    Install it with ``sys.excepthook = ember.errors.excepthook``.
    """
    local = "".join(traceback.format_exception(ex_type, ex_value, ex_tb))
    remote = remote_traceback(ex_value)
    if remote:
        sys.stderr.write(local)
        sys.stderr.write("\n +--- This exception occurred remotely (Ember) - Remote traceback:\n")
        for line in remote.splitlines():
            sys.stderr.write(" | " + line + "\n")
        sys.stderr.write(" +--- End of remote traceback\n")
    else:
        sys.stderr.write(local)
