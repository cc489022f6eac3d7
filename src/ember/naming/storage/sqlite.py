"""The ``sqlite`` back-end: registrations in an SQLite file that survive restarts.

One transaction per change, in WAL mode with ``synchronous=FULL``, so a registration that
was acknowledged survives a crash or ``kill -9``. Specs: ``sqlite:PATH``, ``sql:PATH``
(Ember 0.1's spelling) or a bare file path.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from typing import TypeVar

from ...errors import NamingError
from . import Entry, Replicas, Storage

T = TypeVar("T")

__all__ = ["SqlStorage"]

_SCHEMA_VERSION = 2
# version 2: one row per (name, uri) so a name can have replicas, each row maybe under a lease;
# leases with an absolute deadline (wall clock: several name servers may share the file)
_SCHEMA = """
CREATE TABLE registrations (pos INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, uri TEXT NOT NULL,
                            metadata TEXT NOT NULL, lease TEXT, UNIQUE (name, uri));
CREATE INDEX registrations_by_lease ON registrations (lease);
CREATE TABLE leases (id TEXT PRIMARY KEY, deadline REAL NOT NULL, ttl REAL NOT NULL);
"""
# the live rows: no lease, or a lease that has not run out (expired rows are deleted by the next write)
_LIVE = "(lease IS NULL OR lease IN (SELECT id FROM leases WHERE deadline > ?))"


class SqlStorage(Storage):
    """Registrations in an SQLite file that survive restarts.

    WAL journal, ``synchronous=FULL`` and one transaction per change: once a call
    returned, its change is on disk. A file that is not an SQLite database (or one of
    another schema) raises :class:`NamingError` at start-up naming the file. A file of
    Ember 0.1 (schema 1) is upgraded in place.

    Has the :class:`~ember.naming.storage.Leases` and
    :class:`~ember.naming.storage.Replicated` capabilities. Lease deadlines are wall-clock
    times in the file, so several name servers on one machine may share it; reads skip
    rows whose lease ran out, and every write deletes them.
    """

    @classmethod
    def from_spec(cls, spec: str) -> SqlStorage:
        """The back-end for ``sqlite:PATH`` or ``sql:PATH`` (the ``ember.naming.storage`` entry point)."""
        path = spec.partition(":")[2]
        if not path:
            raise NamingError(f"name server storage {spec!r} names no file: use 'sqlite:PATH'")
        return cls(path)

    def __init__(self, path: str) -> None:
        self.path = os.fspath(path)
        self.description = f"sql:{self.path}"
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=10)
        except sqlite3.Error as exc:
            raise NamingError(f"cannot open name server storage file {self.path!r}: {exc}") from None
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._prepare_schema()
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            self._db.execute("SELECT count(*) FROM registrations").fetchone()
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise NamingError(f"name server storage file {self.path!r} is not a usable SQLite database ({exc}); "
                              "move it away or choose another file") from None
        except BaseException:
            self._db.close()
            raise

    def _prepare_schema(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        tables = {row[0] for row in self._db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if version == 0 and not tables:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    self._db.execute(statement)
        elif version == 1 and "registrations" in tables:  # Ember 0.1: one row per name, no leases
            self._db.execute("ALTER TABLE registrations RENAME TO registrations_v1")
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    self._db.execute(statement)
            self._db.execute("INSERT INTO registrations (name, uri, metadata) "
                             "SELECT name, uri, metadata FROM registrations_v1")
            self._db.execute("DROP TABLE registrations_v1")
        elif version != _SCHEMA_VERSION or "registrations" not in tables:
            raise NamingError(f"name server storage file {self.path!r} is an SQLite database but not one "
                              f"written by Ember's name server (schema version {version}); "
                              "use another file")
        else:
            return
        self._db.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")

    def _transaction(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """``work(db)`` in one write transaction, after deleting the rows of expired leases."""
        with self._lock:
            db = self._db
            try:
                db.execute("BEGIN IMMEDIATE")
                try:
                    now = time.time()
                    db.execute("DELETE FROM registrations WHERE lease IN (SELECT id FROM leases WHERE deadline <= ?)",
                               (now,))
                    db.execute("DELETE FROM leases WHERE deadline <= ?", (now,))
                    result = work(db)
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise NamingError(f"name server storage {self.path!r} failed: {exc}") from None
            return result

    def _read(self, sql: str, params: tuple = ()) -> list:
        with self._lock:
            try:
                return self._db.execute(sql, (time.time(), *params)).fetchall()
            except sqlite3.Error as exc:
                raise NamingError(f"name server storage {self.path!r} failed: {exc}") from None

    @staticmethod
    def _meta_out(text: str) -> frozenset[str]:
        return frozenset(json.loads(text))

    @staticmethod
    def _meta_in(metadata: frozenset[str]) -> str:
        return json.dumps(sorted(metadata))

    # ---- Storage ----------------------------------------------------------------------------------

    def get(self, name: str) -> Entry | None:
        rows = self._read(f"SELECT uri, metadata FROM registrations WHERE {_LIVE} AND name=? ORDER BY pos LIMIT 1",
                          (name,))
        if not rows:
            return None
        return rows[0][0], self._meta_out(rows[0][1])

    def _write(self, name: str, uri: str, metadata: frozenset[str], lease: str | None, mode: str) -> bool:
        meta = self._meta_in(metadata)

        def work(db: sqlite3.Connection) -> bool:
            if lease is not None and db.execute("SELECT 1 FROM leases WHERE id=?", (lease,)).fetchone() is None:
                raise NamingError(f"unknown or expired lease {lease!r}: take a new lease and register again")
            exists = db.execute("SELECT 1 FROM registrations WHERE name=? LIMIT 1", (name,)).fetchone() is not None
            if mode == "absent" and exists:
                return False
            if mode == "replica":
                db.execute("DELETE FROM registrations WHERE name=? AND uri=?", (name, uri))
                db.execute("UPDATE registrations SET metadata=? WHERE name=?", (meta, name))
            else:
                db.execute("DELETE FROM registrations WHERE name=?", (name,))
            db.execute("INSERT INTO registrations (name, uri, metadata, lease) VALUES (?,?,?,?)",
                       (name, uri, meta, lease))
            return True

        return self._transaction(work)

    def put(self, name: str, uri: str, metadata: frozenset[str]) -> None:
        self._write(name, uri, metadata, None, "replace")

    def put_if_absent(self, name: str, uri: str, metadata: frozenset[str]) -> bool:
        return self._write(name, uri, metadata, None, "absent")

    def set_metadata(self, name: str, metadata: frozenset[str]) -> bool:
        return self._transaction(lambda db: db.execute("UPDATE registrations SET metadata=? WHERE name=?",
                                                       (self._meta_in(metadata), name)).rowcount > 0)

    def remove(self, names: Iterable[str]) -> int:
        names = list(names)
        if not names:
            return 0

        def work(db: sqlite3.Connection) -> int:
            removed = 0
            for name in names:
                removed += db.execute("DELETE FROM registrations WHERE name=?", (name,)).rowcount > 0
            return removed

        return self._transaction(work)

    def items(self) -> dict[str, Entry]:
        found: dict[str, Entry] = {}
        for name, uri, meta in self._read(f"SELECT name, uri, metadata FROM registrations WHERE {_LIVE} ORDER BY pos"):
            if name not in found:
                found[name] = (uri, self._meta_out(meta))
        return found

    def count(self) -> int:
        return self._read(f"SELECT count(DISTINCT name) FROM registrations WHERE {_LIVE}")[0][0]

    # ---- Leases and Replicated ----------------------------------------------------------------

    def grant_lease(self, ttl: float) -> str:
        lease = uuid.uuid4().hex
        self._transaction(lambda db: db.execute("INSERT INTO leases (id, deadline, ttl) VALUES (?,?,?)",
                                                (lease, time.time() + ttl, ttl)))
        return lease

    def put_leased(self, name: str, uri: str, metadata: frozenset[str], lease: str | None,
                   mode: str = "replace") -> bool:
        return self._write(name, uri, metadata, lease, mode)

    def renew_lease(self, lease: str) -> bool:
        return self._transaction(lambda db: db.execute("UPDATE leases SET deadline=? + ttl WHERE id=?",
                                                       (time.time(), lease)).rowcount > 0)

    def revoke_lease(self, lease: str) -> int:
        def work(db: sqlite3.Connection) -> int:
            removed = db.execute("DELETE FROM registrations WHERE lease=?", (lease,)).rowcount
            db.execute("DELETE FROM leases WHERE id=?", (lease,))
            return removed

        return self._transaction(work)

    def replicas(self, name: str) -> Replicas | None:
        rows = self._read(f"SELECT uri, metadata FROM registrations WHERE {_LIVE} AND name=? ORDER BY pos", (name,))
        if not rows:
            return None
        return tuple(row[0] for row in rows), self._meta_out(rows[-1][1])

    def remove_uri(self, name: str, uri: str) -> bool:
        return self._transaction(lambda db: db.execute("DELETE FROM registrations WHERE name=? AND uri=?",
                                                       (name, uri)).rowcount > 0)

    def close(self) -> None:
        with self._lock:
            self._db.close()
