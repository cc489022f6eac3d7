"""Where the event service keeps recent events, for replay (``subscribe(..., since=seq)``).

Three back-ends with one small interface: :class:`MemoryEventStorage` (the default: replay
works while the service runs), :class:`SqliteEventStorage` (``sqlite:PATH``: events and
the sequence counter survive a restart, a crash or ``kill -9``) and
:class:`~ember.services.events.redis_storage.RedisEventStorage` (``redis://...``: several
event services share subjects and one numbering). All keep the last ``keep`` events of
each subject, and with ``keep_seconds`` > 0 forget older events too.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable

from ...errors import PyroError, SerializeError
from ...serializers import get as get_serializer
from .base import Event, EventStorage
from .redis_storage import RedisEventStorage

__all__ = ["Event", "EventStorage", "MemoryEventStorage", "RedisEventStorage", "SqliteEventStorage", "open_event_storage"]

class MemoryEventStorage(EventStorage):
    """The last ``keep`` events per subject in memory (lost when the service stops)."""

    def __init__(self, keep: int = 1000, keep_seconds: float = 0.0) -> None:
        self.keep = max(0, int(keep))
        self.keep_seconds = float(keep_seconds)
        self._seq = 0
        self._by_subject: dict[str, deque[Event]] = {}
        self.description = f"memory, last {self.keep} events per subject"

    def last_seq(self) -> int:
        return self._seq

    def append(self, events: list[Event]) -> None:
        if events:
            self._seq = events[-1]["seq"]
        if not self.keep:
            return
        by_subject = self._by_subject
        for event in events:
            kept = by_subject.get(event["subject"])
            if kept is None:
                kept = by_subject[event["subject"]] = deque(maxlen=self.keep)
            kept.append(event)

    def since(self, seq: int, match: Callable[[str], bool]) -> list[Event]:
        oldest = time.time() - self.keep_seconds if self.keep_seconds > 0 else None
        found = [e for subject, kept in list(self._by_subject.items()) if match(subject)
                 for e in list(kept) if e["seq"] > seq and (oldest is None or e["time"] >= oldest)]
        found.sort(key=lambda e: e["seq"])
        return found


_SCHEMA = """
CREATE TABLE IF NOT EXISTS ember_events (seq INTEGER PRIMARY KEY, subject TEXT NOT NULL, time REAL NOT NULL,
                                         message BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS ember_events_by_subject ON ember_events (subject, seq);
CREATE TABLE IF NOT EXISTS ember_events_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


class SqliteEventStorage(EventStorage):
    """The last ``keep`` events per subject in an SQLite file, and the sequence counter.

    WAL journal, one transaction per :meth:`append` (so per ``publish`` call), committed
    before the publish returns. ``synchronous=NORMAL`` in WAL mode survives the process
    being killed (``kill -9``) at any moment; pass ``synchronous="FULL"`` to survive a power
    loss too, at the price of an fsync per publish. Messages are stored in msgpack with
    Ember's type tags, so they come back as they were published.
    """

    def __init__(self, path: str | os.PathLike, keep: int = 1000, keep_seconds: float = 0.0,
                 synchronous: str = "NORMAL") -> None:
        self.path = os.fspath(path)
        self.keep = max(0, int(keep))
        self.keep_seconds = float(keep_seconds)
        self._ser = get_serializer("msgpack", extended=True)
        self._lock = threading.Lock()
        self._closed = False
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        except sqlite3.Error as exc:
            raise PyroError(f"event storage {self.path}: cannot open: {exc}") from None
        try:
            tables = {row[0] for row in self._db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if tables and "ember_events" not in tables:
                raise sqlite3.DatabaseError(f"it holds other tables ({', '.join(sorted(tables))})")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={'FULL' if synchronous.upper() == 'FULL' else 'NORMAL'}")
            self._db.executescript(_SCHEMA)
            row = self._db.execute("SELECT value FROM ember_events_meta WHERE key='last_seq'").fetchone()
            self._seq = int(row[0]) if row else 0
            self._counts = dict(self._db.execute("SELECT subject, count(*) FROM ember_events GROUP BY subject"))
        except sqlite3.Error as exc:
            self._db.close()
            raise PyroError(f"event storage {self.path}: not an Ember event database: {exc}") from None
        self._last_expiry = 0.0
        self.description = f"sqlite {self.path}, last {self.keep} events per subject"

    def last_seq(self) -> int:
        return self._seq

    def append(self, events: list[Event]) -> None:
        if not events:
            return
        dumps = self._ser.dumps
        try:
            rows = [(e["seq"], e["subject"], e["time"], dumps(e["message"])) for e in events] if self.keep else []
        except SerializeError as exc:
            raise SerializeError(f"the message cannot be stored: {exc}") from None
        last = events[-1]["seq"]
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                if rows:
                    db.executemany("INSERT INTO ember_events (seq, subject, time, message) VALUES (?, ?, ?, ?)", rows)
                    self._trim({e["subject"] for e in events}, len(rows), events)
                db.execute("INSERT OR REPLACE INTO ember_events_meta (key, value) VALUES ('last_seq', ?)", (last,))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            self._seq = last

    def _trim(self, subjects: Iterable[str], added: int, events: list[Event]) -> None:
        """Forget the oldest events of subjects over their quota (in slices, not on every append)."""
        counts = self._counts
        for e in events:
            counts[e["subject"]] = counts.get(e["subject"], 0) + 1
        slack = max(10, self.keep // 10)
        for subject in subjects:
            if counts[subject] > self.keep + slack:
                self._db.execute(
                    "DELETE FROM ember_events WHERE subject = ? AND seq < (SELECT seq FROM ember_events "
                    "WHERE subject = ? ORDER BY seq DESC LIMIT 1 OFFSET ?)", (subject, subject, self.keep - 1))
                counts[subject] = self.keep
        now = time.time()
        if self.keep_seconds > 0 and now - self._last_expiry > 1.0:
            self._last_expiry = now
            self._db.execute("DELETE FROM ember_events WHERE time < ?", (now - self.keep_seconds,))
            self._counts = dict(self._db.execute("SELECT subject, count(*) FROM ember_events GROUP BY subject"))

    def since(self, seq: int, match: Callable[[str], bool]) -> list[Event]:
        oldest = time.time() - self.keep_seconds if self.keep_seconds > 0 else 0.0
        with self._lock:
            rows = self._db.execute("SELECT seq, subject, time, message FROM ember_events WHERE seq > ? AND time >= ? "
                                    "ORDER BY seq", (seq, oldest)).fetchall()
        loads = self._ser.loads
        return [{"subject": subject, "message": loads(message), "time": t, "seq": s}
                for s, subject, t, message in rows if match(subject)]

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._db.close()


def open_event_storage(spec: str | EventStorage | None = None, keep: int = 1000,
                       keep_seconds: float = 0.0) -> EventStorage:
    """The store for a spec: None or ``memory``, ``sqlite:PATH`` (or ``sql:PATH``),
    ``redis://HOST:PORT/DB`` or ``rediss://...`` (shared by several event services), or a store instance."""
    if isinstance(spec, EventStorage):
        return spec
    if spec is None or spec == "memory":
        return MemoryEventStorage(keep, keep_seconds)
    scheme, sep, path = spec.partition(":")
    if sep and scheme in ("sqlite", "sql"):
        if not path:
            raise PyroError(f"event storage {spec!r} names no file: use 'sqlite:PATH'")
        return SqliteEventStorage(path, keep, keep_seconds)
    if sep and scheme.lower() in ("redis", "rediss"):
        return RedisEventStorage(spec, keep, keep_seconds)
    raise PyroError(f"unknown event storage {spec!r}: use 'memory', 'sqlite:PATH' or 'redis://HOST:PORT/DB'")

