"""The name server's Ember-only remote methods for leases and replicated names.

Kept apart from :mod:`ember.naming.nameserver` (whose interface is Pyro5's): a mixin that
``NameServer`` inherits, plus the two storage helpers its ``register``/``lookup`` use.

- ``grant_lease(ttl)``, ``renew_lease(lease)``, ``revoke_lease(lease)``: a daemon's publisher
  takes a lease, registers its names under it (``register(..., lease=...)``) and renews it;
  when the daemon dies the storage drops its names once the lease runs out.
- ``register(name, uri, replicated=True)`` adds ``uri`` to the name's set of URIs instead of
  replacing it; ``replicas(name)`` returns them all (Ember clients spread their connections
  over them); ``lookup(name)`` returns one of them at random (what a Pyro5 client sees);
  ``remove(name, uri=...)`` removes only that URI.
"""

from __future__ import annotations

import random
from typing import Any

from ..errors import NamingError
from ..server.decorators import expose
from ..uri import URI
from .storage import Entry, Leases, Replicated, Storage

__all__ = ["LeasingMixin", "MAX_LEASE_TTL", "MIN_LEASE_TTL", "leased_write", "pick", "registrations", "remove_uri"]

MIN_LEASE_TTL = 0.1
MAX_LEASE_TTL = 86400.0


def _leases(storage: Storage) -> Any:
    if not isinstance(storage, Leases):
        raise NamingError(f"the name server storage {storage.description} has no leases "
                          "(use memory, sqlite or redis)")
    return storage


def _replicated(storage: Storage) -> Any:
    if not isinstance(storage, Replicated):
        raise NamingError(f"the name server storage {storage.description} cannot keep several URIs per name "
                          "(use memory, sqlite or redis)")
    return storage


def leased_write(storage: Storage, name: str, uri: str, metadata: frozenset[str], lease: Any, mode: str) -> bool:
    """``storage.put_leased`` after checking the capability and the lease's type."""
    if lease is not None and not isinstance(lease, str):
        raise TypeError(f"lease must be a str (from grant_lease), not {type(lease).__name__}")
    if mode == "replica":
        _replicated(storage)
    return bool(_leases(storage).put_leased(name, uri, metadata, lease, mode))


def pick(storage: Storage, name: str) -> Entry | None:
    """One registration of ``name``: at random among its replicas (so Pyro5 clients spread too)."""
    if isinstance(storage, Replicated):
        found = storage.replicas(name)
        if found is None:
            return None
        uris, meta = found
        return (uris[0] if len(uris) == 1 else random.choice(uris)), meta
    return storage.get(name)


def registrations(storage: Storage) -> list[tuple[str, str]]:
    """Every ``(name, uri)`` pair, each replica of a replicated name included."""
    pairs: list[tuple[str, str]] = []
    for name, (uri, _meta) in storage.items().items():
        found = storage.replicas(name) if isinstance(storage, Replicated) else None
        pairs.extend((name, u) for u in (found[0] if found else (uri,)))
    return pairs


def remove_uri(storage: Storage, name: str, uri: str) -> bool:
    """Remove one URI of ``name`` (the whole name when it was its only one)."""
    if isinstance(storage, Replicated):
        return bool(storage.remove_uri(name, uri))
    entry = storage.get(name)
    return entry is not None and entry[0] == uri and storage.remove([name]) == 1


class LeasingMixin:
    """The lease and replica methods of ``Pyro.NameServer`` (Ember extras)."""

    storage: Storage
    write_key: Any  # guard.WriteKey: lease calls change the registry, so they need the key too

    @expose
    def grant_lease(self, ttl: float) -> str:
        """A new lease id that lives ``ttl`` seconds unless renewed (see ``renew_lease``)."""
        self.write_key.check("grant_lease")
        if isinstance(ttl, bool) or not isinstance(ttl, (int, float)):
            raise TypeError(f"ttl must be a number of seconds, not {type(ttl).__name__}")
        if not MIN_LEASE_TTL <= ttl <= MAX_LEASE_TTL:
            raise NamingError(f"lease ttl {ttl} s out of range: give {MIN_LEASE_TTL} to {MAX_LEASE_TTL:g} seconds")
        return _leases(self.storage).grant_lease(float(ttl))

    @expose
    def renew_lease(self, lease: str) -> bool:
        """Restart the lease's time to live; False when it had already expired (its names are gone)."""
        self.write_key.check("renew_lease")
        if not isinstance(lease, str):
            raise TypeError(f"lease must be a str, not {type(lease).__name__}")
        return bool(_leases(self.storage).renew_lease(lease))

    @expose
    def revoke_lease(self, lease: str) -> int:
        """End the lease now, removing its registrations; returns how many."""
        self.write_key.check("revoke_lease")
        if not isinstance(lease, str):
            raise TypeError(f"lease must be a str, not {type(lease).__name__}")
        return int(_leases(self.storage).revoke_lease(lease))

    @expose
    def replicas(self, name: str, return_metadata: bool = False) -> Any:
        """Every URI registered under ``name`` (a list of strings, in registration order), or
        ``(list, metadata set)`` with ``return_metadata``. :class:`NamingError` for an unknown name."""
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, not {type(name).__name__}")
        storage = self.storage
        if isinstance(storage, Replicated):
            found = storage.replicas(name)
        else:
            entry = storage.get(name)
            found = None if entry is None else ((entry[0],), entry[1])
        if found is None:
            raise NamingError(f"unknown name: {name}")
        uris = [str(URI(u)) for u in found[0]]
        return (uris, set(found[1])) if return_metadata else uris
