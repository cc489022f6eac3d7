"""The ``memory`` back-end: registrations in a dict, gone when the process ends. The default."""

from __future__ import annotations

import threading
from collections.abc import Iterable

from . import Entry, Storage

__all__ = ["MemoryStorage"]


class MemoryStorage(Storage):
    """Registrations in a dict; gone when the process ends. The default."""

    description = "memory"

    @classmethod
    def from_spec(cls, spec: str) -> MemoryStorage:
        """The back-end for ``memory`` (the ``ember.naming.storage`` entry point)."""
        return cls()

    def __init__(self) -> None:
        self._data: dict[str, Entry] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> Entry | None:
        return self._data.get(name)

    def put(self, name: str, uri: str, metadata: frozenset[str]) -> None:
        with self._lock:
            self._data[name] = (uri, metadata)

    def put_if_absent(self, name: str, uri: str, metadata: frozenset[str]) -> bool:
        with self._lock:
            if name in self._data:
                return False
            self._data[name] = (uri, metadata)
            return True

    def set_metadata(self, name: str, metadata: frozenset[str]) -> bool:
        with self._lock:
            entry = self._data.get(name)
            if entry is None:
                return False
            self._data[name] = (entry[0], metadata)
            return True

    def remove(self, names: Iterable[str]) -> int:
        removed = 0
        with self._lock:
            for name in names:
                if self._data.pop(name, None) is not None:
                    removed += 1
        return removed

    def items(self) -> dict[str, Entry]:
        with self._lock:
            return dict(self._data)

    def count(self) -> int:
        return len(self._data)


