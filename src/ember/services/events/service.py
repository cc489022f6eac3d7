"""The event service object, ``Pyro.EventService``: publish/subscribe over subjects.

Remote interface (the names any Pyro5 program uses through a plain proxy)::

    publish(subject, message)                  # subject: a string or a list of strings; may be oneway
    subscribe(subjects, subscriber, since=None)
    subscribe_match(patterns, subscriber, since=None)   # regular expressions, re.match on the subject
    unsubscribe(subjects_or_patterns, subscriber)
    publish_many(items)                        # Ember's: [(subject, message), ...] in one call
    stats()                                    # counters, per subscriber

Each published event becomes the plain dict ``{"subject", "message", "time", "seq"}``;
``seq`` numbers every event of the service, in publish order. Delivery is per subscriber:
each has a bounded queue (``EVENTS_QUEUE_SIZE``) and one sender thread that calls
``subscriber.event(event)`` oneway (or ``events([...])`` for a subscriber that exposes
``events``), so one slow subscriber never holds up another. See docs/events.md.
"""

from __future__ import annotations

import itertools
import logging
import re
import threading
import time
from collections import deque
from typing import Any

from ...client import Proxy
from ...config import Config
from ...config import config as global_config
from ...errors import PyroError, SerializeError
from ...server import expose
from .storage import Event, EventStorage, open_event_storage

__all__ = ["EVENTSERVICE_NAME", "EventService"]

log = logging.getLogger("ember.services.events")
EVENTSERVICE_NAME = "Pyro.EventService"
POLICIES = ("drop-oldest", "block")
_ids = itertools.count(1)


