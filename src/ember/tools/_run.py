"""Running a server from the command line until Ctrl-C or SIGTERM."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable

__all__ = ["serve_until_stopped", "stop_on_sigterm"]


def stop_on_sigterm(stop: Callable[[], None]) -> None:
    """From now on SIGTERM stops the server cleanly: ``stop()`` runs in a helper thread.

    Call it before announcing the server, so a SIGTERM right after the announcement is
    never the default (abrupt) one.
    """
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda signum, frame: threading.Thread(target=stop, name="ember-stop").start())


def serve_until_stopped(loop: Callable[[], None], stop: Callable[[], None]) -> None:
    """Run a server loop until Ctrl-C or SIGTERM, then stop it cleanly (for command-line servers)."""
    stop_on_sigterm(stop)
    try:
        loop()
    except KeyboardInterrupt:
        pass
    finally:
        stop()
