"""Server-sent events: one subscription to the event service shared by every browser.

The gateway does not import the event service's client (services do not import each
other): whoever builds the app passes ``make_subscriber``, a function returning an object
with the interface of :class:`ember.events.AsyncSubscriber` (``await subscribe_match(pattern)``,
``await unsubscribe(pattern)``, ``async for event in it``, ``await aclose()``).
:func:`ember.web.create_app` passes the real one.

Each ``GET /events/<pattern>`` gets a bounded queue; the hub subscribes to a pattern on the
first listener and unsubscribes after the last, and hands every event to the listeners
whose pattern matches its subject. A listener that does not keep up loses its oldest events
(counted in a ``dropped`` SSE comment) rather than holding up the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

__all__ = ["EventHub", "sse_frame"]

log = logging.getLogger("ember.services.gateway")
QUEUE = 256  # events held per listener


def sse_frame(event: dict[str, Any], dumps: Callable[[Any], bytes]) -> bytes:
    """One SSE message: ``id`` = the event's seq, ``event`` = its subject, ``data`` = the event as JSON."""
    data = dumps(event).decode("utf-8").replace("\n", "\\n")
    seq = event.get("seq", "")
    return f"id: {seq}\ndata: {data}\n\n".encode()


class _Listener:
    __slots__ = ("pattern", "regex", "queue", "dropped")

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self.regex = re.compile(pattern)
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(QUEUE)
        self.dropped = 0

    def put(self, event: dict[str, Any]) -> None:
        if self.queue.full():
            self.queue.get_nowait()
            self.dropped += 1
        self.queue.put_nowait(event)


class EventHub:
    """Fans events of one subscriber out to the SSE listeners of the app."""

    def __init__(self, make_subscriber: Callable[[], Any]) -> None:
        self._make = make_subscriber
        self._subscriber: Any = None
        self._pump: asyncio.Task | None = None
        self._listeners: set[_Listener] = set()
        self._counts: dict[str, int] = {}
        self._lock: asyncio.Lock | None = None

    async def _start(self) -> Any:
        if self._subscriber is None:
            subscriber = self._make()
            await subscriber.start()
            self._subscriber = subscriber
            self._pump = asyncio.ensure_future(self._run(subscriber))
        return self._subscriber

    async def _run(self, subscriber: Any) -> None:
        try:
            async for event in subscriber:
                subject = event.get("subject", "") if isinstance(event, dict) else ""
                for listener in list(self._listeners):
                    if listener.regex.match(subject):
                        listener.put(event)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("event subscription of the gateway failed")

    @contextlib.asynccontextmanager
    async def listen(self, pattern: str) -> AsyncIterator[_Listener]:
        """Receive the events whose subject matches ``pattern`` (a regular expression, ``re.match``)."""
        listener = _Listener(pattern)  # re.error for a bad pattern, before subscribing anything
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            subscriber = await self._start()
            if not self._counts.get(pattern):
                await subscriber.subscribe_match(pattern)
            self._counts[pattern] = self._counts.get(pattern, 0) + 1
            self._listeners.add(listener)
        try:
            yield listener
        finally:
            self._listeners.discard(listener)
            async with self._lock:
                self._counts[pattern] -= 1
                if not self._counts[pattern]:
                    del self._counts[pattern]
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(subscriber.unsubscribe(pattern), 3.0)

    async def stream(self, listener: _Listener, dumps: Callable[[Any], bytes],
                     keepalive: float = 15.0) -> AsyncIterator[bytes]:
        """SSE bytes for one listener: a first comment, then the events, a comment every ``keepalive`` s."""
        yield f": listening to {json.dumps(listener.pattern)}\n\n".encode()
        reported = 0
        while True:
            try:
                event = await asyncio.wait_for(listener.queue.get(), keepalive)
            except asyncio.TimeoutError:
                yield b": keep-alive\n\n"
                continue
            if listener.dropped != reported:
                reported = listener.dropped
                yield f": dropped {reported} events (this listener was too slow)\n\n".encode()
            yield sse_frame(event, dumps)

    async def aclose(self) -> None:
        """Stop the pump and close the subscriber (unsubscribing at the service)."""
        pump, self._pump = self._pump, None
        if pump is not None:
            pump.cancel()
            with contextlib.suppress(BaseException):
                await pump
        subscriber, self._subscriber = self._subscriber, None
        if subscriber is not None:
            with contextlib.suppress(Exception):
                await subscriber.aclose()
