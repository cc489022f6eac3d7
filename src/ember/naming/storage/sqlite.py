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
from collections.abc import Iterable

from ...errors import NamingError
from . import Entry, Storage

__all__ = ["SqlStorage"]

_SCHEMA_VERSION = 1


class SqlStorage(Storage):
    """Registrations in an SQLite file that survive restarts.

    WAL journal, ``synchronous=FULL`` and one transaction per change: once a call
    returned, its change is on disk. A file that is not an SQLite database (or one of
    another schema) raises :class:`NamingError` at start-up naming the file.
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
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            tables = {row[0] for row in self._db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if version == 0 and not tables:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.execute("CREATE TABLE registrations (name TEXT PRIMARY KEY, uri TEXT NOT NULL,"
                                 " metadata TEXT NOT NULL)")
                self._db.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")
                self._db.execute("COMMIT")
            elif version != _SCHEMA_VERSION or "registrations" not in tables:
                raise NamingError(f"name server storage file {self.path!r} is an SQLite database but not one "
                                  f"written by Ember's name server (schema version {version}); "
                                  "use another file")
            self._db.execute("SELECT count(*) FROM registrations").fetchone()
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise NamingError(f"name server storage file {self.path!r} is not a usable SQLite database ({exc}); "
                              "move it away or choose another file") from None
        except BaseException:
            self._db.close()
            raise

    def _write(self, sql: str, params: tuple) -> int:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    cur = self._db.execute(sql, params)
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise NamingError(f"name server storage {self.path!r} failed: {exc}") from None
            return cur.rowcount

    def _read(self, sql: str, params: tuple = ()) -> list:
        with self._lock:
            try:
                return self._db.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise NamingError(f"name server storage {self.path!r} failed: {exc}") from None

    @staticmethod
    def _meta_out(text: str) -> frozenset[str]:
        return frozenset(json.loads(text))

    @staticmethod
    def _meta_in(metadata: frozenset[str]) -> str:
        return json.dumps(sorted(metadata))

    def get(self, name: str) -> Entry | None:
        rows = self._read("SELECT uri, metadata FROM registrations WHERE name=?", (name,))
        if not rows:
            return None
        return rows[0][0], self._meta_out(rows[0][1])

    def put(self, name: str, uri: str, metadata: frozenset[str]) -> None:
        self._write("INSERT OR REPLACE INTO registrations(name, uri, metadata) VALUES (?,?,?)",
                    (name, uri, self._meta_in(metadata)))

    def put_if_absent(self, name: str, uri: str, metadata: frozenset[str]) -> bool:
        return self._write("INSERT OR IGNORE INTO registrations(name, uri, metadata) VALUES (?,?,?)",
                           (name, uri, self._meta_in(metadata))) == 1

    def set_metadata(self, name: str, metadata: frozenset[str]) -> bool:
        return self._write("UPDATE registrations SET metadata=? WHERE name=?", (self._meta_in(metadata), name)) == 1

    def remove(self, names: Iterable[str]) -> int:
        names = list(names)
        if not names:
            return 0
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                removed = 0
                for name in names:
                    removed += self._db.execute("DELETE FROM registrations WHERE name=?", (name,)).rowcount
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise NamingError(f"name server storage {self.path!r} failed: {exc}") from None
        return removed

    def items(self) -> dict[str, Entry]:
        return {name: (uri, self._meta_out(meta))
                for name, uri, meta in self._read("SELECT name, uri, metadata FROM registrations")}

    def count(self) -> int:
        return self._read("SELECT count(*) FROM registrations")[0][0]

    def close(self) -> None:
        with self._lock:
            self._db.close()


