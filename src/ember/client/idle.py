"""Idle release: proxies that have not been used for ``PROXY_IDLE_RELEASE`` seconds close
their connection, so forgotten proxies do not hold a daemon's connections; the next call
reconnects as after ``_release()``.

Blocking proxies are watched by one background thread (started with the first watched
proxy, ended when none is left); an :class:`~ember.AsyncProxy` uses a timer on its loop.
"""

from __future__ import annotations

import threading
import time
import weakref
from typing import Any

__all__ = ["watch"]

_watched: weakref.WeakSet[Any] = weakref.WeakSet()
_lock = threading.Lock()
_thread: threading.Thread | None = None


def watch(proxy: Any, after: float) -> None:
    """Release ``proxy``'s connection once it has been unused for ``after`` seconds."""
    global _thread
    with _lock:
        _watched.add(proxy)
        if _thread is None:
            _thread = threading.Thread(target=_reap, args=(after,), name="ember-idle-release", daemon=True)
            _thread.start()


def _reap(after: float) -> None:
    global _thread
    interval = min(max(after / 4, 0.05), 1.0)
    while True:
        time.sleep(interval)
        with _lock:
            proxies = list(_watched)
            if not proxies:
                _thread = None
                return
        now = time.monotonic()
        for proxy in proxies:
            if proxy._release_if_idle(now):
                _watched.discard(proxy)
