"""Guards around a call: the shape of a batch checked before any of its calls runs, and
what becomes of a BaseException (SystemExit & co.) a method raised."""

from __future__ import annotations

import asyncio
import logging
import reprlib
import threading
from typing import Any

from ..errors import DaemonError, SerializeError

__all__ = ["check_batch", "contained"]

log = logging.getLogger("ember.server.dispatch")


def contained(exc: BaseException) -> Exception:
    """The error to answer for a BaseException that is not an Exception, raised by a call
    (``sys.exit()`` in a method, argparse on bad input, a stray GeneratorExit): a remote
    call never ends the daemon's process, worker thread or event loop. Control flow passes
    through (re-raised): task cancellation, and Ctrl+C (KeyboardInterrupt on the main thread)."""
    if isinstance(exc, Exception):
        return exc
    if isinstance(exc, asyncio.CancelledError) or (
            isinstance(exc, KeyboardInterrupt) and threading.current_thread() is threading.main_thread()):
        raise exc
    raised = f"{type(exc).__name__}({', '.join(reprlib.repr(a) for a in exc.args)})"
    log.warning("a call raised %s: answered as an error (call daemon.shutdown() to stop a daemon)", raised)
    error = DaemonError(f"the remote method raised {raised}; a call cannot stop the daemon, it was answered as "
                        "this error")
    return error.with_traceback(exc.__traceback__)


def check_batch(calls: Any) -> None:
    """Check the shape of a batch's calls before any runs: each ``(name, args)`` or
    ``(name, args, kwargs)`` with a str name, a list/tuple of args and a dict (or None) of kwargs."""
    for i, call in enumerate(calls):
        if (type(call) is tuple or type(call) is list) and 2 <= len(call) <= 3 and type(call[0]) is str \
                and type(call[1]) in (list, tuple) and (len(call) == 2 or call[2] is None or type(call[2]) is dict):
            continue
        raise SerializeError(f"invalid batch call #{i}: expected (method name, args) or (method name, args, "
                             f"kwargs), got {reprlib.repr(call)}")
