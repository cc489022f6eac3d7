"""The event service: publish/subscribe on subjects, served as ``Pyro.EventService``.

``service`` holds the remote object and its delivery machinery, ``client`` the Python API
(:class:`Publisher`, :class:`Subscriber`, :class:`AsyncSubscriber`), ``storage`` the event
stores used for replay, ``runner`` the daemon that serves it (``ember events``).
"""

from __future__ import annotations

from .client import AsyncSubscriber, Publisher, Subscriber
from .runner import EventServer, start_event_server
from .service import EVENTSERVICE_NAME, EventService
from .storage import EventStorage, MemoryEventStorage, SqliteEventStorage, open_event_storage

__all__ = [
    "EVENTSERVICE_NAME",
    "AsyncSubscriber",
    "EventServer",
    "EventService",
    "EventStorage",
    "MemoryEventStorage",
    "Publisher",
    "SqliteEventStorage",
    "Subscriber",
    "open_event_storage",
    "start_event_server",
]
