"""Publish/subscribe through Ember's event service (``ember events``), the public names.

>>> from ember.events import Publisher, Subscriber
>>> Publisher().publish("weather.rotterdam", {"temp": 11.5})

See docs/events.md; the implementation lives in :mod:`ember.services.events`.
"""

from __future__ import annotations

from .services.events import (
    EVENTSERVICE_NAME,
    AsyncSubscriber,
    EventServer,
    EventService,
    Publisher,
    Subscriber,
    start_event_server,
)

__all__ = [
    "EVENTSERVICE_NAME",
    "AsyncSubscriber",
    "EventServer",
    "EventService",
    "Publisher",
    "Subscriber",
    "start_event_server",
]
