"""What every server loop shares: the wake-up socket pair, running the loop, and a
shutdown that lets the loop's own thread do the cleanup."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import selectors
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from .. import net
from ..errors import CommunicationError
from ..protocol import Message
from .connection import Connection

log = logging.getLogger("ember.server")


_OUT_OF_RESOURCES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


def answer(daemon: Any, conn: Connection, msg: Message) -> None:
    """Dispatch one message and send its reply, if it has one."""
    reply = daemon.dispatch(conn, msg)
    if reply is not None:
        conn.send(daemon.encode(reply))


def report_failure(daemon: Any, conn: Connection, exc: Exception) -> None:
    """The peer sent something invalid: tell it why when the protocol allows (best effort)."""
    reply = daemon.connection_failed(conn, exc)
    if reply is not None:
        with contextlib.suppress(CommunicationError):
            conn.send(daemon.encode(reply))


class ServerLoop:
    """Base of the server loops. Subclasses implement ``poll_once`` and ``_release``."""

    sock: socket.socket | None
    location: tuple

    def __init__(self, daemon: Any) -> None:
        self.daemon = daemon
        self.nodelay = daemon.config.SOCK_NODELAY
        self.selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self.selector.register(self._wake_r, selectors.EVENT_READ, None)
        self.running = True
        self._looping: threading.Event | None = None
        self._loop_thread: threading.Thread | None = None
        self._cleaned = False

    def poll_once(self, timeout: float) -> None:
        raise NotImplementedError

    def _release(self) -> None:
        """Close what the subclass owns (connections, workers)."""

    def _keep_looping(self) -> bool:
        return True

    def loop(self, condition: Callable[[], bool]) -> None:
        """Serve until shut down or ``condition()`` is false; clean up when shut down."""
        poll = self.daemon.config.POLLTIMEOUT
        self._looping = threading.Event()
        self._loop_thread = threading.current_thread()
        try:
            while self.running and condition() and self._keep_looping():
                try:
                    self.poll_once(poll)
                except Exception:  # the loop serves everyone: never let one failure end it
                    log.exception("error in the server loop")
        finally:
            looping, self._looping = self._looping, None
            if not self.running:
                self._cleanup()
            looping.set()

    def _accept_socket(self) -> tuple[socket.socket, Any] | None:
        """Accept one client socket; on fd/memory exhaustion log and back off instead of failing."""
        assert self.sock is not None
        try:
            csock, addr = self.sock.accept()
        except BlockingIOError:
            return None
        except OSError as exc:
            if exc.errno in _OUT_OF_RESOURCES:
                log.warning("accept failed (%s); backing off", exc.strerror)
                time.sleep(0.1)
            return None
        csock.setblocking(True)
        if self.nodelay:
            net.set_nodelay(csock)
        return csock, addr

    def _drain_wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_r.recv(512)

    def shutdown(self) -> None:
        """Stop the loop; the loop's thread cleans up (or this one, if no loop runs)."""
        self.running = False
        with contextlib.suppress(OSError):
            self._wake_w.send(b"!")
        looping = self._looping
        if looping is not None:
            if threading.current_thread() is self._loop_thread:
                return  # the loop cleans up when it returns
            if looping.wait(timeout=10):
                return
        self._cleanup()

    def _cleanup(self) -> None:
        if self._cleaned:
            return
        self._cleaned = True
        self._release()
        with contextlib.suppress(Exception):
            self.selector.close()
        if self.sock is not None:
            net.close_quietly(self.sock)
            path = self.location[2]
            if path and not path.startswith("\0"):
                with contextlib.suppress(OSError):
                    os.remove(path)
        self._wake_r.close()
        self._wake_w.close()
