"""Publishing and subscribing from Python: :class:`Publisher`, :class:`Subscriber`, :class:`AsyncSubscriber`.

All three find the service through the name server (``PYRONAME:Pyro.EventService``, looked
up again on every reconnect) unless given its URI or a proxy.

>>> with Publisher() as pub:
...     pub.publish("weather.rotterdam", {"temp": 11.5})

>>> class Printer(Subscriber):
...     def event(self, event):
...         print(event["seq"], event["subject"], event["message"])
>>> with Printer() as sub:          # serves in a background thread
...     sub.subscribe("weather.rotterdam")
...     sub.subscribe_match(r"news\\.")
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections import deque
from collections.abc import Iterable
from typing import Any, TypeVar

from ...client import AsyncProxy, Proxy
from ...config import config
from ...errors import PyroError, SecurityError, SerializeError
from ...serializers import get as get_serializer
from ...server import Daemon, expose, oneway
from ...uri import URI
from .service import EVENTSERVICE_NAME

__all__ = ["AsyncSubscriber", "Publisher", "Subscriber"]

_S = TypeVar("_S", bound="Subscriber")  # subclasses get their own type back

log = logging.getLogger("ember.services.events")
_SEEN = 10_000  # how many recent sequence numbers a subscriber remembers to drop duplicates


def _service_uri(service: Any, ns_host: str | None, ns_port: int | None) -> Any:
    """What to build the service proxy from: the given URI/proxy, or ``PYRONAME:Pyro.EventService``."""
    if service is not None:
        return service
    if ns_host is None and ns_port is None:
        return URI(f"PYRONAME:{EVENTSERVICE_NAME}")
    return URI(f"PYRONAME:{EVENTSERVICE_NAME}@{ns_host or config.NS_HOST}:{ns_port or config.NS_PORT}")


def _proxy(cls: type, service: Any, ns_host: str | None, ns_port: int | None) -> Any:
    target = _service_uri(service, ns_host, ns_port)
    if isinstance(target, (Proxy, AsyncProxy)):
        target = target._pyroUri
    return cls(target)


class Publisher:
    """Publishes events to the event service.

    ``service``: its URI or a proxy (default: found through the name server, optionally at
    ``ns_host``/``ns_port``). ``oneway=True`` sends publishes without waiting for the
    service (faster; errors at the service are then not reported, and a publish is not
    known to be stored when the call returns).
    """

    def __init__(self, service: Any = None, *, ns_host: str | None = None, ns_port: int | None = None,
                 oneway: bool = False) -> None:
        self.proxy: Proxy = _proxy(Proxy, service, ns_host, ns_port)
        if oneway:
            self.proxy._oneway.update(("publish", "publish_many"))

    def publish(self, subject: str | list[str], message: Any) -> None:
        """Publish ``message`` on ``subject`` (or on each subject of a list).

        A message the serializer cannot carry raises :class:`~ember.errors.SerializeError`
        here, naming the subject and the message's type.
        """
        try:
            self._check(message)
            self.proxy.publish(subject, message)
        except (SerializeError, SecurityError) as exc:
            raise SerializeError(f"cannot publish on {subject!r}: the message ({type(message).__name__}) cannot be "
                                 f"serialized with {self.proxy._serializer}: {exc}") from None

    def _check(self, message: Any) -> None:
        """Fail here, not at the service, on a message the service could not rebuild.

        Serializers turn unknown objects into ``__class__`` dicts that the receiving side
        refuses; only such messages pay for a trial decode.
        """
        ser = get_serializer(self.proxy._serializer)
        data = ser.dumps(message)
        if b"__class__" in data:
            ser.loads(data)

    def publish_many(self, items: Iterable[tuple[str | list[str], Any]]) -> None:
        """Publish several ``(subject, message)`` pairs in one call: much faster than one call each."""
        pairs = [(subject, message) for subject, message in items]
        try:
            self._check([m for _s, m in pairs])
            self.proxy.publish_many(pairs)
        except (SerializeError, SecurityError) as exc:
            raise SerializeError(f"cannot publish: a message cannot be serialized with {self.proxy._serializer}: "
                                 f"{exc}") from None

    def stats(self) -> dict[str, Any]:
        """The service's counters (see ``EventService.stats``)."""
        return self.proxy.stats()

    def close(self) -> None:
        """Close the connection to the service (the next publish reconnects)."""
        self.proxy._release()

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _SeqFilter:
    """Remembers recent sequence numbers, to hand each event to the application once."""

    def __init__(self) -> None:
        self.last_seq = 0  # the highest seq received
        self._seen: set[int] = set()
        self._order: deque[int] = deque()

    def fresh(self, event: Any) -> bool:
        seq = event.get("seq") if isinstance(event, dict) else None
        if not isinstance(seq, int):
            return True
        if seq in self._seen:
            return False
        self._seen.add(seq)
        self._order.append(seq)
        if len(self._order) > _SEEN:
            self._seen.discard(self._order.popleft())
        if seq > self.last_seq:
            self.last_seq = seq
        return True


