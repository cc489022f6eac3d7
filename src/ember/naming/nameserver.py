"""The name server object ``Pyro.NameServer``: names to URIs, with metadata tags.

Its remote interface is Pyro5's (PROTOCOL.md §7), so Pyro5 clients and tools use an Ember
name server unchanged, and they see the exceptions Pyro5's raises (``TypeError`` for an
argument of the wrong type, ``ValueError`` for filters that exclude each other). A few
keyword-only extras (``group``, ``metadata_all``/``metadata_any`` on ``list``) are
Ember's. A name is any string, as in Pyro5 (one that cannot be written in a ``PYRONAME:``
URI, with ``@`` or whitespace, stays reachable through ``lookup``); dots make groups by
convention, so ``list(group="shop")`` and ``remove(group="shop")`` act on every ``shop.*``
name. A name maps to any valid URI (``PYRO:``, ``PYRONAME:``, ``PYROMETA:``...). Only the
name server's own entry, ``Pyro.NameServer``, can be neither overwritten nor removed.

Protection (:mod:`.guard`, :mod:`.matching`): an optional write key for the calls that change
the registry, size limits, and regex filters matched under a time budget.
"""

from __future__ import annotations

import logging
import re
import socket
import threading
import time
from collections.abc import Iterable
from typing import Any

from ..config import Config
from ..config import config as global_config
from ..errors import InvalidURIError, NamingError, PyroError
from ..server.decorators import expose
from ..uri import URI
from .guard import Limits, WriteKey
from .leasing import LeasingMixin, leased_write, pick, registrations, remove_uri
from .matching import RegexMatcher
from .storage import Entry, Storage, open_storage

__all__ = ["NameServer", "NAMESERVER_NAME", "RESERVED_PREFIX", "AutoCleaner"]

log = logging.getLogger("ember.naming")
NAMESERVER_NAME = "Pyro.NameServer"
RESERVED_PREFIX = "Pyro."  # the prefix of Pyro's own names; only NAMESERVER_NAME itself is protected
# the metadata Pyro5 gives the name server's own registration (nothing more: a Pyro5 client
# listing the registry sees what Pyro5's name server shows)
NAMESERVER_METADATA = frozenset({"class:Pyro5.nameserver.NameServer"})


def _check_name(name: Any) -> str:
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, not {type(name).__name__}")
    return name


def _check_uri(uri: Any) -> str:
    if isinstance(uri, URI):
        return str(uri)
    if not isinstance(uri, str):
        raise TypeError(f"only URIs or strings can be registered, not {type(uri).__name__}")
    try:
        URI(uri)
    except InvalidURIError as exc:
        # Pyro5 raises its base PyroError here (the class a Pyro5 client expects)
        raise PyroError(f"invalid uri: {exc}") from None
    return uri


def _check_tags(tags: Any, what: str) -> frozenset[str] | None:
    if tags is None:
        return None
    if isinstance(tags, (str, bytes)):
        raise TypeError(f"{what} should not be a {type(tags).__name__}, but another iterable (set, list, etc)")
    try:
        result = frozenset(tags)
    except TypeError:
        raise TypeError(f"{what} must be an iterable of strings, not {type(tags).__name__}") from None
    for tag in result:
        if not isinstance(tag, str):
            raise TypeError(f"{what} must contain only strings; got {tag!r}")
    return result


def _compile(regex: Any, limits: Limits) -> re.Pattern:
    if not isinstance(regex, str):
        raise TypeError(f"regex must be a str, not {type(regex).__name__}")
    limits.check_regex(regex)
    try:
        return re.compile(regex)
    except re.error as exc:
        raise NamingError(f"invalid regex {regex!r}: {exc}") from None
    except RecursionError:
        raise NamingError(f"invalid regex {regex[:40]!r}...: nested too deeply") from None


