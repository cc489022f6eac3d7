"""Where a name server keeps its registrations, and how a back-end is chosen by URL scheme.

A back-end implements the small :class:`Storage` interface: it keeps
``name -> (uri, metadata)`` safely under concurrent use. Filtering (prefix, regex,
metadata) is the name server's job, not the store's. Two back-ends are built in:

- ``memory`` (:class:`~ember.naming.storage.memory.MemoryStorage`): a dict, gone when the
  process ends; the default;
- ``sqlite`` (:class:`~ember.naming.storage.sqlite.SqlStorage`): an SQLite file, one
  transaction per change in WAL mode, so an acknowledged registration survives a crash.

:func:`open_storage` turns a spec into a back-end by its URL scheme::

    None, "memory", "memory:"          -> MemoryStorage
    "sqlite:PATH", "sql:PATH", "PATH"  -> SqlStorage(PATH)   (a spec without a scheme is a file)
    "redis://host:6379/0", "rediss://" -> RedisStorage       (needs the extra ember-rpc[redis])

Adding a back-end (etcd, ...) is one new module plus one entry point, and no change
here or anywhere else in Ember. The module subclasses :class:`Storage` (and, when the
store has them, implements the optional :class:`Leases` and :class:`Watch` capabilities)
and offers a callable taking the whole spec string and returning the storage; the
distribution that ships it declares that callable under the entry-point group
``ember.naming.storage``, named after its URL scheme::

    [project.entry-points."ember.naming.storage"]
    etcd = "ember_etcd:EtcdStorage.from_spec"

Then ``ember ns -s etcd://db:2379/ns`` and ``NameServerService(storage="etcd://...")``
use it, and several name servers on several machines can share one store. Ember's own
back-ends are declared the same way in its ``pyproject.toml``, and are also found when
the package runs without installed metadata (from a source tree); a third-party entry
point cannot replace them.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from typing import Any, Literal, NamedTuple, Protocol, runtime_checkable

from ...errors import NamingError

__all__ = [
    "Change",
    "ENTRY_POINT_GROUP",
    "Entry",
    "Leases",
    "Replicas",
    "Replicated",
    "Storage",
    "WRITE_MODES",
    "Watch",
    "open_storage",
]

Entry = tuple[str, frozenset[str]]
"""One registration: ``(uri, metadata)``."""

ENTRY_POINT_GROUP = "ember.naming.storage"

# Ember's own back-ends, as entry-point values: found even without installed metadata
# (a source tree on PYTHONPATH), and never replaced by a third-party entry point.
_BUILTIN = {
    "memory": "ember.naming.storage.memory:MemoryStorage.from_spec",
    "sqlite": "ember.naming.storage.sqlite:SqlStorage.from_spec",
    "sql": "ember.naming.storage.sqlite:SqlStorage.from_spec",  # the spelling of Ember 0.1 (``sql:PATH``)
    # needs the optional extra ember-rpc[redis] (redis-py); loaded only when the scheme is used
    "redis": "ember.naming.storage.redis:RedisStorage.from_spec",
    "rediss": "ember.naming.storage.redis:RedisStorage.from_spec",
}
# the classes re-exported here for ``from ember.naming.storage import MemoryStorage``
_CLASSES = {
    "MemoryStorage": "ember.naming.storage.memory:MemoryStorage",
    "SqlStorage": "ember.naming.storage.sqlite:SqlStorage",
    "RedisStorage": "ember.naming.storage.redis:RedisStorage",
}
# a URL scheme (RFC 3986); one letter is a Windows drive ("C:\\names.db"), not a scheme
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]+):")


class Storage(ABC):
    """The interface every back-end implements. Every method is thread-safe.

    A back-end that several name servers share (a database server, etcd, Redis) must make
    each method atomic on the store itself, not only within one process: ``put_if_absent``
    in particular is how two name servers agree on who registered a name first.
    """

    description = "abstract"
    """A short text for logs and ``ember ns`` start-up output, e.g. ``sql:/var/lib/ns.db``."""

    shared = False
    """True for a store meant to be shared by several name servers (Redis, etcd): each name
    server then adds its own URI to ``Pyro.NameServer`` as a replica under a lease, so the
    entry lists the name servers that are alive."""

    @abstractmethod
    def get(self, name: str) -> Entry | None:
        """The (uri, metadata) of ``name``, or None."""

    @abstractmethod
    def put(self, name: str, uri: str, metadata: frozenset[str]) -> None:
        """Add or replace a registration."""

    @abstractmethod
    def put_if_absent(self, name: str, uri: str, metadata: frozenset[str]) -> bool:
        """Add a registration unless the name exists; True when it was added."""

    @abstractmethod
    def set_metadata(self, name: str, metadata: frozenset[str]) -> bool:
        """Replace the metadata of an existing name; False when the name is unknown."""

    @abstractmethod
    def remove(self, names: Iterable[str]) -> int:
        """Remove the given names; returns how many existed."""

    @abstractmethod
    def items(self) -> dict[str, Entry]:
        """A snapshot of every registration."""

    @abstractmethod
    def count(self) -> int:
        """How many names are registered."""

    def close(self) -> None:  # noqa: B027 - optional, deliberately a no-op by default
        """Release files and connections (idempotent)."""


Replicas = tuple[tuple[str, ...], frozenset[str]]
"""Every registration of a replicated name: ``(uris in registration order, metadata)``."""

WRITE_MODES = ("replace", "absent", "replica")
"""How :meth:`Leases.put_leased` writes: ``replace`` every registration of the name (Pyro5's
meaning of ``register``), only if the name is ``absent`` (``safe=True``), or add one
``replica`` to the name's set of URIs (or replace the metadata and lease of that URI)."""


