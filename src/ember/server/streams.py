"""Remote iterators: the daemon keeps each streamed iterator under an id and hands out
items on request, within the lifetime and linger limits."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

from ..errors import DaemonError, PyroError

__all__ = ["StreamRegistry"]


class _Stream:
    __slots__ = ("iterator", "conn", "created", "orphaned_at")

    def __init__(self, iterator: Iterator, conn: Any) -> None:
        self.iterator = iterator
        self.conn = conn
        self.created = time.monotonic()
        self.orphaned_at: float | None = None


class StreamRegistry:
    """Streams by id. ``lifetime`` (0 = no limit) bounds a stream's age; ``linger`` is how
    long a stream survives its connection (so a reconnecting proxy can continue)."""

    def __init__(self, lifetime: float, linger: float, per_connection: int = 0) -> None:
        self.lifetime = lifetime
        self.linger = linger
        self.per_connection = per_connection  # most open streams of one connection (0 = no limit)
        self._streams: dict[str, _Stream] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._streams)

    def add(self, iterator: Iterator, conn: Any) -> str:
        """Keep ``iterator`` under a new id; :class:`DaemonError` when ``conn`` has as many open
        streams as it may (ITER_STREAM_MAX): one client cannot pile up iterators without end."""
        stream_id = str(uuid.uuid4())
        limit = self.per_connection
        with self._lock:
            if limit and len(self._streams) >= limit and \
                    sum(1 for st in self._streams.values() if st.conn is conn) >= limit:
                refused = True
            else:
                refused = False
                self._streams[stream_id] = _Stream(iterator, conn)
        if refused:
            close_iterator(iterator)
            raise DaemonError(f"too many open item streams on this connection ({limit}, config ITER_STREAM_MAX): "
                              "iterate streams to their end or close them (remote iterators' close())")
        return stream_id

    def next_item(self, stream_id: str, conn: Any) -> Any:
        """The next item; raises StopIteration at the end (and forgets the stream)."""
        with self._lock:
            stream = self._streams.get(stream_id)
            if stream is not None:
                stream.conn = conn  # a lingering stream is re-bound to whoever asks
                stream.orphaned_at = None
        if stream is None:
            raise PyroError("item stream terminated")
        try:
            return next(stream.iterator)
        except BaseException:
            self.close(stream_id)
            raise

    def close(self, stream_id: str) -> None:
        with self._lock:
            stream = self._streams.pop(stream_id, None)
        if stream is not None:
            close_iterator(stream.iterator)

    def connection_closed(self, conn: Any) -> None:
        """The connection went away: drop its streams now, or mark them to linger."""
        now = time.monotonic()
        dropped = []
        with self._lock:
            for sid, stream in list(self._streams.items()):
                if stream.conn is conn:
                    if self.linger <= 0:
                        dropped.append(self._streams.pop(sid))
                    else:
                        stream.orphaned_at = now
        for stream in dropped:
            close_iterator(stream.iterator)

    def expire(self) -> int:
        """Drop streams past their lifetime or linger time; returns how many."""
        now = time.monotonic()
        dropped = []
        with self._lock:
            for sid, stream in list(self._streams.items()):
                too_old = self.lifetime > 0 and now - stream.created > self.lifetime
                orphaned = stream.orphaned_at is not None and now - stream.orphaned_at > self.linger
                if too_old or orphaned:
                    dropped.append(self._streams.pop(sid))
        for stream in dropped:
            close_iterator(stream.iterator)
        return len(dropped)

    def clear(self) -> None:
        with self._lock:
            streams = list(self._streams.values())
            self._streams.clear()
        for stream in streams:
            close_iterator(stream.iterator)


def close_iterator(it: Any) -> None:
    close = getattr(it, "close", None)
    if close is not None:
        try:
            close()
        except Exception:  # a generator's cleanup failing must not break the daemon
            pass
