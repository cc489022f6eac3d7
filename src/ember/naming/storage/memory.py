"""The ``memory`` back-end: registrations in a dict, gone when the process ends. The default."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterable

from ...errors import NamingError
from . import Entry, Replicas, Storage

__all__ = ["MemoryStorage"]


class MemoryStorage(Storage):
    """Registrations in a dict; gone when the process ends. The default.

    Has the :class:`~ember.naming.storage.Leases` and
    :class:`~ember.naming.storage.Replicated` capabilities: a name holds one or more
    ``(uri, lease)`` members; a member whose lease ran out is dropped by the next
    operation (each operation first ends the expired leases, so a dead daemon's names are
    never returned after its lease time, with no thread and no pinging).
    """

    description = "memory"

    @classmethod
    def from_spec(cls, spec: str) -> MemoryStorage:
        """The back-end for ``memory`` (the ``ember.naming.storage`` entry point)."""
        return cls()

    def __init__(self) -> None:
        # name -> (metadata, [(uri, lease or None), ...]) ; never an empty member list
        self._data: dict[str, tuple[frozenset[str], list[tuple[str, str | None]]]] = {}
        self._leases: dict[str, tuple[float, float]] = {}  # lease -> (deadline, ttl), time.monotonic
        self._lease_names: dict[str, set[str]] = {}  # lease -> names with a member under it
        # no lease can have run out before this (renewals only move deadlines later), so most
        # operations skip the scan; a scan recomputes it
        self._next_expiry = float("inf")
        self._lock = threading.RLock()

    # ---- internals (caller holds the lock) -----------------------------------------------------

    def _expire(self) -> None:
        now = time.monotonic()
        if now < self._next_expiry:
            return
        for lease in [lease for lease, (deadline, _ttl) in self._leases.items() if deadline <= now]:
            self._drop_lease(lease)
        self._next_expiry = min((deadline for deadline, _ttl in self._leases.values()), default=float("inf"))

    def _drop_lease(self, lease: str) -> int:
        self._leases.pop(lease, None)
        removed = 0
        for name in self._lease_names.pop(lease, ()):
            entry = self._data.get(name)
            if entry is None:
                continue
            members = [m for m in entry[1] if m[1] != lease]
            removed += len(entry[1]) - len(members)
            if members:
                self._data[name] = (entry[0], members)
            else:
                del self._data[name]
        return removed

    def _write(self, name: str, uri: str, metadata: frozenset[str], lease: str | None, mode: str) -> bool:
        with self._lock:
            self._expire()
            if lease is not None and lease not in self._leases:
                raise NamingError(f"unknown or expired lease {lease!r}: take a new lease and register again")
            entry = self._data.get(name)
            if mode == "absent" and entry is not None:
                return False
            if mode == "replica" and entry is not None:
                members = [m for m in entry[1] if m[0] != uri] + [(uri, lease)]
            else:
                members = [(uri, lease)]
            self._data[name] = (metadata, members)
            if lease is not None:
                self._lease_names.setdefault(lease, set()).add(name)
            return True

    # ---- Storage ----------------------------------------------------------------------------------

    def get(self, name: str) -> Entry | None:
        with self._lock:
            self._expire()
            entry = self._data.get(name)
            return None if entry is None else (entry[1][0][0], entry[0])

    def put(self, name: str, uri: str, metadata: frozenset[str]) -> None:
        self._write(name, uri, metadata, None, "replace")

    def put_if_absent(self, name: str, uri: str, metadata: frozenset[str]) -> bool:
        return self._write(name, uri, metadata, None, "absent")

    def set_metadata(self, name: str, metadata: frozenset[str]) -> bool:
        with self._lock:
            self._expire()
            entry = self._data.get(name)
            if entry is None:
                return False
            self._data[name] = (metadata, entry[1])
            return True

    def remove(self, names: Iterable[str]) -> int:
        removed = 0
        with self._lock:
            self._expire()
            for name in names:
                if self._data.pop(name, None) is not None:
                    removed += 1
        return removed

    def items(self) -> dict[str, Entry]:
        with self._lock:
            self._expire()
            return {name: (members[0][0], meta) for name, (meta, members) in self._data.items()}

    def count(self) -> int:
        with self._lock:
            self._expire()
            return len(self._data)

    # ---- Leases and Replicated ----------------------------------------------------------------

    def grant_lease(self, ttl: float) -> str:
        lease = uuid.uuid4().hex
        deadline = time.monotonic() + ttl
        with self._lock:
            self._leases[lease] = (deadline, ttl)
            self._next_expiry = min(self._next_expiry, deadline)
        return lease

    def put_leased(self, name: str, uri: str, metadata: frozenset[str], lease: str | None,
                   mode: str = "replace") -> bool:
        return self._write(name, uri, metadata, lease, mode)

    def renew_lease(self, lease: str) -> bool:
        with self._lock:
            self._expire()
            known = self._leases.get(lease)
            if known is None:
                return False
            self._leases[lease] = (time.monotonic() + known[1], known[1])
            return True

    def revoke_lease(self, lease: str) -> int:
        with self._lock:
            self._expire()
            return self._drop_lease(lease) if lease in self._leases else 0

    def replicas(self, name: str) -> Replicas | None:
        with self._lock:
            self._expire()
            entry = self._data.get(name)
            return None if entry is None else (tuple(m[0] for m in entry[1]), entry[0])

    def remove_uri(self, name: str, uri: str) -> bool:
        with self._lock:
            self._expire()
            entry = self._data.get(name)
            if entry is None:
                return False
            members = [m for m in entry[1] if m[0] != uri]
            if len(members) == len(entry[1]):
                return False
            if members:
                self._data[name] = (entry[0], members)
            else:
                del self._data[name]
            return True