@runtime_checkable
class Leases(Protocol):
    """Optional capability: registrations that expire unless their owner renews them.

    The model is etcd's lease (Redis: a key with a TTL). A daemon that publishes its
    objects takes a lease with a time to live, registers its names under it, and renews it
    well within the TTL for as long as it runs; when the daemon dies without unregistering,
    the lease runs out and the store itself stops returning (and then removes) every
    registration attached to it: no sweep, no name server pinging daemons. All three
    built-in back-ends (memory, SQLite, Redis) have it. Check for the capability with
    ``isinstance(storage, Leases)``.
    """

    def grant_lease(self, ttl: float) -> str:
        """A new lease id, alive for ``ttl`` seconds unless renewed."""
        ...

    def put_leased(self, name: str, uri: str, metadata: frozenset[str], lease: str | None,
                   mode: str = "replace") -> bool:
        """Write a registration that lives only as long as ``lease`` (None: no lease), in one
        of the :data:`WRITE_MODES`; False when ``mode="absent"`` and the name exists.

        Raises :class:`~ember.errors.NamingError` when the lease is unknown or expired.
        """
        ...

    def renew_lease(self, lease: str) -> bool:
        """Restart the lease's TTL; False when it already expired (its names are gone, so
        the owner must take a new lease and register again)."""
        ...

    def revoke_lease(self, lease: str) -> int:
        """End the lease now and remove its registrations; returns how many were removed."""
        ...


@runtime_checkable
class Replicated(Protocol):
    """Optional capability: several URIs under one name (one service run by several daemons).

    Written with ``put_leased(..., mode="replica")``. :meth:`Storage.get` and
    :meth:`Storage.items` give the first live URI of such a name; :meth:`replicas` gives
    them all. All three built-in back-ends have it.
    """

    def replicas(self, name: str) -> Replicas | None:
        """Every live URI of ``name`` (in registration order) and its metadata, or None."""
        ...

    def remove_uri(self, name: str, uri: str) -> bool:
        """Remove one URI from ``name`` (the name goes with its last URI); True if it was there."""
        ...


