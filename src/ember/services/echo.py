"""The echo server: a test object (served as ``test.echoserver`` by ``ember echo``), as Pyro5's."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

from ..server import expose, oneway

__all__ = ["EchoServer"]


@expose
class EchoServer:
    """Echoes its arguments; handy to check a connection and to test error handling."""

    def __init__(self) -> None:
        self._verbose = False
        self._must_shutdown = False

    def echo(self, message: Any) -> Any:
        """Return the argument unchanged."""
        if self._verbose:
            print(f"{time.strftime('%H:%M:%S')} - echo: {message!r}")
        return message

    def error(self) -> None:
        """Raise a ZeroDivisionError, to test remote exceptions."""
        if self._verbose:
            print(f"{time.strftime('%H:%M:%S')} - error: generating exception")
        1 // 0  # noqa: B018

    def error_with_text(self) -> None:
        """Raise a ValueError with a message."""
        raise ValueError("the message of the error")

    @oneway
    def oneway_echo(self, message: Any) -> None:
        """Oneway: print the argument (when verbose), return nothing."""
        if self._verbose:
            print(f"{time.strftime('%H:%M:%S')} - oneway_echo: {message!r}")

    @oneway
    def oneway_slow(self) -> None:
        """Oneway: sleep 2 seconds."""
        time.sleep(2)

    def slow(self) -> str:
        """Sleep 2 seconds, then answer."""
        time.sleep(2)
        return "Finally, an answer!"

    def generator(self) -> Iterator[str]:
        """Yield three strings (a remote generator)."""
        yield "one"
        yield "two"
        yield "three"

    def nan(self) -> float:
        return float("nan")

    def inf(self) -> float:
        return float("inf")

    @oneway
    def shutdown(self) -> None:
        """Stop the echo server (oneway, so the caller is not cut off)."""
        if self._verbose:
            print(f"{time.strftime('%H:%M:%S')} - shutting down")
        self._must_shutdown = True
        daemon = getattr(self, "_pyroDaemon", None)
        if daemon is not None:
            threading.Thread(target=daemon.shutdown, daemon=True).start()

    @property
    def verbose(self) -> bool:
        return self._verbose

    @verbose.setter
    def verbose(self, onoff: bool) -> None:
        self._verbose = bool(onoff)

