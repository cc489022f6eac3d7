"""The interface of an event store (:mod:`ember.services.events.storage` has the back-ends)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["Event", "EventStorage"]

Event = dict[str, Any]  # {"subject": str, "message": ..., "time": float, "seq": int}


class EventStorage:
    """The interface of an event store. ``append`` is called with the service's lock held."""

    description = "?"
    shared = False
    """True for a store several event services share (``redis://``): it numbers the events
    itself in :meth:`append`, and has ``follow(deliver, after)`` to hear of the others' events."""

    def last_seq(self) -> int:
        """The highest sequence number ever stored (0 for a new store)."""
        raise NotImplementedError

    def append(self, events: list[Event]) -> None:
        """Keep these events (already numbered; a shared store renumbers them); when it returns they are stored."""
        raise NotImplementedError

    def since(self, seq: int, match: Callable[[str], bool]) -> list[Event]:
        """Kept events with a sequence number above ``seq`` whose subject ``match``es, in order."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the store; idempotent."""