class Change(NamedTuple):
    """One change reported by :class:`Watch`."""

    kind: Literal["put", "remove"]
    name: str
    entry: Entry | None
    """The new (uri, metadata) for ``"put"``, None for ``"remove"``."""


@runtime_checkable
class Watch(Protocol):
    """Optional capability: notification of changes, including those made by other name
    servers sharing the store (etcd watch, Redis keyspace notifications).

    Lets a name server keep a cache, or push changes to clients, without polling. Check
    for the capability with ``isinstance(storage, Watch)``.
    """

    def watch(self, callback: Callable[[Change], None], prefix: str = "") -> Callable[[], None]:
        """Call ``callback`` for every later change to a name starting with ``prefix``.

        The callback may run on a thread of the back-end, so it must be quick and
        thread-safe; changes to one name arrive in order. Returns a function that stops
        the notifications (idempotent). :meth:`Storage.close` stops them all.
        """
        ...


def _known_schemes() -> dict[str, importlib.metadata.EntryPoint]:
    """Every registered scheme: installed entry points, then the built-ins over them."""
    found = {ep.name: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}
    for name, value in _BUILTIN.items():
        found[name] = importlib.metadata.EntryPoint(name, value, ENTRY_POINT_GROUP)
    return found


def _split(spec: str) -> tuple[str, str]:
    """``(scheme, spec)``: the scheme of a URL-like spec; a bare file path means sqlite."""
    if spec in ("memory", "memory:"):
        return "memory", spec
    match = _SCHEME.match(spec)
    if match is None:
        return "sqlite", f"sqlite:{spec}"
    return match.group(1).lower(), spec


def open_storage(spec: str | os.PathLike[str] | Storage | None) -> Storage:
    """A storage back-end for ``spec``: a :class:`Storage` (used as is), None (memory), a
    URL-like string whose scheme names a back-end (``memory``, ``sqlite:PATH``,
    ``sql:PATH``, or any scheme registered under the entry-point group
    ``ember.naming.storage``), or a file path (SQLite).

    Raises :class:`~ember.errors.NamingError` for an unknown scheme (naming the known
    ones), a back-end that cannot be loaded, or a spec the back-end refuses.
    """
    if isinstance(spec, Storage):
        return spec
    if spec is None:
        spec = "memory"
    elif isinstance(spec, os.PathLike):
        spec = os.fspath(spec)
    if not isinstance(spec, str) or not spec:
        raise NamingError(f"unknown name server storage {spec!r}: give a URL like 'memory' or 'sqlite:PATH'")
    scheme, full = _split(spec)
    entry = _BUILTIN.get(scheme)
    ep = importlib.metadata.EntryPoint(scheme, entry, ENTRY_POINT_GROUP) if entry else _known_schemes().get(scheme)
    if ep is None:
        known = ", ".join(sorted(_known_schemes()))
        raise NamingError(f"unknown name server storage {spec!r}: no back-end for the scheme {scheme!r} "
                          f"(known: {known}; others register under the entry-point group {ENTRY_POINT_GROUP!r})")
    try:
        factory = ep.load()
    except Exception as exc:  # an optional back-end whose dependencies are missing, a typo in its entry point
        raise NamingError(f"name server storage back-end {scheme!r} ({ep.value}) cannot be loaded: {exc}") from None
    storage = factory(full)
    if not isinstance(storage, Storage):
        raise NamingError(f"name server storage back-end {scheme!r} ({ep.value}) returned {storage!r}, "
                          "not an ember.naming.storage.Storage")
    return storage


def __getattr__(name: str) -> Any:
    """``MemoryStorage`` and ``SqlStorage``, loaded like any back-end (on first use)."""
    if name in _CLASSES:
        return importlib.metadata.EntryPoint(name, _CLASSES[name], ENTRY_POINT_GROUP).load()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
