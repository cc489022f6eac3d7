"""Multiplex server: one thread serves every connection with ``selectors``.

No thread per client, so it holds many idle connections cheaply; a slow method holds up
everyone else (use the thread-pool server, or oneway calls, for long work).
"""

from __future__ import annotations

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
from ..errors import CommunicationError, ProtocolError
from .connection import Connection

__all__ = ["MultiplexServer"]

log = logging.getLogger("ember.server.multiplex")


class MultiplexServer:
    """Serves a listening socket (or one connected socket) from a single thread."""

    def __init__(self, daemon: Any, host: str | None = None, port: int = 0, unixsocket: str | None = None,
                 connected_socket: Any = None) -> None:
        cfg = daemon.config
        self.daemon = daemon
        self.nodelay = cfg.SOCK_NODELAY
        self.selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self.selector.register(self._wake_r, selectors.EVENT_READ, None)
        self.connections: set[Connection] = set()
        self.running = True
        self._looping: threading.Event | None = None
        self._cleaned = False
        self._loop_thread_ident: threading.Thread | None = None
        if connected_socket is not None:
            self.sock = None
            self.location = (None, None, None)
            conn = daemon.new_connection(connected_socket, "connected-socket", established=True)
            conn.owned_socket = False
            self._add(conn)
            self.description = "connected socket (one connection)"
        else:
            self.sock = net.create_server(host, port, unixsocket, reuse=cfg.SOCK_REUSE)
            self.sock.setblocking(False)
            self.location = net.bound_location(self.sock)
            self.selector.register(self.sock, selectors.EVENT_READ, "listen")
            self.description = "multiplex (selectors)"

    @property
    def sockets(self) -> list:
        return [self.sock] + [c.sock for c in self.connections] if self.sock else [c.sock for c in self.connections]

    def _add(self, conn: Connection) -> None:
        try:
            self.selector.register(conn.sock, selectors.EVENT_READ, conn)
        except KeyError:
            # a connection closed from another thread left its (reused) fd registered
            stale = self.selector.get_key(conn.sock.fileno()).data
            self._drop(stale)
            self.selector.register(conn.sock, selectors.EVENT_READ, conn)
        self.connections.add(conn)

    def loop(self, condition: Callable[[], bool]) -> None:
        poll = self.daemon.config.POLLTIMEOUT
        self._looping = threading.Event()
        self._loop_thread_ident = threading.current_thread()
        try:
            self._loop(condition, poll)
        finally:
            looping, self._looping = self._looping, None
            if not self.running:
                self._cleanup()
            looping.set()

    def _loop(self, condition: Callable[[], bool], poll: float) -> None:
        while self.running and condition():
            try:
                self.poll_once(poll)
            except Exception:  # the loop serves everyone: never let one failure end it
                log.exception("error in the multiplex server loop")
            if self.sock is None and not self.connections:
                break  # the one connected socket is gone

    def poll_once(self, timeout: float) -> None:
        if not self.running:
            return
        try:
            events = self.selector.select(timeout)
        except (OSError, ValueError):
            return
        for key, _ in events:
            data = key.data
            if data is None:
                try:
                    self._wake_r.recv(512)
                except OSError:
                    pass
            elif data == "listen":
                self._accept()
            else:
                self._readable(data)
        self.daemon.periodic()

    def events(self, ready: list) -> None:
        by_sock = {c.sock: c for c in self.connections}
        for s in ready:
            if s is self.sock:
                self._accept()
            elif s in by_sock:
                self._readable(by_sock[s])
        self.daemon.periodic()

    def _accept(self) -> None:
        try:
            csock, addr = self.sock.accept()
        except BlockingIOError:
            return
        except OSError as exc:
            if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                log.warning("accept failed (%s); backing off", exc.strerror)
                time.sleep(0.1)
            return
        csock.setblocking(True)
        if self.nodelay:
            net.set_nodelay(csock)
        self._add(self.daemon.new_connection(csock, addr))

    def _readable(self, conn: Connection) -> None:
        daemon = self.daemon
        try:
            try:
                chunk = conn.sock.recv(65536)
            except OSError as exc:
                raise CommunicationError(str(exc)) from None
            if not chunk:
                self._drop(conn)
                return
            conn.decoder.feed(chunk)
            while (msg := conn.decoder.next_message()) is not None:
                reply = daemon.dispatch(conn, msg)
                if reply is not None:
                    conn.send(daemon.encode(reply))
                if conn.must_close:
                    self._drop(conn)
                    return
        except ProtocolError as exc:
            reply = daemon.connection_failed(conn, exc)
            if reply is not None:
                try:
                    conn.send(daemon.encode(reply))
                except CommunicationError:
                    pass
            self._drop(conn)
        except CommunicationError as exc:
            log.debug("connection from %s ended: %s", conn.addr, exc)
            self._drop(conn)
        except Exception:
            log.exception("unexpected error serving %s", conn.addr)
            self._drop(conn)

    def _drop(self, conn: Connection) -> None:
        if conn in self.connections:
            self.connections.discard(conn)
            try:
                self.selector.unregister(conn.sock)
            except (KeyError, ValueError, OSError):
                pass
        if getattr(conn, "owned_socket", True):
            self.daemon.connection_closed(conn)
        else:
            conn.closed = True  # never close a socket the user handed us
            self.daemon.connection_closed(conn)

    def shutdown(self) -> None:
        self.running = False
        try:
            self._wake_w.send(b"!")
        except OSError:
            pass
        looping = self._looping
        if looping is not None:
            if threading.current_thread() is self._loop_thread_ident:
                return  # the loop cleans up when it returns
            if looping.wait(timeout=10):
                return
        self._cleanup()

    def _cleanup(self) -> None:
        if self._cleaned:
            return
        self._cleaned = True
        for conn in list(self.connections):
            self._drop(conn)
        try:
            self.selector.close()
        except Exception:
            pass
        if self.sock is not None:
            net.close_quietly(self.sock)
            if self.location[2] and not self.location[2].startswith("\0"):
                try:
                    os.remove(self.location[2])
                except OSError:
                    pass
        self._wake_r.close()
        self._wake_w.close()