class NameServer(LeasingMixin):
    """The registry served as ``Pyro.NameServer``. Thread-safe; state lives in a :class:`Storage`.

    ``key`` (default config ``NS_KEY``) is the write key that ``register``, ``remove`` and
    ``set_metadata`` calls must present (see :mod:`ember.naming.guard`); the limits and the
    regex time budget come from ``config`` (default: the process-wide one).
    """

    def __init__(self, storage: str | Storage | None = None, *, key: str | None = None,
                 config: Config | None = None) -> None:
        cfg = config or global_config
        self.limits = Limits.from_config(cfg)
        self.write_key = WriteKey(key if key is not None else cfg.NS_KEY)
        self.matcher = RegexMatcher(cfg.NS_REGEX_TIMEOUT)
        self._adding = threading.Lock()  # a count check and the put it allows happen together
        self.storage = open_storage(storage)

    def close(self) -> None:
        """End the regex helper processes (the storage stays open: its owner closes it)."""
        self.matcher.close()

    # ---- selection helpers (not remote) ------------------------------------------------

    def _select(self, prefix: Any = None, regex: Any = None, group: Any = None, meta_all: Any = None,
                meta_any: Any = None) -> dict[str, Entry]:
        pattern = _compile(regex, self.limits) if regex is not None else None
        if prefix is not None and not isinstance(prefix, str):
            raise TypeError(f"prefix must be a str, not {type(prefix).__name__}")
        if group is not None:
            group = _check_name(group).rstrip(".") + "."
        all_tags = _check_tags(meta_all, "meta_all")
        any_tags = _check_tags(meta_any, "meta_any")
        selected = {}
        for name, entry in self.storage.items().items():
            if prefix is not None and not name.startswith(prefix):
                continue
            if group is not None and not name.startswith(group):
                continue
            if all_tags is not None and not all_tags <= entry[1]:
                continue
            if any_tags is not None and not any_tags & entry[1]:
                continue
            selected[name] = entry
        if pattern is not None and selected:
            # off this thread when it could backtrack for long (see .matching)
            selected = {name: selected[name] for name in self.matcher.select(pattern, list(selected))}
        return selected

    @staticmethod
    def _out(selected: dict[str, Entry], return_metadata: bool) -> dict[str, Any]:
        # metadata goes out as a set (never a frozenset): every serializer can encode it
        if return_metadata:
            return {name: (uri, set(meta)) for name, (uri, meta) in selected.items()}
        return {name: uri for name, (uri, _meta) in selected.items()}

    def _register_self(self, uri: URI | str) -> None:
        self.storage.put(NAMESERVER_NAME, str(uri), NAMESERVER_METADATA)

    # ---- the remote interface ----------------------------------------------------------

    @expose
    def ping(self) -> None:
        """Answer, to show the name server is alive."""

    @expose
    def count(self) -> int:
        """How many names are registered (the name server itself included)."""
        return self.storage.count()

    @expose
    def register(self, name: str, uri: Any, safe: bool = False, metadata: Iterable[str] | None = None, *,
                 replicated: bool = False, lease: str | None = None) -> None:
        """Map ``name`` to ``uri`` (a URI object or string), with optional metadata tags.

        ``name`` is any string; ``uri`` any valid URI (``PYRONAME:`` and ``PYROMETA:``
        included). An existing name is replaced unless ``safe`` is true, in which case
        registering it again raises :class:`NamingError`; ``Pyro.NameServer`` is never
        replaced. Wrong argument types raise :class:`TypeError`, as in Pyro5.

        Ember extras: ``replicated=True`` adds ``uri`` to the name's URIs (one service run
        by several daemons) instead of replacing them; ``lease`` (from :meth:`grant_lease`)
        makes the registration end with the lease.
        """
        self.write_key.check("register")
        uri_text = _check_uri(uri)
        name = _check_name(name)
        tags = _check_tags(metadata, "metadata") or frozenset()
        self.limits.check_name(name)
        self.limits.check_uri(uri_text)
        self.limits.check_tags(tags)
        if name == NAMESERVER_NAME:
            raise NamingError(f"name already registered: {name} (the name server's own entry cannot be replaced)")
        with self._adding:
            if self.limits.max_names and self.storage.get(name) is None:
                self.limits.check_room(self.storage.count())
            if replicated or lease is not None:
                mode = "absent" if safe else "replica" if replicated else "replace"
                if not leased_write(self.storage, name, uri_text, tags, lease, mode):
                    raise NamingError(f"name already registered: {name}")
            elif safe:
                if not self.storage.put_if_absent(name, uri_text, tags):
                    raise NamingError(f"name already registered: {name}")
            else:
                self.storage.put(name, uri_text, tags)
        log.debug("registered %s -> %s", name, uri_text)

    @expose
    def lookup(self, name: str, return_metadata: bool = False) -> Any:
        """The URI of ``name`` (a URI object), or ``(uri, metadata set)`` with ``return_metadata``.

        For a replicated name, one of its URIs at random."""
        entry = pick(self.storage, _check_name(name))
        if entry is None:
            raise NamingError(f"unknown name: {name}")
        uri = URI(entry[0])
        return (uri, set(entry[1])) if return_metadata else uri

    @expose
    def list(self, prefix: str | None = None, regex: str | None = None, return_metadata: bool = False, *,
             group: str | None = None, metadata_all: Iterable[str] | None = None,
             metadata_any: Iterable[str] | None = None) -> dict[str, Any]:
        """Names and URI strings (with metadata sets if asked), optionally filtered.

        Filters combine (all must hold): ``prefix`` (name starts with), ``regex``
        (:func:`re.match` at the start of the name), ``group`` (every ``group.*`` name),
        ``metadata_all`` (carries all these tags), ``metadata_any`` (carries one of them).
        ``prefix`` and ``regex`` together raise :class:`ValueError`, as in Pyro5.
        """
        if prefix and regex:
            raise ValueError("you can only filter on one thing at a time")
        selected = self._select(prefix, regex, group, metadata_all, metadata_any)
        return self._out(selected, return_metadata)

    @expose
    def yplookup(self, meta_all: Iterable[str] | None = None, meta_any: Iterable[str] | None = None,
                 return_metadata: bool = True) -> dict[str, Any]:
        """Names whose metadata has all of ``meta_all`` and/or any of ``meta_any``; ``{}`` with neither."""
        # Pyro5's rules: an empty collection counts as not given; the two exclude each other
        if meta_all and meta_any:
            raise ValueError("you can't use meta_all or meta_any at the same time")
        if meta_all:
            return self._out(self._select(meta_all=meta_all), return_metadata)
        if meta_any:
            return self._out(self._select(meta_any=meta_any), return_metadata)
        return {}

    @expose
    def set_metadata(self, name: str, metadata: Iterable[str] | None) -> None:
        """Replace the metadata tags of a registered name (None clears them)."""
        self.write_key.check("set_metadata")
        name = _check_name(name)
        tags = _check_tags(metadata, "metadata") or frozenset()
        self.limits.check_tags(tags)
        if name == NAMESERVER_NAME:
            raise NamingError(f"the metadata of {name!r} (the name server's own entry) cannot be changed")
        if not self.storage.set_metadata(name, tags):
            raise NamingError(f"unknown name: {name}")

    @expose
    def remove(self, name: str | None = None, prefix: str | None = None, regex: str | None = None, *,
               group: str | None = None, uri: Any = None) -> int:
        """Remove one name, or every name matching ``prefix``/``regex``/``group``; returns how many.

        With ``name`` and ``uri`` (Ember extra), only that URI of the name (one replica).
        The name server's own entry, ``Pyro.NameServer``, is never removed.
        """
        self.write_key.check("remove")
        if name is not None:
            if not isinstance(name, str) or name == NAMESERVER_NAME:
                return 0
            if uri is not None:
                return int(remove_uri(self.storage, name, _check_uri(uri)))
            return self.storage.remove([name])
        # as Pyro5: an empty prefix or regex selects nothing here (it would select everything)
        prefix, regex = prefix or None, regex or None
        if prefix is None and regex is None and group is None:
            return 0
        selected = self._select(prefix, regex, group)
        return self.storage.remove(n for n in selected if n != NAMESERVER_NAME)


