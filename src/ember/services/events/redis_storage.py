"""The event service's ``redis://`` storage: several ``ember events`` processes share subjects.

Every event gets its ``seq`` from one Redis counter, so the numbering is global across all
processes, and it is written twice in one Lua script (atomic on the server): to the stream
of its subject (``P:subject:NAME``, trimmed to ``EVENTS_KEEP`` entries, for replay with
``since``) and to the shared stream ``P:all`` (trimmed to 10,000 entries) that every process
follows with ``XREAD BLOCK`` to deliver what the others published to its own subscribers.
Stream entry ids are ``SEQ-0``, so ``since=seq`` is an ``XRANGE`` from ``seq + 1``.
Needs the optional extra ``ember-rpc[redis]`` (redis-py). Specs:
``redis://[:PASSWORD@]HOST:PORT/DB[?prefix=NAME]`` and ``rediss://...`` (default prefix
``ember:events``).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from ...errors import PyroError, SerializeError
from ...serializers import get as get_serializer
from ...uri import split_store_url
from .base import Event, EventStorage

__all__ = ["RedisEventStorage"]

log = logging.getLogger("ember.events")
_TIMEOUT = 2.0
_BLOCK_MS = 500  # one XREAD waits at most this long, so close() is quick
_ALL_KEEP = 10_000

# KEYS: seq counter, shared stream, subjects set; ARGV: prefix, origin, keep, all-keep, then per event
# subject, time, message. Returns the first seq given out.
_APPEND = """
local n = (#ARGV - 4) / 3
local last = redis.call('INCRBY', KEYS[1], n)
local first = last - n + 1
for i = 0, n - 1 do
  local subject, t, message = ARGV[5 + 3 * i], ARGV[6 + 3 * i], ARGV[7 + 3 * i]
  local id = tostring(first + i) .. '-0'
  redis.call('XADD', ARGV[1] .. ':subject:' .. subject, 'MAXLEN', ARGV[3], id, 's', subject, 't', t, 'm', message)
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], id, 's', subject, 't', t, 'm', message, 'o', ARGV[2])
  redis.call('SADD', KEYS[3], subject)
end
return first
"""


class RedisEventStorage(EventStorage):
    """Events in Redis Streams, shared by every event service using the same URL and prefix."""

    shared = True

    def __init__(self, url: str, keep: int = 1000, keep_seconds: float = 0.0) -> None:
        try:
            import redis  # the optional extra ember-rpc[redis]
        except ImportError as exc:
            raise PyroError(f"event storage {url}: needs redis-py: pip install 'ember-rpc[redis]' ({exc})") from None
        self._errors: Any = redis.RedisError
        plain, self.prefix, self.url = split_store_url(url, "ember:events")
        self.keep = max(1, int(keep))
        self.keep_seconds = float(keep_seconds)
        self.description = f"redis {self.url} (prefix {self.prefix}), last {self.keep} events per subject"
        self._ser = get_serializer("msgpack", extended=True)
        self._origin = uuid.uuid4().hex
        self._seq_key, self._all_key, self._subjects_key = (f"{self.prefix}:seq", f"{self.prefix}:all",
                                                            f"{self.prefix}:subjects")
        options = dict(socket_timeout=_TIMEOUT, socket_connect_timeout=_TIMEOUT, health_check_interval=0)
        try:
            self._redis: Any = redis.Redis.from_url(plain, **options)
            self._redis.ping()
        except (ValueError, TypeError) as exc:
            raise PyroError(f"invalid Redis URL {self.url!r} for the event storage: {exc}") from None
        except redis.RedisError as exc:
            raise PyroError(f"cannot use the event storage {self.url}: {exc}") from None
        self._follower_client: Any = redis.Redis.from_url(plain, **options)
        self._append = self._redis.register_script(_APPEND)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False

    def _failed(self, exc: Exception) -> PyroError:
        return PyroError(f"event storage {self.url} failed: {exc}")

    def last_seq(self) -> int:
        try:
            value = self._redis.get(self._seq_key)
        except self._errors as exc:
            raise self._failed(exc) from None
        return int(value or 0)

    def append(self, events: list[Event]) -> None:
        """Store the events and number them (each event's ``seq`` is set from the shared counter)."""
        if not events:
            return
        args: list[Any] = [self.prefix, self._origin, self.keep, _ALL_KEEP]
        try:
            for e in events:
                args += [e["subject"], repr(e["time"]), self._ser.dumps(e["message"])]
        except SerializeError as exc:
            raise SerializeError(f"the message cannot be stored: {exc}") from None
        try:
            first = int(self._append(keys=[self._seq_key, self._all_key, self._subjects_key], args=args))
        except self._errors as exc:
            raise self._failed(exc) from None
        for i, e in enumerate(events):
            e["seq"] = first + i

    def _event(self, entry_id: bytes, fields: dict) -> Event:
        return {"subject": fields[b"s"].decode(), "message": self._ser.loads(fields[b"m"]),
                "time": float(fields[b"t"]), "seq": int(entry_id.split(b"-")[0])}

    def since(self, seq: int, match: Callable[[str], bool]) -> list[Event]:
        oldest = time.time() - self.keep_seconds if self.keep_seconds > 0 else None
        found: list[Event] = []
        try:
            subjects = [s.decode() for s in self._redis.smembers(self._subjects_key)]
            for subject in subjects:
                if not match(subject):
                    continue
                for entry_id, fields in self._redis.xrange(f"{self.prefix}:subject:{subject}", f"{seq + 1}-0", "+"):
                    event = self._event(entry_id, fields)
                    if oldest is None or event["time"] >= oldest:
                        found.append(event)
        except self._errors as exc:
            raise self._failed(exc) from None
        found.sort(key=lambda e: e["seq"])
        return found

    def follow(self, deliver: Callable[[list[Event]], None], after: int) -> None:
        """Call ``deliver(events)`` from a thread with every event other processes publish
        after seq ``after`` (this process's own events are delivered by the service itself)."""
        self._thread = threading.Thread(target=self._follow, args=(deliver, after), name="ember-events-redis",
                                        daemon=True)
        self._thread.start()

    def _follow(self, deliver: Callable[[list[Event]], None], after: int) -> None:
        last = f"{after}-0"
        while not self._stop.is_set():
            try:
                answer = self._follower_client.xread({self._all_key: last}, count=500, block=_BLOCK_MS)
            except self._errors as exc:
                log.warning("event storage %s: cannot follow the shared stream (retrying): %s", self.url, exc)
                self._stop.wait(0.5)
                continue
            for _key, entries in answer or ():
                batch = []
                for entry_id, fields in entries:
                    last = entry_id.decode()
                    if fields.get(b"o", b"").decode() != self._origin:
                        batch.append(self._event(entry_id, fields))
                if batch:
                    try:
                        deliver(batch)
                    except Exception:
                        log.exception("event storage %s: delivering events failed", self.url)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=_TIMEOUT + 1)
        self._follower_client.close()
        self._redis.close()
