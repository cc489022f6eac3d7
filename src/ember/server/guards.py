"""Guards around a call: what becomes of a BaseException (SystemExit & co.) a method raised."""

from __future__ import annotations

import asyncio
import logging
import reprlib
import threading

from ..errors import DaemonError

__all__ = ["contained"]

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
