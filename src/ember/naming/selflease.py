"""A name server's own entry in a registry shared by several name servers.

With a shared store (``Storage.shared``: Redis) every name server adds its URI to
``Pyro.NameServer`` as one replica under a lease of ``NS_LEASE_TIME`` seconds (10 when 0)
that it renews every third of that: ``lookup("Pyro.NameServer")`` then gives a live name
server, ``replicas("Pyro.NameServer")`` all of them, and a killed name server leaves the
entry within the lease time.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from ..config import config
from ..errors import PyroError
from ..uri import URI
from .nameserver import NAMESERVER_METADATA, NAMESERVER_NAME

__all__ = ["SelfLease"]

log = logging.getLogger("ember.naming")


class SelfLease:
    """Registers ``uri`` as a replica of ``Pyro.NameServer`` under a lease and renews it."""

    def __init__(self, storage: Any, uri: URI) -> None:
        self.storage = storage
        self.uri = str(uri)
        self.ttl = float(config.NS_LEASE_TIME) or 10.0
        self.lease: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ember-ns-self-lease", daemon=True)
        self._register()

    def _register(self) -> None:
        self.lease = self.storage.grant_lease(self.ttl)
        self.storage.put_leased(NAMESERVER_NAME, self.uri, NAMESERVER_METADATA, self.lease, "replica")

    def start(self) -> None:
        if not self._thread.is_alive() and not self._stop.is_set():
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                if not self.storage.renew_lease(self.lease):  # the store lost it (a Redis restarted empty)
                    self._register()
            except PyroError as exc:
                log.warning("cannot renew the name server's own lease (retrying): %s", exc)

    def stop(self) -> None:
        """Stop renewing and take this name server out of ``Pyro.NameServer`` (idempotent)."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)
        lease, self.lease = self.lease, None
        if lease is not None:
            try:
                self.storage.revoke_lease(lease)
            except PyroError as exc:
                log.debug("cannot revoke the name server's own lease: %s", exc)
