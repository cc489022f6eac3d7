"""``Pyro5.errors``: every Pyro5 error class (Ember's, which travel under Pyro5's names)
and the traceback helpers, printing Pyro5's layout."""

from __future__ import annotations

import sys
from typing import Any

from ...errors import (
    CommunicationError,
    ConnectionClosedError,
    DaemonError,
    MessageTooLargeError,
    NamingError,
    ProtocolError,
    PyroError,
    SecurityError,
    SerializeError,
    TimeoutError,
)
from ...errors import format_traceback as _ember_format_traceback
from .config import config

__all__ = [
    "CommunicationError", "ConnectionClosedError", "DaemonError", "MessageTooLargeError", "NamingError",
    "ProtocolError", "PyroError", "SecurityError", "SerializeError", "TimeoutError",
    "excepthook", "format_traceback", "get_pyro_traceback",
]


def format_traceback(ex_type: Any = None, ex_value: Any = None, ex_tb: Any = None, detailed: bool = False) -> list[str]:
    """The exception's traceback as a list of lines (of the current exception when none is given).

    ``detailed`` adds each frame's local variables (Ember's layout, not Pyro5's).
    """
    if ex_type is None and ex_tb is None:
        ex_type, ex_value, ex_tb = sys.exc_info()
    return _ember_format_traceback(ex_type, ex_value, ex_tb, detailed)


def _remote_part(remote: Any) -> list[str]:
    lines = [remote] if isinstance(remote, str) else list(remote)
    out = [" +--- This exception occurred remotely (Pyro) - Remote traceback:"]
    for chunk in lines:
        for line in chunk.rstrip("\n").split("\n"):
            out += ["\n | ", line]
    out.append("\n +--- End of remote traceback\n")
    return out


def get_pyro_traceback(ex_type: Any = None, ex_value: Any = None, ex_tb: Any = None) -> list[str]:
    """The local traceback plus, for an exception raised remotely, the remote one (as
    Pyro5 lays it out). Without arguments: the exception being handled."""
    if ex_type is not None and ex_value is None and ex_tb is None and not isinstance(ex_type, type):
        raise TypeError("invalid argument: ex_type should be an exception type, or just supply no arguments at all")
    if ex_type is None and ex_tb is None:
        ex_type, ex_value, ex_tb = sys.exc_info()
    try:
        lines = format_traceback(ex_type, ex_value, ex_tb, config.DETAILED_TRACEBACK)
        remote = getattr(ex_value, "_pyroTraceback", None)
        return lines + _remote_part(remote) if remote else lines
    finally:
        del ex_type, ex_value, ex_tb


def excepthook(ex_type: Any, ex_value: Any, ex_tb: Any) -> None:
    """A ``sys.excepthook`` printing remote tracebacks too: ``sys.excepthook = errors.excepthook``."""
    sys.stderr.write("".join(get_pyro_traceback(ex_type, ex_value, ex_tb)))
