"""Running a name server: a daemon serving ``Pyro.NameServer``, the broadcast responder and auto-clean."""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..config import config
from ..errors import CommunicationError
from ..server.daemon import Daemon
from ..uri import URI
from .nameserver import NAMESERVER_NAME, AutoCleaner, NameServer
from .responder import LOOPBACK_BROADCAST, BroadcastResponder, default_bind_host
from .selflease import SelfLease
from .storage import Leases, Replicated, Storage

__all__ = ["NameServerService", "start_ns", "start_ns_loop"]

log = logging.getLogger("ember.naming")


class NameServerService:
    """A name server with everything around it; start it with :meth:`start` or :meth:`request_loop`.

    ``port`` None means ``NS_PORT`` (9090), 0 lets the OS choose. The broadcast responder
    runs unless ``enable_broadcast`` is False, the server is on a unix socket, or it is
    bound to IPv6; bound to loopback it answers only loopback broadcasts
    (127.255.255.255). ``autoclean`` (seconds, None = ``NS_AUTOCLEAN``, 0 = off) removes
    registrations whose daemon stopped accepting connections. ``uri_file`` receives the
    URI (written when the service is created, removed at shutdown). ``key`` (None =
    ``NS_KEY``) is the write key ``register``/``remove``/``set_metadata`` calls must present
    (see :mod:`ember.naming.guard`); reading stays open.
    """

    def __init__(
        self,
        host: str | None = None,
        port: int | None = None,
        *,
        unixsocket: str | None = None,
        storage: str | Storage | None = None,
        enable_broadcast: bool = True,
        bchost: str | None = None,
        bcport: int | None = None,
        nathost: str | None = None,
        natport: int | None = None,
        autoclean: float | None = None,
        servertype: str | None = None,
        uri_file: str | os.PathLike | None = None,
        key: str | None = None,
    ) -> None:
        self.nameserver = NameServer(storage, key=key)
        self.broadcast: BroadcastResponder | None = None
        self.autocleaner: AutoCleaner | None = None
        self.self_lease: SelfLease | None = None
        self.uri_file = Path(uri_file) if uri_file else None
        self._closed = False
        self._lock = threading.Lock()
        try:
            self.daemon = Daemon(host=host, port=config.NS_PORT if port is None else port, unixsocket=unixsocket,
                                 nathost=nathost, natport=natport, servertype=servertype)
            self.uri: URI = self.daemon.register(self.nameserver, NAMESERVER_NAME)
            if self.storage.shared and isinstance(self.storage, Leases) and isinstance(self.storage, Replicated):
                self.self_lease = SelfLease(self.storage, self.uri)  # one of several name servers
            else:
                self.nameserver._register_self(self.uri)
            if enable_broadcast and unixsocket is None:
                bind = bchost if bchost is not None else config.NS_BCHOST
                chosen = bind is None
                if chosen:
                    bind = default_bind_host(self.daemon.host)
                if bind is not None:
                    try:
                        self.broadcast = BroadcastResponder(self.daemon.uri_for(NAMESERVER_NAME, nat=False), bind,
                                                            config.NS_BCPORT if bcport is None else bcport)
                    except CommunicationError as exc:
                        if not (chosen and bind == LOOPBACK_BROADCAST):
                            raise
                        # some systems (macOS) have no loopback broadcast address: serve without a responder
                        log.warning("no broadcast responder: %s", exc)
            interval = config.NS_AUTOCLEAN if autoclean is None else autoclean
            if interval:
                self.autocleaner = AutoCleaner(self.nameserver, interval)
            if self.uri_file is not None:
                _write_atomically(self.uri_file, f"{self.uri}\n")
        except BaseException:
            self.shutdown()
            raise

    @property
    def storage(self) -> Storage:
        return self.nameserver.storage

    def start(self) -> NameServerService:
        """Serve in background threads; returns self."""
        self._start_helpers()
        self.daemon.start()
        return self

    def _start_helpers(self) -> None:
        if self.broadcast is not None:
            self.broadcast.start()
        if self.autocleaner is not None:
            self.autocleaner.start()
        if self.self_lease is not None:
            self.self_lease.start()

    def request_loop(self, loop_condition: Callable[[], bool] = lambda: True) -> None:
        """Serve in this thread until :meth:`shutdown` (or the condition turns false), then clean up."""
        self._start_helpers()
        try:
            self.daemon.request_loop(loop_condition)
        finally:
            self.shutdown()

    def shutdown(self) -> None:
        """Stop everything and close the storage. Idempotent, callable from any thread."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self.autocleaner is not None:
            self.autocleaner.stop()
        if self.self_lease is not None:
            self.self_lease.stop()
        if self.broadcast is not None:
            self.broadcast.close()
        daemon = getattr(self, "daemon", None)
        if daemon is not None:
            daemon.shutdown()
        self.nameserver.close()
        self.nameserver.storage.close()
        if self.uri_file is not None and hasattr(self, "uri"):
            with contextlib.suppress(OSError):
                if self.uri_file.read_text(encoding="utf-8").strip() == str(self.uri):
                    self.uri_file.unlink()

    close = shutdown

    def __enter__(self) -> NameServerService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    def describe(self) -> str:
        """Several lines saying where the name server listens and how it is set up."""
        lines = [f"NS running on {self.daemon.location} ({self.daemon.servertype} server)",
                 f"URI = {self.uri}",
                 f"storage: {self.storage.description}, {self.storage.count()} registration(s)"]
        if self.broadcast is not None:
            lines.append(f"broadcast responder on udp {self.broadcast.location}")
        else:
            lines.append("no broadcast responder")
        if self.nameserver.write_key.required:
            lines.append("write key required for register/remove/set_metadata (reading is open)")
        if self.autocleaner is not None:
            lines.append(f"autoclean every {self.autocleaner.interval:g} s")
        if self.uri_file is not None:
            lines.append(f"URI written to {self.uri_file}")
        return "\n".join(lines)


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".ember-ns-uri-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def start_ns(host: str | None = None, port: int | None = None, **options: Any) -> NameServerService:
    """Start a name server in background threads and return it (stop it with ``shutdown()``).

    Takes the options of :class:`NameServerService`.
    """
    return NameServerService(host, port, **options).start()


def start_ns_loop(host: str | None = None, port: int | None = None,
                  loop_condition: Callable[[], bool] = lambda: True, **options: Any) -> None:
    """Run a name server in this thread until it is shut down or ``loop_condition()`` is false."""
    NameServerService(host, port, **options).request_loop(loop_condition)
