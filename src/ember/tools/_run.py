"""Running a server from the command line until Ctrl-C or SIGTERM; reading a key option."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable

__all__ = ["read_key", "serve_until_stopped", "stop_on_sigterm"]


def read_key(key: str | None, key_file: str | None) -> str | None:
    """The name server key of ``--key``/``--key-file`` (None: neither given, config ``NS_KEY``
    applies). Raises ValueError for both or an empty key, OSError for an unreadable file."""
    if key is not None and key_file is not None:
        raise ValueError("give --key or --key-file, not both")
    if key_file is not None:
        with open(key_file, encoding="utf-8") as f:
            key = f.readline().strip()
        if not key:
            raise ValueError(f"the key file {key_file} is empty")
    if key is not None and not key.strip():
        raise ValueError("the key must not be empty")
    return key


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