def _names(value: Any, what: str) -> list[str]:
    """A subject (or pattern) or a list of them, as a non-empty list of non-empty strings."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple, set, frozenset)) or not items:
        raise PyroError(f"invalid {what}: expected a string or a non-empty list of strings, got {value!r}")
    for item in items:
        if not isinstance(item, str) or not item:
            raise PyroError(f"invalid {what} {item!r}: must be a non-empty string")
    return list(items)


def _since(since: Any) -> int | None:
    if since is None:
        return None
    if isinstance(since, bool) or not isinstance(since, int) or since < 0:
        raise PyroError(f"invalid since={since!r}: must be a sequence number (an int >= 0) or None")
    return since


def _check_subscriber(subscriber: Any) -> Proxy:
    if not isinstance(subscriber, Proxy):
        raise PyroError(f"invalid subscriber: expected a proxy to an object that exposes event(event), got "
                        f"{type(subscriber).__name__} (pass the registered object itself, or a proxy to it)")
    return subscriber


class _Subscription:
    """One subscriber: what it wants, its bounded queue, its sender thread and its counters."""

    def __init__(self, service: EventService, proxy: Proxy, key: str) -> None:
        cfg = service.config
        self.service = service
        self.key = key
        self.proxy = proxy
        proxy._timeout = cfg.EVENTS_TIMEOUT or None
        proxy._oneway.update(("event", "events"))
        self.subjects: set[str] = set()
        self.patterns: dict[str, re.Pattern] = {}
        self.maxsize = max(1, cfg.EVENTS_QUEUE_SIZE)
        self.block = cfg.EVENTS_QUEUE_POLICY == "block"
        self.batch_size = max(1, cfg.EVENTS_BATCH_SIZE)
        self.max_failures = max(1, cfg.EVENTS_MAX_FAILURES)
        self.linger = max(0.0, cfg.EVENTS_LINGER)
        self.items: deque[Event] = deque()  # live events, bounded
        self.replay: deque[Event] = deque()  # replayed events, sent first, bounded by what the store keeps
        self.cond = threading.Condition(threading.Lock())
        self.waiting = False  # the sender sleeps until an event arrives
        self.blocked = 0  # publishers waiting for room (policy "block")
        self.closed = False
        self.high = service._seq  # the highest seq this subscriber has been queued
        self.delivered = self.dropped = self.failed = self.failures = 0
        self.batching: bool | None = None
        self.thread = threading.Thread(target=self._run, name=f"ember-events-sender-{next(_ids)}", daemon=True)

    def matches(self, subject: str) -> bool:
        return subject in self.subjects or any(p.match(subject) for p in self.patterns.values())

    # ---- the queue (put: service lock held; take: sender thread) ---------------------------

    def put(self, event: Event) -> None:
        with self.cond:
            if self.closed:
                return
            if len(self.items) >= self.maxsize:
                if self.block:
                    self.blocked += 1
                    while len(self.items) >= self.maxsize and not self.closed:
                        self.cond.wait()
                    self.blocked -= 1
                    if self.closed:
                        return
                else:
                    self.items.popleft()
                    self.dropped += 1
            self.items.append(event)
            if event["seq"] > self.high:
                self.high = event["seq"]
            if self.waiting:
                self.cond.notify_all()

    def put_replayed(self, events: list[Event]) -> None:
        with self.cond:
            if not self.closed and events:
                self.replay.extend(events)
                if self.waiting:
                    self.cond.notify_all()

    def _take(self, limit: int) -> list[Event] | None:
        with self.cond:
            while not self.items and not self.replay and not self.closed:
                self.waiting = True
                self.cond.wait()
                self.waiting = False
            if self.closed:
                return None
            items = self.replay or self.items
            batch = [items.popleft() for _ in range(min(limit, len(items)))]
            if self.blocked:
                self.cond.notify_all()
            return batch

    def _more(self, limit: int) -> list[Event]:
        """Events that arrived meanwhile, without waiting (to fill a batch)."""
        with self.cond:
            items = self.replay or self.items
            batch = [items.popleft() for _ in range(min(limit, len(items)))]
            if batch and self.blocked:
                self.cond.notify_all()
            return batch

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.items.clear()
            self.replay.clear()
            self.cond.notify_all()

    # ---- the sender ----------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            batch = self._take(self.batch_size if self.batching is not False else 1)
            if batch is None:
                return
            if self.linger and self.batching and len(batch) < self.batch_size:
                time.sleep(self.linger)  # let a few more events come, to send them in one call
                batch.extend(self._more(self.batch_size - len(batch)))
            while batch and not self.closed:
                sent = 0
                try:
                    if self.batching is None:
                        self.batching = "events" in dir(self.proxy)  # it says it takes batches by exposing events()
                    if self.batching:
                        self.proxy.events(batch)
                        sent = len(batch)
                    else:
                        for event in batch:
                            self.proxy.event(event)
                            sent += 1
                except Exception as exc:
                    if not self.batching:
                        self.delivered += sent
                        del batch[:sent]
                    if not self._failed(exc, batch):
                        return
                    if isinstance(exc, SerializeError):
                        batch = []
                else:
                    self.delivered += sent
                    self.failures = 0
                    batch = []

    def _failed(self, exc: Exception, batch: list[Event]) -> bool:
        """Count a failed call; False when the subscriber is to be dropped."""
        self.failures += 1
        if isinstance(exc, SerializeError):
            self.failed += len(batch)
            log.warning("event subscriber %s: %d event(s) could not be serialized for it: %s", self.key, len(batch), exc)
            batch = []
        if self.failures >= self.max_failures:
            self.failed += len(batch) + len(self.items) + len(self.replay)
            log.warning("event subscriber %s unsubscribed after %d failed deliveries in a row: %s: %s",
                        self.key, self.failures, type(exc).__name__, exc)
            self.service._remove(self)
            return False
        self.proxy._release()
        if not isinstance(exc, SerializeError):
            with self.cond:  # back off a little, and wake at once on close
                self.cond.wait_for(lambda: self.closed, timeout=min(0.05 * 2 ** self.failures, 1.0))
        return not self.closed

    def stats(self) -> dict[str, Any]:
        return {"subjects": sorted(self.subjects), "patterns": sorted(self.patterns),
                "queued": len(self.items) + len(self.replay), "delivered": self.delivered, "dropped": self.dropped,
                "failed": self.failed, "failures": self.failures, "batching": self.batching}


class EventService:
    """Publish/subscribe, served as ``Pyro.EventService`` (see the module docstring).

    Only the remote interface is exposed; :meth:`close` is for the program that runs it.

    ``storage`` is ``None``/``"memory"``, ``"sqlite:PATH"`` or an
    :class:`~ember.services.events.storage.EventStorage`; it keeps the last
    ``EVENTS_KEEP`` events per subject for replay. ``config`` defaults to the process config
    (``EVENTS_*`` items).
    """

    def __init__(self, storage: str | EventStorage | None = None, *, config: Config | None = None) -> None:
        self.config = cfg = config or global_config
        if cfg.EVENTS_QUEUE_POLICY not in POLICIES:
            raise PyroError(f"invalid EVENTS_QUEUE_POLICY {cfg.EVENTS_QUEUE_POLICY!r}: use one of {', '.join(POLICIES)}")
        self.storage = open_event_storage(storage, cfg.EVENTS_KEEP, cfg.EVENTS_KEEP_SECONDS)
        self._lock = threading.Lock()
        self._seq = self.storage.last_seq()
        self._subs: dict[str, _Subscription] = {}
        self._targets: dict[str, tuple[_Subscription, ...]] = {}  # subject -> its subscribers (cache)
        self._closed = False
        self.published = 0
        if self.storage.shared:  # other event services publish into the same store: deliver theirs too
            self.storage.follow(self._deliver_shared, self._seq)  # type: ignore[attr-defined]

    # ---- publishing ------------------------------------------------------------------------

    @expose
    def publish(self, subject: str | list[str], message: Any) -> None:
        """Publish ``message`` on a subject (or on each of a list of subjects). Returns nothing."""
        self._publish([(s, message) for s in _names(subject, "subject")])

    @expose
    def publish_many(self, items: list) -> None:
        """Publish several ``(subject, message)`` pairs in one call (and one storage transaction)."""
        if not isinstance(items, (list, tuple)):
            raise PyroError(f"invalid items: expected a list of (subject, message) pairs, got {type(items).__name__}")
        pairs: list[tuple[str, Any]] = []
        for item in items:
            if not isinstance(item, (list, tuple)) or len(item) != 2:
                raise PyroError(f"invalid item {item!r}: expected a (subject, message) pair")
            pairs.extend((s, item[1]) for s in _names(item[0], "subject"))
        self._publish(pairs)

    def _publish(self, pairs: list[tuple[str, Any]]) -> None:
        now = time.time()
        with self._lock:
            if self._closed:
                raise PyroError("the event service is shutting down")
            first = self._seq
            events = [{"subject": s, "message": m, "time": now, "seq": first + i}
                      for i, (s, m) in enumerate(pairs, 1)]
            self.storage.append(events)  # stored (committed) before anyone sees it; a shared store numbers them
            self._seq = max(self._seq, events[-1]["seq"])
            self.published += len(events)
            targets = self._targets
            for event in events:
                subs = targets.get(event["subject"])
                if subs is None:
                    subs = self._targets_for(event["subject"])
                for sub in subs:
                    sub.put(event)

    def _deliver_shared(self, events: list[Event]) -> None:
        """Events another event service published into the shared store: to our subscribers."""
        with self._lock:
            if self._closed:
                return
            self._seq = max(self._seq, events[-1]["seq"])
            for event in events:
                subs = self._targets.get(event["subject"])
                if subs is None:
                    subs = self._targets_for(event["subject"])
                for sub in subs:
                    sub.put(event)

    def _targets_for(self, subject: str) -> tuple[_Subscription, ...]:
        subs = tuple(s for s in self._subs.values() if s.matches(subject))
        if len(self._targets) > 10_000:
            self._targets.clear()
        self._targets[subject] = subs
        return subs

    # ---- subscribing -----------------------------------------------------------------------

    @expose
    def subscribe(self, subjects: str | list[str], subscriber: Any, since: int | None = None) -> None:
        """Deliver events of these exact subjects to ``subscriber`` (a proxy exposing ``event(event)``).

        With ``since``, first replay the kept events of these subjects numbered above it,
        each once, in order, before any later event.
        """
        names = _names(subjects, "subject")
        self._subscribe(_check_subscriber(subscriber), names, {}, _since(since))

    @expose
    def subscribe_match(self, patterns: str | list[str], subscriber: Any, since: int | None = None) -> None:
        """Deliver events whose subject matches one of these regular expressions (from the start)."""
        compiled = {}
        for pattern in _names(patterns, "pattern"):
            try:
                compiled[pattern] = re.compile(pattern)
            except re.error as exc:
                raise PyroError(f"invalid pattern {pattern!r}: {exc} (nothing was subscribed)") from None
        self._subscribe(_check_subscriber(subscriber), [], compiled, _since(since))

    def _subscribe(self, proxy: Proxy, subjects: list[str], patterns: dict[str, re.Pattern], since: int | None) -> None:
        key = str(proxy._pyroUri)
        with self._lock:
            if self._closed:
                raise PyroError("the event service is shutting down")
            sub = self._subs.get(key)
            new = sub is None
            if sub is None:
                sub = _Subscription(self, proxy, key)
            old_subjects, old_patterns = set(sub.subjects), list(sub.patterns.values())
            sub.subjects.update(subjects)
            sub.patterns.update(patterns)
            if new:
                self._subs[key] = sub
                sub.thread.start()
            self._targets.clear()
            if since is not None:
                self._replay(sub, since, new, subjects, patterns, old_subjects, old_patterns)
        log.debug("subscribed %s to %s", key, subjects or list(patterns))

    def _replay(self, sub: _Subscription, since: int, new: bool, subjects: list[str], patterns: dict[str, re.Pattern],
                old_subjects: set[str], old_patterns: list[re.Pattern]) -> None:
        wanted = set(subjects)
        compiled = list(patterns.values())

        def match(subject: str) -> bool:
            return subject in wanted or any(p.match(subject) for p in compiled)

        def had(subject: str) -> bool:
            return subject in old_subjects or any(p.match(subject) for p in old_patterns)

        high = sub.high
        sub.put_replayed([e for e in self.storage.since(since, match)
                          if new or e["seq"] > high or not had(e["subject"])])  # else it was queued already
        sub.high = max(sub.high, self._seq)  # everything up to here that it wants is now queued

    @expose
    def unsubscribe(self, subjects_or_patterns: str | list[str], subscriber: Any) -> None:
        """Stop delivering these subjects or patterns; a subscriber left with none is forgotten."""
        names = _names(subjects_or_patterns, "subject or pattern")
        key = str(_check_subscriber(subscriber)._pyroUri)
        with self._lock:
            sub = self._subs.get(key)
            if sub is None:
                return
            for name in names:
                sub.subjects.discard(name)
                sub.patterns.pop(name, None)
            self._targets.clear()
            empty = not sub.subjects and not sub.patterns
            if empty:
                del self._subs[key]
        if empty:
            sub.close()

    def _remove(self, sub: _Subscription) -> None:
        """Drop a subscriber (from its own sender thread, after too many failures)."""
        sub.close()  # first: a publisher blocked on its full queue lets go of the lock
        with self._lock:
            if self._subs.get(sub.key) is sub:
                del self._subs[sub.key]
                self._targets.clear()

    # ---- watching ----------------------------------------------------------------------------

    @expose
    def stats(self) -> dict[str, Any]:
        """Counters: events published, the last seq, the storage, and per subscriber (by URI) its
        subjects, patterns, queue length, delivered, dropped (queue full), failed, failures in a row."""
        subs = list(self._subs.values())
        return {"published": self.published, "seq": self._seq, "storage": self.storage.description,
                "policy": self.config.EVENTS_QUEUE_POLICY, "queue_size": self.config.EVENTS_QUEUE_SIZE,
                "subscribers": {s.key: s.stats() for s in subs}}

    @expose
    def ping(self) -> None:
        """Answer, to show the service is alive."""

    def close(self, timeout: float = 5.0) -> None:
        """Stop every sender and close the storage. Idempotent (not remote)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            subs = list(self._subs.values())
            self._subs.clear()
            self._targets.clear()
        for sub in subs:
            sub.close()
        deadline = time.monotonic() + timeout
        for sub in subs:
            if sub.thread.is_alive() and sub.thread is not threading.current_thread():
                sub.thread.join(max(0.0, deadline - time.monotonic()))
        self.storage.close()