class _Receiver:
    """The object the service calls (oneway, in order: the daemon runs oneway calls inline)."""

    def __init__(self, deliver: Any) -> None:
        self._deliver = deliver

    @expose
    @oneway
    def event(self, event: dict) -> None:
        self._deliver([event])

    @expose
    @oneway
    def events(self, events: list) -> None:
        self._deliver(events)


def _receiving_daemon(host: str | None, port: int) -> Daemon:
    cfg = config.copy()
    cfg.ONEWAY_THREADED = False  # run the service's oneway calls in arrival order, on the connection's thread
    return Daemon(host=host, port=port, config=cfg)


class _SubscriberBase:
    def _setup(self, host: str | None, port: int, deliver: Any) -> None:
        self._filter = _SeqFilter()
        self.subjects: set[str] = set()
        self.patterns: set[str] = set()
        self.daemon = _receiving_daemon(host, port)
        self._receiver = _Receiver(deliver)
        self.uri = self.daemon.register(self._receiver)

    @property
    def last_seq(self) -> int:
        """The highest event ``seq`` received: pass it as ``since`` to replay what was missed."""
        return self._filter.last_seq


class Subscriber(_SubscriberBase):
    """Receives events: subclass it and override :meth:`event`.

    It serves a small daemon of its own (``host``/``port``, default loopback and any free
    port) to which the service sends events, in publish order, one call at a time: while
    :meth:`event` runs, later events wait (in this subscriber's queue at the service). Run
    it in the foreground with :meth:`listen`, in a background thread with :meth:`start`,
    or as a context manager (``with MySubscriber() as sub: ...``). Each event is handed to
    :meth:`event` once, even when replayed.
    """

    def __init__(self, service: Any = None, *, ns_host: str | None = None, ns_port: int | None = None,
                 host: str | None = None, port: int = 0) -> None:
        self.service: Proxy = _proxy(Proxy, service, ns_host, ns_port)
        self._setup(host, port, self._deliver)
        self._closed = False

    def event(self, event: dict) -> None:
        """Called for each event: ``{"subject": str, "message": ..., "time": float, "seq": int}``."""

    def _deliver(self, events: list) -> None:
        fresh = self._filter.fresh
        for event in events:
            if fresh(event):
                try:
                    self.event(event)
                except Exception:
                    log.exception("%s.event failed on event %r", type(self).__name__, event.get("seq"))

    def subscribe(self, *subjects: str, since: int | None = None) -> None:
        """Receive events of these exact subjects; ``since``: first replay kept events numbered above it."""
        self.service.subscribe(list(subjects), self._receiver, since=since)
        self.subjects.update(subjects)

    def subscribe_match(self, *patterns: str, since: int | None = None) -> None:
        """Receive events whose subject matches one of these regular expressions (``re.match``)."""
        self.service.subscribe_match(list(patterns), self._receiver, since=since)
        self.patterns.update(patterns)

    def unsubscribe(self, *subjects_or_patterns: str) -> None:
        """Stop receiving these subjects or patterns (all of them when none are given)."""
        names = list(subjects_or_patterns) or sorted(self.subjects | self.patterns)
        if names:
            self.service.unsubscribe(names, self._receiver)
        self.subjects.difference_update(names)
        self.patterns.difference_update(names)

    def resubscribe(self) -> None:
        """Subscribe again to everything, replaying what was missed since :attr:`last_seq`.

        For after the service restarted (with ``sqlite:`` storage nothing published in
        between is lost).
        """
        self.service._release()
        if self.subjects:
            self.service.subscribe(sorted(self.subjects), self._receiver, since=self.last_seq)
        if self.patterns:
            self.service.subscribe_match(sorted(self.patterns), self._receiver, since=self.last_seq)

    def listen(self) -> None:
        """Serve in this thread until :meth:`close` (from another thread or :meth:`event`) or Ctrl-C."""
        try:
            self.daemon.request_loop()
        except KeyboardInterrupt:
            pass

    def start(self: _S) -> _S:
        """Serve in a background thread; returns self."""
        self.daemon.start()
        return self

    def close(self) -> None:
        """Unsubscribe everything (if the service is reachable) and stop serving. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            if self.subjects or self.patterns:
                self.service._timeout = 3.0
                self.unsubscribe()
        except PyroError as exc:
            log.debug("could not unsubscribe %s: %s", self.uri, exc)
        finally:
            self.service._release()
            self.daemon.shutdown()

    stop = close

    def __enter__(self: _S) -> _S:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncSubscriber(_SubscriberBase):
    """Events as an async iterator::

        async with AsyncSubscriber() as sub:
            await sub.subscribe("weather.rotterdam")
            async for event in sub:
                ...

    Same delivery as :class:`Subscriber` (in order, each event once); events wait at the
    service while the loop is busy (at most ``buffer`` calls' worth are held here).
    """

    def __init__(self, service: Any = None, *, ns_host: str | None = None, ns_port: int | None = None,
                 host: str | None = None, port: int = 0, buffer: int = 64) -> None:
        self.service: AsyncProxy = _proxy(AsyncProxy, service, ns_host, ns_port)
        self._setup(host, port, self._deliver)
        self._buffer = buffer
        self._queue: asyncio.Queue | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: deque[dict] = deque()
        self._closed = threading.Event()

    async def start(self) -> AsyncSubscriber:
        """Start serving (in a background thread) and bind to the running loop."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            self._queue = asyncio.Queue(self._buffer)
            self.daemon.start()
        return self

    def _deliver(self, events: list) -> None:
        """On the daemon's thread: hand a batch to the loop, waiting while its buffer is full."""
        fresh = [e for e in events if self._filter.fresh(e)]
        loop, queue = self._loop, self._queue
        if not fresh or loop is None or queue is None:
            return
        try:
            future = asyncio.run_coroutine_threadsafe(queue.put(fresh), loop)
        except RuntimeError:
            return  # the loop is closed
        while not self._closed.is_set():
            try:
                future.result(0.5)
                return
            except concurrent.futures.TimeoutError:
                continue
            except Exception:
                return
        future.cancel()

    async def subscribe(self, *subjects: str, since: int | None = None) -> None:
        await self.start()
        await self.service.subscribe(list(subjects), self._receiver, since=since)
        self.subjects.update(subjects)

    async def subscribe_match(self, *patterns: str, since: int | None = None) -> None:
        await self.start()
        await self.service.subscribe_match(list(patterns), self._receiver, since=since)
        self.patterns.update(patterns)

    async def unsubscribe(self, *subjects_or_patterns: str) -> None:
        names = list(subjects_or_patterns) or sorted(self.subjects | self.patterns)
        if names:
            await self.service.unsubscribe(names, self._receiver)
        self.subjects.difference_update(names)
        self.patterns.difference_update(names)

    def __aiter__(self) -> AsyncSubscriber:
        return self

    async def __anext__(self) -> dict:
        if self._pending:
            return self._pending.popleft()
        if self._queue is None:
            await self.start()
        assert self._queue is not None
        batch = await self._queue.get()
        if batch is None:
            await self._queue.put(None)  # let other iterators end too
            raise StopAsyncIteration
        self._pending.extend(batch)
        return self._pending.popleft()

    async def aclose(self) -> None:
        """Unsubscribe everything (if the service is reachable), stop serving, end the iteration."""
        if self._closed.is_set():
            return
        self._closed.set()
        try:
            if self.subjects or self.patterns:
                self.service._timeout = 3.0
                await self.unsubscribe()
        except PyroError as exc:
            log.debug("could not unsubscribe %s: %s", self.uri, exc)
        finally:
            await self.service._release()
            await asyncio.to_thread(self.daemon.shutdown)
            if self._queue is not None:
                while not self._queue.empty():
                    self._queue.get_nowait()
                self._queue.put_nowait(None)

    async def __aenter__(self) -> AsyncSubscriber:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
