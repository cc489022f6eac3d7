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
        """Raise a ValueError, to test remote exceptions (the one Pyro5's echo server raises)."""
        if self._verbose:
            print(f"{time.strftime('%H:%M:%S')} - error: generating exception")
        raise ValueError("this is the generated error from echoserver echo() method")

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

    def __dunder__(self) -> str:
        """A double-underscore method that is exposed (private ``_names`` never are)."""
        return "should be allowed (dunder)"

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