def _probe(uri: URI, timeout: float) -> bool:
    """True when something accepts a connection at the URI's location."""
    try:
        if uri.sockname is not None:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(timeout)
                s.connect(uri.sockname)
            return True
        with socket.create_connection((uri.host, uri.port or 0), timeout=timeout):
            return True
    except OSError:
        return False


class AutoCleaner:
    """Removes registrations whose daemon stopped accepting connections.

    Every ``interval`` seconds it tries a TCP (or unix socket) connection to each distinct
    location in the registry; a name whose location failed at two sweeps in a row (so
    was unreachable for at least one interval) is removed. The name server's own entry
    is never touched.
    """

    def __init__(self, nameserver: NameServer, interval: float) -> None:
        if interval <= 0:
            raise ValueError("autoclean interval must be > 0 seconds")
        self.nameserver = nameserver
        self.interval = interval
        self._failed_since: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ember-ns-autoclean", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.sweep()
            except Exception:
                log.exception("name server autoclean sweep failed")

    def sweep(self) -> int:
        """One liveness pass; returns how many names were removed."""
        by_location: dict[str, list[tuple[str, str]]] = {}
        uris: dict[str, URI] = {}
        for name, uri_text in registrations(self.nameserver.storage):
            if name == NAMESERVER_NAME:
                continue
            try:
                uri = URI(uri_text)
            except InvalidURIError:
                continue
            if uri.protocol != "PYRO":
                continue  # a name leading to another name: no daemon of its own to probe
            loc = uri.location or ""
            by_location.setdefault(loc, []).append((name, uri_text))
            uris[loc] = uri
        timeout = min(max(self.interval / 2, 0.2), 3.0)
        now = time.monotonic()
        doomed: list[tuple[str, str]] = []
        for loc, names in by_location.items():
            if self._stop.is_set():
                return 0
            if _probe(uris[loc], timeout):
                self._failed_since.pop(loc, None)
                continue
            if loc in self._failed_since:
                doomed.extend(names)
                del self._failed_since[loc]
            else:
                self._failed_since[loc] = now
        for loc in list(self._failed_since):
            if loc not in by_location:
                del self._failed_since[loc]
        if not doomed:
            return 0
        # one URI at a time: the other replicas of a replicated name stay
        removed = sum(remove_uri(self.nameserver.storage, name, uri) for name, uri in doomed)
        log.info("autoclean removed %d unreachable registration(s): %s", removed,
                 ", ".join(sorted(f"{name} ({uri})" for name, uri in doomed)))
        return removed
